"""Benchmarks: each times gapseal against a named baseline in the same run and prints the ratio."""
