"""The committed baseline: the store, the statistics, the comparison, and the end-of-run report."""
