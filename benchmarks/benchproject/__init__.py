"""The Django project that benchmarks/run.py serves with gunicorn."""
