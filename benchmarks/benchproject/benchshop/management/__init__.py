"""The benchmark's management commands (bench_*), which run.py drives."""
