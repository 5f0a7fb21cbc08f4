"""Performance and quality benchmarks (run by `make bench`, not by the tests)."""
