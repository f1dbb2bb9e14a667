"""DeepSpeech's acoustic model (Mozilla DeepSpeech, TensorFlow) in PyTorch: MFCC windows -> per-step
character logits at 50 steps per second.

Both released architectures (mozilla/DeepSpeech DeepSpeech.py at v0.1.0, training/.../train.py
`create_model` at v0.9.3), with H = n_hidden (2048 in the releases):
    x [B, T, 19 * 26]   26 MFCC of 19 steps (9 past, this one, 9 future), flattened
    dense1 -> H, dense2 -> H, dense3 -> H3          min(relu(x W + b), 20) each
    LSTM                                            v0.1.0: bidirectional BasicLSTMCell(H), fw and bw
                                                    concatenated (2H), forget_bias 1; H3 = 2H.
                                                    v0.9.3: one LSTM(H), LSTMBlockFusedCell with
                                                    forget_bias 0 (CuDNN-compatible); H3 = H.
    dense5 -> H                                     clipped ReLU
    dense6 -> n_classes (29: blank + 28 characters)  raw logits (v0.9.3's graph applies a softmax on
                                                    top and calls that `logits`; we return the raw ones)
TensorFlow's LSTM kernels are [input + H, 4H] on concat([x, h]) with gates in the order
(i, c~, f, o): c = sigmoid(f + forget_bias) c + sigmoid(i) tanh(c~); h = sigmoid(o) tanh(c).
`load_tf_weights` reorders them for torch.nn.LSTM (i, f, g, o) and folds forget_bias into the bias.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

LstmState = tuple[torch.Tensor, torch.Tensor]  # torch.nn.LSTM's (h, c), each [1, B, H]
# torch's CPU LSTM (oneDNN) reorders its weights on every call: ~130 ms at 2048 units, which a whole
# utterance amortises (4 ms per step against 7 for a step loop, one thread) but a 20 ms streaming
# step cannot (136 ms against 13). Shorter CPU inputs run the same equations step by step.
STEP_LOOP_MAX_STEPS = 64
VERSIONS = ("0.1.0", "0.9.3")
_TF_TO_TORCH_GATES = (0, 2, 1, 3)  # TF (i, c~, f, o) blocks -> torch (i, f, g, o)


@dataclass(frozen=True)
class DeepSpeechConfig:
    version: str = "0.9.3"
    n_hidden: int = 2048
    n_classes: int = 29
    n_input: int = 26  # MFCC coefficients per step
    n_context: int = 9  # steps of context on each side
    relu_clip: float = 20.0

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"DeepSpeech version must be one of {VERSIONS}, got {self.version!r}")

    @property
    def bidirectional(self) -> bool:
        return self.version == "0.1.0"

    @property
    def forget_bias(self) -> float:
        return 1.0 if self.bidirectional else 0.0

    @property
    def input_size(self) -> int:
        return self.n_input * (2 * self.n_context + 1)

    @property
    def n_hidden_3(self) -> int:
        return 2 * self.n_hidden if self.bidirectional else self.n_hidden

    def tf_shapes(self) -> dict[str, tuple[int, ...]]:
        """Our weight keys -> their shapes in TensorFlow's layout (kernels [in, out])."""
        h, h3 = self.n_hidden, self.n_hidden_3
        directions = ("lstm_fw", "lstm_bw") if self.bidirectional else ("lstm",)
        shapes = {
            "dense1.kernel": (self.input_size, h), "dense1.bias": (h,),
            "dense2.kernel": (h, h), "dense2.bias": (h,),
            "dense3.kernel": (h, h3), "dense3.bias": (h3,),
            "dense5.kernel": (h * len(directions), h), "dense5.bias": (h,),
            "dense6.kernel": (h, self.n_classes), "dense6.bias": (self.n_classes,),
        }
        for d in directions:
            shapes[f"{d}.kernel"], shapes[f"{d}.bias"] = (h3 + h, 4 * h), (4 * h,)
        return shapes


class DeepSpeech(nn.Module):
    def __init__(self, config: DeepSpeechConfig) -> None:
        super().__init__()
        c = self.config = config
        self.dense1 = nn.Linear(c.input_size, c.n_hidden)
        self.dense2 = nn.Linear(c.n_hidden, c.n_hidden)
        self.dense3 = nn.Linear(c.n_hidden, c.n_hidden_3)
        self.lstm = nn.LSTM(c.n_hidden_3, c.n_hidden, batch_first=True, bidirectional=c.bidirectional)
        self.dense5 = nn.Linear(c.n_hidden * (2 if c.bidirectional else 1), c.n_hidden)
        self.dense6 = nn.Linear(c.n_hidden, c.n_classes)

    def _clipped_relu(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0, self.config.relu_clip)

    def forward(self, x: torch.Tensor, state: LstmState | None = None) -> tuple[torch.Tensor, LstmState]:
        """x [B, T, input_size] -> logits [B, T, n_classes], the LSTM state after step T-1.
        v0.9.3 streams: pass the returned state with the next steps. v0.1.0 is bidirectional, so
        its T steps must be the whole utterance and `state` must be None."""
        if state is not None and self.config.bidirectional:
            raise ValueError("DeepSpeech 0.1.0 is bidirectional: it cannot continue from a state")
        x = self._clipped_relu(self.dense1(x))
        x = self._clipped_relu(self.dense2(x))
        x = self._clipped_relu(self.dense3(x))
        short = x.shape[1] < STEP_LOOP_MAX_STEPS and x.device.type == "cpu" and not self.config.bidirectional
        x, state = self._lstm_steps(x, state) if short else self.lstm(x, state)
        x = self._clipped_relu(self.dense5(x))
        return self.dense6(x), state

    def _lstm_steps(self, x: torch.Tensor, state: LstmState | None) -> tuple[torch.Tensor, LstmState]:
        """self.lstm (unidirectional) as a loop over time: x [B, T, H3] -> [B, T, H], (h, c)."""
        lstm, batch = self.lstm, x.shape[0]
        h, c = (s[0] for s in state) if state is not None else (x.new_zeros(batch, lstm.hidden_size),) * 2
        weight_hh = lstm.get_parameter("weight_hh_l0")
        bias = lstm.get_parameter("bias_ih_l0") + lstm.get_parameter("bias_hh_l0")
        gates_x = torch.nn.functional.linear(x, lstm.get_parameter("weight_ih_l0"), bias)  # [B, T, 4H]
        outputs = []
        for t in range(x.shape[1]):
            i, f, g, o = torch.addmm(gates_x[:, t], h, weight_hh.T).chunk(
                4, dim=1
            )  # torch's gate order
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h[None], c[None])

    @torch.no_grad()
    def load_tf_weights(self, tensors: dict[str, np.ndarray]) -> None:
        """Set every weight from TensorFlow-layout arrays keyed as DeepSpeechConfig.tf_shapes()."""
        c = self.config
        shapes = c.tf_shapes()
        missing = sorted(set(shapes) - set(tensors))
        if missing:
            raise ValueError(f"missing DeepSpeech weights: {', '.join(missing)}")
        for key, shape in shapes.items():
            if tuple(np.shape(tensors[key])) != shape:
                raise ValueError(
                    f"DeepSpeech weight {key} has shape {list(np.shape(tensors[key]))}, expected "
                    f"{list(shape)}"
                )
        t = {
            key: torch.as_tensor(np.asarray(value, np.float32))
            for key, value in tensors.items()
            if key in shapes
        }
        for name in ("dense1", "dense2", "dense3", "dense5", "dense6"):
            layer = getattr(self, name)
            layer.weight.copy_(t[f"{name}.kernel"].T)
            layer.bias.copy_(t[f"{name}.bias"])
        directions = ("lstm_fw", "lstm_bw") if c.bidirectional else ("lstm",)
        for suffix, key in zip(("", "_reverse"), directions, strict=False):
            kernel = _reorder_gates(t[f"{key}.kernel"], c.n_hidden, dim=1)  # [in + H, 4H]
            bias = _reorder_gates(t[f"{key}.bias"], c.n_hidden, dim=0).clone()
            bias[c.n_hidden : 2 * c.n_hidden] += c.forget_bias  # torch's f block
            getattr(self.lstm, f"weight_ih_l0{suffix}").copy_(kernel[: c.n_hidden_3].T)
            getattr(self.lstm, f"weight_hh_l0{suffix}").copy_(kernel[c.n_hidden_3 :].T)
            getattr(self.lstm, f"bias_ih_l0{suffix}").copy_(bias)
            getattr(self.lstm, f"bias_hh_l0{suffix}").zero_()


def _reorder_gates(t: torch.Tensor, h: int, dim: int) -> torch.Tensor:
    blocks = t.split(h, dim=dim)
    return torch.cat([blocks[i] for i in _TF_TO_TORCH_GATES], dim=dim)
