"""Benchmarks (each runnable as ``python bench/<name>.py``)."""
