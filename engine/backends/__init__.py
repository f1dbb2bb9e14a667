"""R2V inference backends behind one interface: `make_backend(name, model, device)` returns a
callable [B, C_in, S, S] stacks -> [B, 3, S, S] frames in 0..1 (engine/backends/base.py).

    eager        PyTorch eager, channels-last (the reference)
    compile      torch.compile (Inductor); CUDA graphs on CUDA
    onnxruntime  exported to ONNX, run by ONNX Runtime
    tensorrt     torch-tensorrt, NVIDIA GPUs only (optional extra)

fp16/bf16 (`precision`) are for CUDA devices.
"""
from __future__ import annotations

import importlib.util
import shutil

import torch

from engine.backends.base import Backend, BackendError
from engine.backends.compiled import CompiledBackend
from engine.backends.eager import EagerBackend
from engine.backends.onnxrt import OnnxRuntimeBackend
from engine.backends.tensorrt import TensorRTBackend, tensorrt_available
from models.r2v import R2V

BACKENDS: dict[str, type[Backend]] = {
    "eager": EagerBackend,
    "compile": CompiledBackend,
    "onnxruntime": OnnxRuntimeBackend,
    "tensorrt": TensorRTBackend,
}
__all__ = ["BACKENDS", "Backend", "BackendError", "available_backends", "make_backend"]


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """The backends that can run on `device` on this machine."""
    device = torch.device(device)
    found = ["eager"]
    if device.type == "cuda" or shutil.which("c++") or shutil.which("g++"):  # Inductor compiles C++ on CPU
        found.append("compile")
    if importlib.util.find_spec("onnxruntime") is not None:
        found.append("onnxruntime")
    if device.type == "cuda" and tensorrt_available():
        found.append("tensorrt")
    return found


def make_backend(
    name: str, model: R2V, device: str | torch.device = "cpu", precision: str = "fp32"
) -> Backend:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend '{name}', expected one of {list(BACKENDS)}")
    if name not in available_backends(device):
        raise BackendError(
            f"the {name} backend is not available for {device} on this machine (available: "
            f"{available_backends(device)})"
        )
    return BACKENDS[name](model, device, precision)
