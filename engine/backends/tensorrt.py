"""TensorRT through torch-tensorrt (the optional `[gpu]` extra; NVIDIA GPUs only): the network
compiled to a TensorRT engine with an optimisation profile for batches 1..MAX_BATCH, in fp16 or
bf16 as asked (TensorRT keeps fp32 where it must)."""
from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from engine.backends.base import Backend, BackendError
from models.r2v import R2V

MAX_BATCH = 8


def tensorrt_available() -> bool:
    return importlib.util.find_spec("torch_tensorrt") is not None and torch.cuda.is_available()


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model: R2V, device: str | torch.device = "cpu", precision: str = "fp32"):
        super().__init__(model, device, precision)
        if not tensorrt_available():
            raise BackendError(
                "the tensorrt backend needs torch-tensorrt (pip install '.[gpu]') and an NVIDIA GPU"
            )
        import torch_tensorrt

        shape = (self.config.in_channels, self.config.size, self.config.size)
        spec = torch_tensorrt.Input(
            min_shape=(1, *shape), opt_shape=(1, *shape), max_shape=(MAX_BATCH, *shape), dtype=self.dtype
        )
        self.engine = torch_tensorrt.compile(
            self.module, ir="dynamo", inputs=[spec], enabled_precisions={self.dtype}
        )

    def run(self, stack: Tensor) -> Tensor:
        if len(stack) > MAX_BATCH:
            raise BackendError(f"the tensorrt engine takes batches of at most {MAX_BATCH}, got {len(stack)}")
        return self.engine(stack)
