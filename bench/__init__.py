"""Benchmarks: each script prints and writes JSON to bench/results/ (see bench/RESULTS.md)."""
