"""Benchmark programs: each prints one JSON line per run and runs its anchor in the same run."""
