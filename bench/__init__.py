"""Benchmarks: the in-process limit against the running pipeline, and scaling runs."""
