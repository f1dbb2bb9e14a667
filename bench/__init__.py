"""Benchmarks: `python -m bench NAME|all` writes bench/results/NAME.{json,md,png} (see bench/report.py)."""
