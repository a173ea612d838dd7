"""Speed benchmarks, each printed as ratios against a named baseline. Run: ``make bench``."""
