"""Speech features -> FaceParams with FACIAL-GAN, offline (as the paper) or streaming.

Both modes predict *offsets* from the avatar's rest parameters (the GAN is trained around a
neutral rest) and add them to the rest. Frames before the input's first and after its last are
the feature kind's silence row (stored with the weights), so any length works, one frame included.

Offline (audio2face/test.py): windows of T = 128 frames with hop T - 1; each window's initial state
is the previous window's output at its first frame (the one frame they share), the first window
starts from rest; the last window is aligned to the end. Then Savitzky-Golay (7, 3) over every
column and a Gaussian (sigma 1 frame, 5 taps) over the pose, as face_render/rendering_gaosi.py
(whose Gaussian is off-centre by one frame; ours is centred).

Streaming: a causal sliding window. With look-ahead L and update stride S, an update runs once
features up to frame n + S + L - 1 are in (n = frames emitted so far) and emits frames n..n+S-1:
a window of T frames ending at n + S + L, initial state = the emitted output at the window's first
frame. Frame t of a window only sees features up to the window's end; the part of its 16-frame
local window beyond is the last known frame repeated. The previous window also predicted the first
min(S, L) frames being emitted (they were its look-ahead): emitted = a linear cross-fade from its
prediction to the new one, so window seams never jump. Smoothing is the same Savitzky-Golay and
Gaussian, each frame's kernel taking the emitted past and the current window's predictions up to
the look-ahead, never beyond. Added latency: L + S - 1 frames (default 1 = 33 ms) beyond the
feature extractor's own look-ahead, plus the update's compute time.

Silence: the GAN closes the mouth; head sway and blinks fade in from the idle motion
(engine/pipeline/idle.py) when the predicted mouth has been still for a while (IDLE_AFTER_S).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.signal import savgol_coeffs, savgol_filter

from engine.avatar.bundle import Avatar
from engine.errors import EngineError
from engine.onnx_cpu import OnnxFunction
from engine.pipeline.idle import IdleMotion
from engine.types import BLINK_COL, EXP_START, EXPRESSION_NAMES, FPS, PARAM_NAMES, RIG_VERSION, FaceParams
from models.facial_gan import FacialGAN, generator_from_checkpoint

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "models" / "weights"
SAVGOL = (7, 3)  # window, polynomial order
POSE_SIGMA = 1.0  # frames
POSE_TAPS = 2  # each side
IDLE_AFTER_S = 1.0  # mouth still this long -> idle motion fully in
# The lips' rig weights are left as FACIAL-GAN makes them: the Savitzky-Golay filter rounded off
# the brief p/b/m closures (a third of them no longer closed on the rendered frames, `python -m
# bench lipsync`), and the network's lip motion is no rougher than the targets it learnt.
LIPS = [EXP_START + i for i, name in enumerate(EXPRESSION_NAMES) if name.startswith(("mouth", "jaw"))]
MOUTH = [
    EXP_START + EXPRESSION_NAMES.index(n)
    for n in ("jawOpen", "mouthFunnel", "mouthPucker", "mouthPress_L", "mouthLowerLipTuck")
]


_SAVGOL_AT = [
    savgol_coeffs(*SAVGOL, pos=p, use="dot") for p in range(SAVGOL[0])
]  # fit evaluated at position p


class AnimatorError(EngineError):
    """Weights or features that do not fit together or with this engine."""


@dataclass(frozen=True)
class StreamConfig:
    lookahead: int = 1  # L, frames of features after the newest emitted frame
    stride: int = 1  # S, frames emitted per update; with S <= L every emitted frame is cross-faded

    def __post_init__(self) -> None:
        if self.lookahead < 0 or self.stride < 1:
            raise AnimatorError(
                f"streaming needs lookahead >= 0 and stride >= 1, got {self.lookahead} and {self.stride}"
            )

    @property
    def update_frames(self) -> int:
        """Frames an update predicts: the S it emits and the L of look-ahead after them."""
        return self.stride + self.lookahead

    @property
    def latency_frames(self) -> int:
        return self.update_frames - 1


@dataclass
class Gan:
    """A generator with what inference needs to know about it."""

    model: FacialGAN
    feature_kind: str
    silence: np.ndarray  # [F] the feature row of silence
    # Gan.tail's runners by `last`, made once and shared by the streams.
    _tails: dict[int, Callable[[np.ndarray, np.ndarray], np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _tails_lock: Lock = field(default_factory=Lock, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Gan:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            meta = state["meta"]
            model = generator_from_checkpoint(state)
        except FileNotFoundError:
            raise AnimatorError(f"{path}: no such FACIAL-GAN weights file") from None
        except Exception as e:  # unpickling, missing keys, wrong shapes: all one problem
            raise AnimatorError(f"{path}: not FACIAL-GAN weights ({type(e).__name__}: {e})") from None
        if meta.get("rig_version") != RIG_VERSION or tuple(meta.get("param_names", ())) != PARAM_NAMES:
            raise AnimatorError(
                f"{path}: weights for rig version {meta.get('rig_version')}, this engine has rig version "
                f"{RIG_VERSION}; retrain them"
            )
        silence = np.asarray(meta.get("silence", np.zeros(model.config.feature_dim)), np.float32)
        return cls(model.to(device), str(meta.get("feature_kind", "?")), silence)

    @classmethod
    def for_avatar(cls, avatar: Avatar, kind: str, device: str = "cpu") -> Gan:
        """The avatar's fine-tuned weights for `kind` if its bundle has them, else the general ones."""
        own = avatar.extra_files.get(f"facial_gan_{kind}")
        path = avatar.path / own if own else WEIGHTS_DIR / f"facial_gan_{kind}.pt"
        if not path.is_file():
            raise AnimatorError(
                f"no FACIAL-GAN weights for '{kind}' features ({path.name}): train them with `python -m "
                f"engine train-gan --general --features {kind}`"
            )
        return cls.load(path, device)

    def check(self, features: np.ndarray) -> np.ndarray:
        features = np.asarray(features, np.float32)
        dim = self.model.config.feature_dim
        if features.ndim != 2 or features.shape[1] != dim:
            raise AnimatorError(
                f"features of shape {list(features.shape)} do not fit these weights: they take [N, {dim}] "
                f"('{self.feature_kind}' features)"
            )
        return features

    @torch.no_grad()
    def window(self, padded: np.ndarray, initial: np.ndarray, last: int | None = None) -> np.ndarray:
        """padded [T + W - 1, F] (each frame's local window around it) + initial [P] -> offsets
        [T, P], or of the last `last` frames only [last, P]."""
        device = self.model.param_mean.device
        windows, start = (torch.from_numpy(a).to(device) for a in self._inputs(padded, initial))
        return self.model(windows, start, last)[0].cpu().numpy()

    def _inputs(self, padded: np.ndarray, initial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """padded [T + W - 1, F], initial [P] -> the generator's windows [1, T, W, F] and initial
        [1, P], float32."""
        windows = np.lib.stride_tricks.sliding_window_view(
            padded.astype(np.float32), self.model.config.local_window, axis=0
        )  # [T, F, W]
        return np.ascontiguousarray(windows.transpose(0, 2, 1)[None]), initial.astype(np.float32)[None]

    def tail(self, last: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """(padded [T + W - 1, F], initial [P]) -> offsets of the window's last `last` frames
        [last, P], as window(); on CPU through ONNX Runtime (engine/onnx_cpu.py: 0.95 against 3.6 ms,
        `python -m bench features`), made once per `last` and shared by the streams."""
        with self._tails_lock:
            if last not in self._tails:
                self._tails[last] = (
                    self._onnx_tail(last)
                    if self.model.param_mean.device.type == "cpu"
                    else lambda padded, initial: self.window(padded, initial, last)
                )
            return self._tails[last]

    def _onnx_tail(self, last: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        c = self.model.config
        example = (torch.zeros(1, c.window, c.local_window, c.feature_dim), torch.zeros(1, c.num_params))
        tail = OnnxFunction(_Tail(self.model, last), example, ["windows", "initial"])
        return lambda padded, initial: tail(*self._inputs(padded, initial))[0][0]


class _Tail(torch.nn.Module):
    """FacialGAN with `last` fixed, for export: windows [1, T, W, F], initial [1, P] -> [1, last, P]."""

    def __init__(self, model: FacialGAN, last: int):
        super().__init__()
        self.model, self.last = model, last

    def forward(self, windows: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
        return self.model(windows, initial, self.last)


def _finish(
    gan_offsets: np.ndarray,
    rest: FaceParams,
    idle: IdleMotion | None,
    first_frame: int,
    previous_activity: float,
) -> tuple[FaceParams, float]:
    """Offsets [n, P] of frames first_frame.. -> FaceParams: rest added, idle motion faded in while
    the mouth is still, blink and rig weights clipped to their ranges. Returns the last activity."""
    out = rest.array[0] + gan_offsets
    activity = previous_activity
    if idle is not None:
        level = np.zeros(len(out))
        decay = np.exp(-1.0 / (IDLE_AFTER_S * FPS))
        moving = np.abs(gan_offsets[:, MOUTH]).max(1) > 0.05
        for i, m in enumerate(moving):  # 1 while speaking, decays over IDLE_AFTER_S after it
            activity = 1.0 if m else activity * decay
            level[i] = activity
        still = np.clip(1 - level / 0.1, 0, 1)[:, None]  # the idle motion comes in when activity < 0.1
        sway = idle.params(np.arange(first_frame, first_frame + len(out))).array - rest.array[0]
        out[:, :6] += still[:, 0:1] * sway[:, :6]
        out[:, BLINK_COL] = np.maximum(out[:, BLINK_COL], still[:, 0] * sway[:, BLINK_COL])
    out[:, BLINK_COL] = np.clip(out[:, BLINK_COL], 0, 1)
    out[:, EXP_START:] = np.maximum(out[:, EXP_START:], 0)
    return FaceParams(out), activity


def animate_offline(
    gan: Gan, features: np.ndarray, rest: FaceParams, idle: IdleMotion | None = None
) -> FaceParams:
    """features [N, F] -> FaceParams [N] (N >= 1), the paper's way."""
    features = gan.check(features)
    c = gan.model.config
    T, n = c.window, len(features)
    if n == 0:
        raise AnimatorError("no feature frames to animate")
    length = max(n, T)
    padded = np.concatenate(
        [
            np.tile(gan.silence, (c.local_before, 1)),
            features,
            np.tile(gan.silence, (length - n + c.local_after, 1)),
        ]
    )
    out = np.zeros((length, c.num_params), np.float32)
    starts = list(range(0, length - T + 1, T - 1))
    if starts[-1] != length - T:
        starts.append(length - T)
    initial = np.zeros(c.num_params, np.float32)  # rest
    for start in starts:
        if start:
            initial = out[start]
        out[start : start + T] = gan.window(padded[start : start + T + c.local_window - 1], initial)
    if length >= SAVGOL[0]:
        smoothed = savgol_filter(out, *SAVGOL, axis=0, mode="interp")
        smoothed[:, LIPS] = out[:, LIPS]
        out = smoothed
    out[:, :6] = gaussian_filter1d(
        out[:, :6], POSE_SIGMA, axis=0, mode="nearest", truncate=POSE_TAPS / POSE_SIGMA
    )
    return _finish(out[:n], rest, idle, 0, 0.0)[0]


class _Timeline:
    """Rows indexed by frame number, from `first` on; frames before it read as `before`."""

    def __init__(self, first: int, before: np.ndarray):
        self.first = first
        self.before = before
        self.rows = np.zeros((0, len(before)), np.float32)

    @property
    def end(self) -> int:
        return self.first + len(self.rows)

    def append(self, rows: np.ndarray) -> None:
        self.rows = np.concatenate([self.rows, rows.astype(np.float32)])

    def get(self, a: int, b: int) -> np.ndarray:
        """Frames [a, b) (b <= end)."""
        missing = max(0, min(b, self.first) - a)
        return np.concatenate(
            [np.tile(self.before, (missing, 1)), self.rows[max(a, self.first) - self.first : b - self.first]]
        )

    def keep_from(self, frame: int) -> None:
        drop = max(0, frame - self.first)
        self.rows, self.first = self.rows[drop:], self.first + drop


class StreamingAnimator:
    """push(features [n, F]) -> the FaceParams of the frames that became final (in order, from
    frame 0); flush() -> the rest at the end of the input. One per live input."""

    def __init__(
        self,
        gan: Gan,
        rest: FaceParams,
        config: StreamConfig = StreamConfig(),
        idle: IdleMotion | None = None,
    ):
        self.gan, self.rest, self.config, self.idle = gan, rest, config, idle
        c = gan.model.config
        if config.update_frames > c.window:
            raise AnimatorError(
                f"look-ahead + stride ({config.update_frames}) exceed the window ({c.window} "
                "frames)"
            )
        self.tail = gan.tail(config.update_frames)
        self.features = _Timeline(0, gan.silence)
        self.raw = _Timeline(
            0, np.zeros(c.num_params, np.float32)
        )  # emitted offsets before smoothing; before 0: rest
        self.lookahead = np.zeros((0, c.num_params), np.float32)  # the last window's look-ahead predictions
        self.emitted = 0
        self.received = 0  # real frames (flush pads with silence beyond)
        self.activity = 0.0
        self.finished = False

    def push(self, features: np.ndarray) -> FaceParams:
        if self.finished:
            raise AnimatorError("push after flush: start a new StreamingAnimator for new input")
        features = np.asarray(features)
        features = self.gan.check(features[None] if features.ndim == 1 else features)
        self.features.append(features)
        self.received += len(features)
        return self._updates(self.features.end)

    def flush(self) -> FaceParams:
        """The remaining frames: the input is over, silence follows."""
        if self.finished:
            return FaceParams.neutral(0)
        self.finished = True
        real = self.received
        if real <= self.emitted:
            return FaceParams.neutral(0)
        self.features.append(np.tile(self.gan.silence, (self.config.update_frames, 1)))
        out = self._updates(real + self.config.update_frames)
        return out[: real - (self.emitted - len(out))]

    def _updates(self, available: int) -> FaceParams:
        out = []
        while available >= self.emitted + self.config.update_frames:
            out.append(self._update())
        if not out:
            return FaceParams.neutral(0)
        return FaceParams(np.concatenate([p.array for p in out]))

    def _update(self) -> FaceParams:
        c, L, S = self.gan.model.config, self.config.lookahead, self.config.stride
        end = self.emitted + S + L  # window: frames [end - T, end)
        start = end - c.window
        known = self.features.get(start - c.local_before, end)
        padded = np.concatenate(
            [known, np.tile(known[-1], (c.local_after, 1))]
        )  # future beyond: the last frame
        pred = self.tail(padded, self.raw.get(start, start + 1)[0])  # the window's last S + L frames
        new, ahead = pred[:S], pred[S:]
        overlap = min(S, len(self.lookahead))
        ramp = (np.arange(1, overlap + 1) / (overlap + 1))[:, None]
        new[:overlap] = ramp * new[:overlap] + (1 - ramp) * self.lookahead[:overlap]
        self.lookahead = ahead
        self.raw.append(new)
        smoothed = _smooth_causal(self.raw.get(self.emitted - SAVGOL[0], self.emitted + S), ahead, S)
        first, self.emitted = self.emitted, self.emitted + S
        self.raw.keep_from(self.emitted - c.window - SAVGOL[0])
        self.features.keep_from(self.emitted - c.window - c.local_before)
        params, self.activity = _finish(smoothed, self.rest, self.idle, first, self.activity)
        return params


def _smooth_causal(past_and_new: np.ndarray, ahead: np.ndarray, count: int) -> np.ndarray:
    """The last `count` rows of past_and_new smoothed like the offline filters, each kernel using
    only frames up to the end of `ahead` (the look-ahead predictions)."""
    seq = np.concatenate([past_and_new, ahead])  # the frames to emit end at len(past_and_new)
    last = len(seq) - 1
    width, order = SAVGOL
    half = width // 2

    def savgol_at(t: int) -> np.ndarray:
        hi = min(t + half, last)
        return _SAVGOL_AT[t - (hi - width + 1)] @ seq[hi - width + 1 : hi + 1]

    targets = range(len(past_and_new) - count, len(past_and_new))
    out = np.stack([savgol_at(t) for t in targets])
    out[:, LIPS] = past_and_new[-count:, LIPS]
    taps = np.arange(-POSE_TAPS, POSE_TAPS + 1)
    gauss = np.exp(-0.5 * (taps / POSE_SIGMA) ** 2)
    for k, t in enumerate(targets):
        usable = t + taps <= last
        neighbours = np.stack([savgol_at(t + j) for j in taps[usable]])[:, :6]
        out[k, :6] = gauss[usable] @ neighbours / gauss[usable].sum()
    return out
