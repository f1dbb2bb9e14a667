"""Chains from speech (or a script) to frames: idle motion, offline and streaming pipelines."""
