"""Benchmarks: each ``bench/bench_*.py`` exposes ``run() -> list[dict]`` and prints its table."""
