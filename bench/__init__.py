"""Benchmarks: each prints a ratio against a ceiling measured in the same run."""
