"""Benchmarks: `python -m tests.benchmarks.run` (not part of the default test run)."""
