"""torch.compile (Inductor): fused kernels on CPU (C++/OpenMP) and CUDA (Triton). On CUDA the
"reduce-overhead" mode also captures CUDA graphs, removing per-layer launch overhead at batch 1.

Compilation happens on the first call for each new input shape (tens of seconds on CPU)."""
from __future__ import annotations

import torch
from torch import Tensor

from engine.backends.base import Backend
from models.r2v import R2V


class CompiledBackend(Backend):
    name = "compile"

    def __init__(self, model: R2V, device: str | torch.device = "cpu", precision: str = "fp32"):
        super().__init__(model, device, precision)
        if self.device.type == "cuda":
            self.compiled = torch.compile(self.module, mode="reduce-overhead", dynamic=False)
        else:  # frozen: the weights become constants, prepacked once for oneDNN's convolutions
            self.compiled = torch.compile(self.module, options={"freezing": True}, dynamic=False)

    def run(self, stack: Tensor) -> Tensor:
        out = self.compiled(stack)
        # CUDA graphs reuse their output buffers: copy before the next call overwrites them.
        return out.clone() if self.device.type == "cuda" else out
