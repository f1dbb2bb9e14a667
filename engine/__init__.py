"""Turning speech into frames of a talking avatar; no networking here (see docs/ARCHITECTURE.md)."""
