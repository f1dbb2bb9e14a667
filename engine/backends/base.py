"""What every R2V inference backend shares: the interface, precision and layout choices.

A backend is built once per network and device and then called with input stacks. The batch is
free: several sessions' frames go through in one call, stacked along dim 0.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from engine.errors import EngineError
from models.r2v import R2V

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class BackendError(EngineError):
    """A backend that is unknown, not installed, or cannot run the requested way on this machine."""


class Inference(nn.Module):
    """The deployed computation: input stack [B, C_in, S, S] -> frames [B, 3, S, S] in 0..1."""

    def __init__(self, model: R2V):
        super().__init__()
        self.model = model

    def forward(self, stack: Tensor) -> Tensor:
        return self.model(stack).clamp(0, 1)


class Backend(ABC):
    """Calls return float32 frames [B, 3, S, S] in 0..1 on the backend's device."""

    name: str
    memory_format = torch.channels_last  # of the inputs `run` takes

    def __init__(self, model: R2V, device: str | torch.device = "cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        if precision not in PRECISIONS:
            raise BackendError(f"unknown precision '{precision}', expected one of {sorted(PRECISIONS)}")
        if precision != "fp32" and self.device.type != "cuda":
            raise BackendError(f"{precision} inference needs a CUDA device, not {self.device}")
        self.config = model.config
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        # Its own copy (Module.to works in place), in channels-last: oneDNN's (CPU) and cuDNN's
        # (tensor cores) fastest convolution layout.
        self.module = (
            Inference(copy.deepcopy(model))
            .eval()
            .to(self.device, self.dtype)
            # Module.to takes memory_format at run time; torch's overload stubs leave it out.
            .to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        )
        self.module.requires_grad_(False)

    def prepare(self, stack: Tensor) -> Tensor:
        """Any float stack -> this backend's device, dtype and layout."""
        c, s = self.config.in_channels, self.config.size
        if stack.dim() != 4 or stack.shape[1:] != (c, s, s):
            raise BackendError(f"input stacks must be [B, {c}, {s}, {s}], got {list(stack.shape)}")
        return stack.to(self.device, self.dtype).contiguous(memory_format=self.memory_format)

    @torch.no_grad()
    def __call__(self, stack: Tensor) -> Tensor:
        return self.run(self.prepare(stack)).float()

    @abstractmethod
    def run(self, stack: Tensor) -> Tensor:
        """A prepared stack -> frames [B, 3, S, S]."""
