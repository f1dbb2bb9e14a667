"""One interface for every speech-feature extractor, and the registry of extractor kinds.

Frames. Features come one row per video frame at FPS on the media clock: frame i covers samples
[frame_pts(i), frame_pts(i + 1)). Audio of S samples is covered by the frames that start inside it,
N = num_frames(S) = ceil(S * FPS / SAMPLE_RATE) (the smallest N with frame_pts(N) >= S), so
`offline(audio)` returns [N, dim]; the last frame may reach past the audio, which counts as silence.

Streaming. `extractor.stream()` returns a FeatureStream for one live input. `push(chunk)` returns
the frames that became final (never revised later), `flush()` the rest at the end of input.
Frame i is returned at the latest by the push that delivers the sample frame_pts(i + 1 +
lookahead_frames) - 1, i.e. the declared look-ahead is an upper bound on the added latency;
`lookahead_frames = None` declares an extractor that needs the whole input (frames come at flush).
A stream starts at the first chunk's pts: its time origin is that pts rounded down to a multiple
of CLOCK_PERIOD (where the frame grid repeats exactly), the samples between origin and the first
chunk are silence, and a gap between chunks is filled with silence. So pushed chunks + flush give
`offline(silence before + audio)` (to float rounding), frame k at pts origin + frame_pts(k), on
the session's frame grid. Interruption: drop the stream and start a new one.

Registry. `extractor(kind, model)` builds an extractor; a kind's module calls `register(kind,
factory)` when imported and is imported on first use (PROVIDERS), so one kind's dependencies never
load for another.
"""
from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from engine.audio.pcm import check_pcm
from engine.errors import EngineError
from engine.types import FPS, SAMPLE_RATE, AudioChunk, FeatureFrame, frame_pts

CLOCK_PERIOD = SAMPLE_RATE // math.gcd(SAMPLE_RATE, FPS)  # 1600 samples = 3 frames


class FeatureError(EngineError):
    """An extractor that cannot be built or used as asked (unknown kind, bad model file, misuse)."""


def num_frames(num_samples: int) -> int:
    """Number of video frames covering `num_samples` of audio: ceil(S * FPS / SAMPLE_RATE)."""
    return -(-num_samples * FPS // SAMPLE_RATE)


class FeatureStream(ABC):
    """Features of one live input. Subclasses implement `_process` and `_finish`, which see the
    audio as one contiguous signal from the stream's origin; this class keeps the clock."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._origin: int | None = None  # session pts of the stream's first sample
        self._received = 0  # samples since the origin, silence included
        self._emitted = 0  # frames returned so far
        self._finished = False

    @property
    def samples_received(self) -> int:
        """Samples since the stream's origin, silence before the first chunk and in gaps included."""
        return self._received

    @property
    def frames_emitted(self) -> int:
        return self._emitted

    def push(self, chunk: AudioChunk) -> list[FeatureFrame]:
        """Frames that became final with this chunk (pts on the session clock)."""
        if self._finished:
            raise FeatureError("push after flush: start a new stream for new input")
        pcm = check_pcm(chunk.pcm, f"audio chunk at pts {chunk.pts}", chunk.pts)
        if self._origin is None:
            self._origin = chunk.pts - chunk.pts % CLOCK_PERIOD
        gap = chunk.pts - (self._origin + self._received)
        if gap < 0:
            raise FeatureError(
                f"audio chunk at pts {chunk.pts} overlaps audio already pushed (up to {chunk.pts - gap})"
            )
        if gap:
            pcm = np.concatenate([np.zeros(gap, np.float32), pcm])
        self._received += len(pcm)
        return self._frames(self._process(pcm), self._origin)

    def flush(self) -> list[FeatureFrame]:
        """The remaining frames at the end of input; the stream takes no more audio after this."""
        if self._finished:
            return []
        self._finished = True
        if self._origin is None:
            return []
        frames = self._frames(self._finish(), self._origin)
        if self._emitted != num_frames(self._received):
            raise RuntimeError(
                f"{type(self).__name__} returned {self._emitted} frames for {self._received} samples, "
                f"expected {num_frames(self._received)}"
            )
        return frames

    @abstractmethod
    def _process(self, pcm: np.ndarray) -> np.ndarray:
        """pcm [S] float32 (the next samples) -> the rows [n, dim] that became final."""

    @abstractmethod
    def _finish(self) -> np.ndarray:
        """The remaining rows [n, dim] at the end of input (the input ends in silence)."""

    def _frames(self, rows: np.ndarray, origin: int) -> list[FeatureFrame]:
        rows = np.asarray(rows, np.float32).reshape(-1, self.dim)
        first = self._emitted
        self._emitted += len(rows)
        return [FeatureFrame(row, origin + frame_pts(first + k)) for k, row in enumerate(rows)]


class FeatureExtractor(ABC):
    """Audio -> one feature row per video frame. Subclasses set `kind`, `dim` and
    `lookahead_frames` and implement `_offline` and `stream`."""

    kind: str
    dim: int  # F, features per frame
    lookahead_frames: int | None  # frames of future audio a frame waits for; None: whole input

    def offline(self, audio: np.ndarray) -> np.ndarray:
        """audio [S] float32 mono at SAMPLE_RATE -> [num_frames(S), dim] float32."""
        audio = check_pcm(audio)
        rows = np.asarray(self._offline(audio), np.float32)
        expected = (num_frames(len(audio)), self.dim)
        if rows.shape != expected:
            raise RuntimeError(
                f"{type(self).__name__} returned {list(rows.shape)} for {len(audio)} samples, expected "
                f"{list(expected)}"
            )
        return rows

    @abstractmethod
    def _offline(self, audio: np.ndarray) -> np.ndarray:
        """audio [S] float32 (checked) -> [num_frames(S), dim]."""

    @abstractmethod
    def stream(self) -> FeatureStream:
        """A new stream for one live input."""

    def prepare_streaming(self) -> None:  # noqa: B027 (most kinds have nothing to prepare)
        """Make now what streams share and would otherwise make on first use (in a live frame)."""


Factory = Callable[[str | None], FeatureExtractor]  # model file (None: the kind's default) -> extractor
_FACTORIES: dict[str, Factory] = {}
PROVIDERS = {"builtin": "engine.audio.builtin_features", "deepspeech": "engine.audio.deepspeech"}


def register(kind: str, factory: Factory) -> None:
    """Make `extractor(kind, model)` call `factory(model)`. Called by the kind's module on import."""
    _FACTORIES[kind] = factory


def kinds() -> list[str]:
    """Every known kind (registered, or with a provider module to import)."""
    return sorted(set(PROVIDERS) | set(_FACTORIES))


def extractor(kind: str, model: str | None = None) -> FeatureExtractor:
    """The extractor of `kind`, built from the `model` file (None: the kind's default model)."""
    if kind not in _FACTORIES and kind in PROVIDERS:
        try:
            importlib.import_module(PROVIDERS[kind])
        except ModuleNotFoundError as e:
            if e.name != PROVIDERS[kind]:
                raise
            raise FeatureError(f"feature kind '{kind}' is not installed (no module {e.name})") from None
    if kind not in _FACTORIES:
        raise FeatureError(f"unknown feature kind '{kind}' (known: {', '.join(kinds())})")
    return _FACTORIES[kind](model)


def frame_windows(features: np.ndarray, before: int = 8, after: int = 7, pad: str = "zeros") -> np.ndarray:
    """features [N, F] -> [N, before + 1 + after, F]: frame t sees frames t-before..t+after, FACIAL-GAN's
    16-frame window by default. Beyond the ends: zeros as FACIAL (audio2face/_utils/audio_handler.py),
    or pad="edge" to repeat the first / last frame."""
    if pad not in ("zeros", "edge"):
        raise ValueError(f"pad must be 'zeros' or 'edge', got {pad!r}")
    features = np.asarray(features)
    offsets = np.arange(-before, after + 1)
    index = np.arange(len(features))[:, None] + offsets  # [N, W]
    windows = (
        features[np.clip(index, 0, max(len(features) - 1, 0))]
        if len(features)
        else np.zeros((0, len(offsets), *features.shape[1:]), features.dtype)
    )
    if pad == "zeros" and len(features):
        outside = (index < 0) | (index >= len(features))
        windows[outside] = 0
    return windows
