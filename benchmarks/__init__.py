"""adsrel benchmarks."""
