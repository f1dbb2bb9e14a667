"""A progress bar with ETA on the terminal, driven by the `(done, total)` callbacks that long
stages (tracking, fitting, cropping) report through."""
from __future__ import annotations

import sys


class progress_bar:
    """A tqdm bar (with ETA) driven by a `(done, total)` callback."""

    def __init__(self, desc: str, total: int, unit: str):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None)

    def __call__(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> progress_bar:
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()
