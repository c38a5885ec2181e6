"""Benchmarks of SPEC §9 (run as scripts, never as timed tests)."""
