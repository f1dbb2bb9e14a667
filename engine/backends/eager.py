"""Eager PyTorch: the reference every other backend is checked against."""
from __future__ import annotations

from torch import Tensor

from engine.backends.base import Backend


class EagerBackend(Backend):
    name = "eager"

    def run(self, stack: Tensor) -> Tensor:
        return self.module(stack)
