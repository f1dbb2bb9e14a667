"""The built-in phonetic feature model: a small causal network from audio to phone posteriors.

Front-end (NumPy, streamable): log-mel frames (25 ms window, 10 ms hop, band limited to the
telephone band so 8 kHz recordings and 16 kHz audio look alike) and a running mean/variance
normalisation (exponential, a few seconds long) that removes the channel and the speaker's level.

Network (torch): a strided conv to 50 steps/s, then residual dilated *causal* convolutions. Every
layer sees only the past, so the look-ahead is exactly a delay: the output at step j describes step
j - lookahead_steps. Heads: phone logits [NUM_PHONES] and a voicing logit. Streaming carries each
layer's left context, so it equals the offline pass.

The checkpoint stores `PhoneticConfig` and the normaliser's starting statistics, so the model is
rebuilt from its file alone (`load_phonetic`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class PhoneticConfig:
    sample_rate: int = 16_000
    win: int = 400  # samples per analysis window (25 ms)
    hop: int = 160  # samples between mel frames (10 ms)
    n_fft: int = 512
    n_mels: int = 40
    fmin: float = 80.0
    fmax: float = 3800.0  # below the 4 kHz edge of 8 kHz recordings
    cmvn_seconds: float = 3.0  # time constant of the running normalisation
    channels: int = 128
    kernel: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 1, 2, 4, 8)
    stride: int = 2  # mel frames per network step: 20 ms steps
    lookahead_steps: int = 4  # steps of delay: 80 ms
    num_phones: int = 40
    dropout: float = 0.1

    @property
    def step_samples(self) -> int:
        return self.hop * self.stride

    @property
    def lookahead_samples(self) -> int:
        return self.lookahead_steps * self.step_samples


# ---- front-end ------------------------------------------------------------------------------


def mel_filterbank(config: PhoneticConfig, warp: float = 1.0) -> np.ndarray:
    """[n_fft // 2 + 1, n_mels] triangular filters. warp > 1 moves them down in frequency, i.e.
    stretches the spectrum as a shorter vocal tract would (vocal-tract-length perturbation)."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges_mel = np.linspace(mel(config.fmin), mel(config.fmax), config.n_mels + 2)
    edges = 700 * (10 ** (edges_mel / 2595) - 1) / warp
    freqs = np.arange(config.n_fft // 2 + 1) * config.sample_rate / config.n_fft
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0, np.minimum(rising, falling)).T.astype(np.float32)


class LogMel:
    """Streaming log-mel: push audio [S] -> frames [T, n_mels]. Frame m covers the window that ends
    at sample (m + 1) * hop; the first frames see zeros before the start, as offline does."""

    def __init__(self, config: PhoneticConfig, warp: float = 1.0) -> None:
        self.config = config
        self.filters = mel_filterbank(config, warp)
        self.window = np.hanning(config.win).astype(np.float32)
        self.pending = np.zeros(config.win - config.hop, np.float32)

    def push(self, audio: np.ndarray) -> np.ndarray:
        c = self.config
        buffer = np.concatenate([self.pending, np.asarray(audio, np.float32)])
        count = max(0, (len(buffer) - c.win) // c.hop + 1)
        self.pending = buffer[count * c.hop :]
        if count == 0:
            return np.zeros((0, c.n_mels), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(buffer, c.win)[:: c.hop][:count]
        power = np.abs(np.fft.rfft(frames * self.window, c.n_fft)) ** 2
        return np.log(power @ self.filters + 1e-5).astype(np.float32)


class RunningCMVN:
    """Exponential running mean/variance normalisation of [T, F] frames, causal and streamable.
    Computed in blocks with a decay matrix, so long files cost a few matrix products."""

    BLOCK = 256

    def __init__(self, mean: np.ndarray, var: np.ndarray, decay: float) -> None:
        self.mean = mean.astype(np.float64)  # [F] running state
        self.square = (var + mean**2).astype(np.float64)
        self.decay = decay
        t = np.arange(self.BLOCK)
        lag = t[:, None] - t[None, :]
        self.weights = np.where(lag >= 0, (1 - decay) * decay ** np.maximum(lag, 0), 0.0)  # [B, B]
        self.carry = decay ** (t + 1)  # [B] weight of the state before the block

    def push(self, frames: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(frames), self.BLOCK):
            x = frames[start : start + self.BLOCK].astype(np.float64)
            n = len(x)
            mean = self.weights[:n, :n] @ x + self.carry[:n, None] * self.mean
            square = self.weights[:n, :n] @ x**2 + self.carry[:n, None] * self.square
            self.mean, self.square = mean[-1], square[-1]
            out.append((x - mean) / np.sqrt(np.maximum(square - mean**2, 1e-2)))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, len(self.mean)), np.float32)


# ---- network --------------------------------------------------------------------------------


class CausalConv(nn.Module):
    """Conv1d that pads only on the left: output t sees inputs up to t * stride + stride - 1."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation)
        self.context = (kernel - 1) * dilation + 1 - stride  # input frames kept from the past

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T] -> [B, C', T / stride]
        return self.conv(nn.functional.pad(x, (self.context, 0)))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = CausalConv(channels, channels, kernel, dilation)
        self.norm = nn.BatchNorm1d(channels)
        self.mix = nn.Conv1d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.dropout(torch.relu(self.norm(self.conv(x)))))


def _bias(conv: nn.Conv1d) -> torch.Tensor:
    if conv.bias is None:
        raise ValueError("streaming needs convolutions with a bias")
    return conv.bias


class _StreamLayer:
    """One causal conv (batch norm folded in) for streaming, time-major: gathers its taps from
    [context + T, C] and does one matrix product, far cheaper than conv1d calls for a few steps."""

    def __init__(self, causal: CausalConv, norm: nn.BatchNorm1d | None = None) -> None:
        conv = causal.conv
        weight, bias = conv.weight, _bias(conv)
        if norm is not None:
            if norm.running_mean is None or norm.running_var is None:
                raise ValueError("streaming folds batch norm running statistics: the norm must track them")
            scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            weight, bias = weight * scale[:, None, None], (bias - norm.running_mean) * scale + norm.bias
        self.weight = weight.reshape(conv.out_channels, -1).detach().clone()  # [Cout, Cin * k]
        self.bias = bias.detach().clone()
        self.span = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
        self.stride, self.dilation, self.context = conv.stride[0], conv.dilation[0], causal.context

    def __call__(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        buffer = torch.cat([state, x])  # [context + T, Cin]
        taps = buffer.unfold(0, self.span, self.stride)[..., :: self.dilation]  # [T', Cin, k]
        out = nn.functional.linear(taps.reshape(taps.shape[0], -1), self.weight, self.bias)
        return out, buffer[buffer.shape[0] - self.context :]


class PhoneticNet(nn.Module):
    """Normalised log-mel [B, n_mels, T] (T a multiple of stride) -> logits [B, num_phones + 1, T / stride]:
    phones, then voicing. Output step j describes step j - lookahead_steps."""

    cmvn_mean: torch.Tensor  # buffers [n_mels]
    cmvn_var: torch.Tensor

    def __init__(self, config: PhoneticConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.input = CausalConv(c.n_mels, c.channels, 2 * c.stride, stride=c.stride)
        self.blocks = nn.ModuleList(ResidualBlock(c.channels, c.kernel, d, c.dropout) for d in c.dilations)
        self.head = nn.Conv1d(c.channels, c.num_phones + 1, 1)
        self.register_buffer("cmvn_mean", torch.zeros(c.n_mels))
        self.register_buffer("cmvn_var", torch.ones(c.n_mels))
        # input layer, then each block's (conv, mix weight [C, C], mix bias [C]); built on first stream()
        self._stream_layers: tuple[_StreamLayer, list[tuple[_StreamLayer, torch.Tensor, torch.Tensor]]] | None
        self._stream_layers = None

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.input(mels))
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def train(self, mode: bool = True) -> PhoneticNet:
        self._stream_layers = None  # weights may change: fold them again for the next stream
        return super().train(mode)

    def _residual_blocks(self) -> list[ResidualBlock]:
        return [cast(ResidualBlock, b) for b in self.blocks]  # the ModuleList holds only these

    def initial_state(self) -> list[torch.Tensor]:
        """Streaming state of one input: each conv's left context [context, C_in], zeros = silence."""
        convs = [self.input] + [b.conv for b in self._residual_blocks()]
        return [torch.zeros(conv.context, conv.conv.in_channels) for conv in convs]

    @torch.no_grad()
    def stream(
        self, mels: torch.Tensor, state: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """forward() on the next frames [1, n_mels, T] of one stream (T a multiple of stride), in eval
        mode; `state` from initial_state or the last call. Returns
        ([1, num_phones + 1, T / stride], state)."""
        if self._stream_layers is None:
            self._stream_layers = _StreamLayer(self.input), [
                (
                    _StreamLayer(b.conv, b.norm),
                    b.mix.weight[:, :, 0].detach().clone(),
                    _bias(b.mix).detach().clone(),
                )
                for b in self._residual_blocks()
            ]
        first, blocks = self._stream_layers
        x, s = first(mels[0].T, state[0])
        x, new_state = torch.relu(x), [s]
        for (conv, mix_weight, mix_bias), s in zip(blocks, state[1:], strict=False):
            h, s = conv(x, s)
            x = x + nn.functional.linear(torch.relu(h), mix_weight, mix_bias)
            new_state.append(s)
        return nn.functional.linear(x, self.head.weight[:, :, 0], self.head.bias).T[None], new_state

    def cmvn(self) -> RunningCMVN:
        decay = float(np.exp(-self.config.hop / (self.config.sample_rate * self.config.cmvn_seconds)))
        return RunningCMVN(self.cmvn_mean.numpy(), self.cmvn_var.numpy(), decay)


def save_phonetic(model: PhoneticNet, path: str, **meta: object) -> None:
    """Half-precision weights + config (+ free-form metadata: training command, data, scores)."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"config": asdict(model.config), "state_dict": state, "meta": meta}, path)


def load_phonetic(path: str) -> PhoneticNet:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    config = checkpoint["config"]
    config = PhoneticConfig(**{**config, "dilations": tuple(config["dilations"])})
    model = PhoneticNet(config)
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()}
    )
    return model.eval()

