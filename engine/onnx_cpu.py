"""Small networks on CPU through ONNX Runtime: one call without the GIL instead of many small torch
operators.

The live speech chain runs small networks a frame or a step at a time (FACIAL-GAN's streaming
update, the built-in phonetic model's step). Eager torch spends most of that time in operator
overhead, and each operator takes and releases the GIL, so two sessions' chains and the event loop
queue behind one another. Through ONNX Runtime the same graph runs in one call that releases the
GIL: FACIAL-GAN's update 0.95 against 3.6 ms in eager torch (`python -m bench features`).

Exported with torch's TorchScript-based exporter when first needed: about 0.5 s, where the
torch.export-based one takes 3-6 s on two cores (`dynamo=False` is deprecated; torch is pinned).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch

OPSET = 17


class OnnxFunction:
    """module(*examples) with fixed shapes, as a function of NumPy arrays -> list of arrays.
    Thread-safe: sessions share one."""

    def __init__(self, module: torch.nn.Module, examples: tuple[torch.Tensor, ...], names: list[str]):
        import onnxruntime as ort

        buffer = io.BytesIO()
        # The exporter restores the module's mode on all its children: export an eval-mode one.
        module = module.eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's deprecation notice
            # The exporter writes to binary files too; its annotation says path only.
            torch.onnx.export(
                module,
                examples,
                buffer,  # type: ignore[arg-type]
                dynamo=False,
                opset_version=OPSET,
                input_names=names,
            )
        options = ort.SessionOptions()
        # One thread: sessions already run side by side, one per core.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        self.names = names

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.names, arrays, strict=True)))
