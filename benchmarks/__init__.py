"""Benchmarks: each script measures monitord against baselines in one run and prints ratios."""
