"""Reproducible performance runs; each prints its figures and writes benchmarks/results/."""
