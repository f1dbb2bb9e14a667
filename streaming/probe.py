"""A probe for measuring the live path without trained models: a speech model whose one feature is
the audio's loudness and whose animator opens the jaw with it, frame for frame.

Tests and the latency benchmark run it through the same interfaces as the real models
(FeatureExtractor, the Animator protocol), so the clock, queues, interruption, rendering and
transport are measured for real. The server never serves it: run_server.py uses the avatar's
trained models, or refuses speech input.
"""

from __future__ import annotations

import numpy as np

from engine.audio.features import FeatureExtractor, FeatureStream, num_frames
from engine.types import EXP_START, EXPRESSION_NAMES, AudioChunk, FaceParams, frame_pts
from streaming.speech import SpeechModel

JAW = EXP_START + EXPRESSION_NAMES.index("jawOpen")
JAW_GAIN = 4.0  # jawOpen per unit of RMS level: a 0.3-amplitude tone opens the jaw 0.85


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(pcm, dtype=np.float64)))) if len(pcm) else 0.0


class _LoudnessStream(FeatureStream):
    def __init__(self) -> None:
        super().__init__(dim=1)
        self._pending = np.zeros(0, np.float32)
        self._count = 0

    def _process(self, pcm: np.ndarray) -> np.ndarray:
        self._pending = np.concatenate([self._pending, pcm])
        rows = []
        while len(self._pending) >= (length := frame_pts(self._count + 1) - frame_pts(self._count)):
            rows.append(rms(self._pending[:length]))
            self._pending, self._count = self._pending[length:], self._count + 1
        return np.array(rows, np.float32).reshape(-1, 1)

    def _finish(self) -> np.ndarray:
        if num_frames(self.samples_received) == self._count:
            return np.zeros((0, 1), np.float32)
        return np.array([[rms(self._pending)]], np.float32)  # the last frame reaches past the audio


class LoudnessExtractor(FeatureExtractor):
    """One feature per frame: the RMS level of the frame's audio; no look-ahead."""

    kind = "loudness"
    dim = 1
    lookahead_frames = 0

    def _offline(self, audio: np.ndarray) -> np.ndarray:
        stream = _LoudnessStream()
        frames = stream.push(AudioChunk(audio, 0)) + stream.flush()
        return np.array([f.values for f in frames], np.float32).reshape(-1, 1)

    def stream(self) -> FeatureStream:
        return _LoudnessStream()


class JawAnimator:
    """features [n, 1] (loudness) -> the rest face with jawOpen = JAW_GAIN * loudness, at once."""

    def __init__(self, rest: FaceParams) -> None:
        self.rest = rest

    def push(self, features: np.ndarray) -> FaceParams:
        rows = np.repeat(self.rest.array, len(features), axis=0)
        rows[:, JAW] = np.clip(JAW_GAIN * np.asarray(features)[:, 0], 0, 1)
        return FaceParams(rows)

    def flush(self) -> FaceParams:
        return FaceParams.neutral(0)


def loudness_speech(rest: FaceParams | None = None) -> SpeechModel:
    rest = rest if rest is not None else FaceParams.neutral()
    return SpeechModel(
        LoudnessExtractor(), lambda first_frame, idle: JawAnimator(rest), 0, "probe: loudness opens the jaw"
    )
