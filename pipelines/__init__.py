"""adsrel pipelines."""
