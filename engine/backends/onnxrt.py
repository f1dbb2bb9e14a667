"""ONNX Runtime: the network exported to ONNX (torch's dynamo exporter, batch axis dynamic) and
run by ONNX Runtime's CPU (or CUDA) execution provider, with graph optimisations on. The export
lives in memory; `save` writes it out for other runtimes."""
from __future__ import annotations

import io
import logging
import os
import warnings

import torch
from torch import Tensor

from engine.backends.base import Backend, BackendError
from models.r2v import R2V

OPSET = 18
MAX_BATCH = 64


def export_onnx(module: torch.nn.Module, example: Tensor) -> bytes:
    """The module as an ONNX model; the example's batch (2 or more: torch.export specialises a
    batch of 1) becomes a dynamic axis."""
    buffer = io.BytesIO()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it warns about every optional library it does not find
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=["stack"],
                output_names=["frames"],
                dynamic_shapes={"stack": {0: batch}},
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)
    if program is None:  # only the legacy exporter (dynamo=False) returns nothing
        raise BackendError("the ONNX exporter returned no program")
    # save() writes through onnx_ir, which takes a binary file too; its annotation says path only.
    program.save(buffer)  # type: ignore[arg-type]
    return buffer.getvalue()


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    memory_format = torch.contiguous_format  # ONNX tensors are plain NCHW arrays

    def __init__(self, model: R2V, device: str | torch.device = "cpu", precision: str = "fp32"):
        super().__init__(model, device, precision)
        import onnxruntime as ort

        if self.precision != "fp32":
            raise BackendError(
                "the ONNX Runtime backend runs fp32 only (its fp16 path needs a converted model)"
            )
        # Exported from the CPU in the default layout: the ONNX graph is layout-agnostic.
        module = self.module.to("cpu", memory_format=torch.contiguous_format)
        example = torch.zeros(2, self.config.in_channels, self.config.size, self.config.size)
        self.onnx = export_onnx(module, example)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread: an ONNX Runtime thread pool next to torch's OpenMP pool (the renderer's)
        # oversubscribes the cores. On 2 cores with 2 torch threads, a whole streamed frame took
        # 27.7 ms through a 2-thread session, 18.5 ms through a 1-thread one (eager: 12.5 ms).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        cuda = self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(self.onnx, options, providers=providers)

    def run(self, stack: Tensor) -> Tensor:
        out = self.session.run(None, {"stack": stack.cpu().numpy()})[0]
        return torch.from_numpy(out).to(self.device)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "wb") as f:
            f.write(self.onnx)
