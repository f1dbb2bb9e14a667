"""Speech -> an MP4 of the avatar saying it: features -> FACIAL-GAN -> frames, audio muxed in sync.

Frame i of the video shows the face for the audio of frame i ([frame_pts(i), frame_pts(i + 1)));
the MP4 carries the whole audio from time 0, so lips and sound line up whatever the mode's latency.

Modes:
- offline: features of the whole input, the paper's windows (engine/pipeline/animator.py);
- streaming: the live chain run on the file: 20 ms audio chunks -> the feature stream -> the
  streaming animator -> frames as they become final. The video is the same length; the timing
  report shows what the live path costs.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from engine.audio.features import extractor
from engine.audio.pcm import check_pcm
from engine.avatar.bundle import Avatar
from engine.errors import EngineError
from engine.pipeline.animator import Gan, StreamConfig, StreamingAnimator, animate_offline
from engine.pipeline.frames import FrameSource
from engine.pipeline.idle import IdleMotion
from engine.types import SAMPLE_RATE, AudioChunk, FaceParams
from engine.video import write_mp4

CHUNK = SAMPLE_RATE // 50  # 20 ms, as a live input delivers audio
RENDER_BATCH = 8
MODES = ("offline", "streaming")


class SpeakError(EngineError):
    """Input that cannot be spoken: no audio, an unknown mode."""


@dataclass
class Timings:
    """Seconds spent per stage, and the audio's length."""

    audio_seconds: float
    frames: int = 0  # video frames written
    features: float = 0.0
    animate: float = 0.0
    render: float = 0.0  # rendering and encoding

    @property
    def total(self) -> float:
        return self.features + self.animate + self.render


class Speaker:
    """One avatar speaking with one feature kind: audio -> FaceParams, in either mode."""

    def __init__(
        self,
        avatar: Avatar,
        kind: str = "builtin",
        feature_model: str | None = None,
        stream: StreamConfig = StreamConfig(),
        device: str = "cpu",
        seed: int = 0,
    ):
        self.avatar = avatar
        self.features = extractor(kind, feature_model)
        self.gan = Gan.for_avatar(avatar, kind, device)
        self.stream_config = stream
        self.idle = IdleMotion(avatar.rest_params, avatar.motion, seed)

    def offline(self, audio: np.ndarray, timings: Timings) -> FaceParams:
        start = time.perf_counter()
        features = self.features.offline(audio)
        timings.features += time.perf_counter() - start
        start = time.perf_counter()
        params = animate_offline(self.gan, features, self.avatar.rest_params, self.idle)
        timings.animate += time.perf_counter() - start
        return params

    def streaming(self, audio: np.ndarray, timings: Timings) -> Iterator[FaceParams]:
        """FaceParams in the order they become final, chunk by chunk, then the flush."""
        stream = self.features.stream()
        animator = StreamingAnimator(self.gan, self.avatar.rest_params, self.stream_config, self.idle)
        for pts in range(0, len(audio), CHUNK):
            start = time.perf_counter()
            rows = [f.values for f in stream.push(AudioChunk(audio[pts : pts + CHUNK], pts))]
            timings.features += time.perf_counter() - start
            if rows:
                yield self._animate(animator.push, np.stack(rows), timings)
        start = time.perf_counter()
        rows = [f.values for f in stream.flush()]
        timings.features += time.perf_counter() - start
        if rows:
            yield self._animate(animator.push, np.stack(rows), timings)
        start = time.perf_counter()
        yield animator.flush()
        timings.animate += time.perf_counter() - start

    @staticmethod
    def _animate(push: Callable[[np.ndarray], FaceParams], rows: np.ndarray, timings: Timings) -> FaceParams:
        start = time.perf_counter()
        params = push(rows)
        timings.animate += time.perf_counter() - start
        return params


def speak(
    speaker: Speaker,
    audio: np.ndarray,
    out: str,
    mode: str = "offline",
    size: int | None = None,
    renderer: str = "auto",
    device: str = "cpu",
) -> Timings:
    """Write the MP4 of `speaker` saying `audio` ([S] float32 at SAMPLE_RATE) to `out`."""
    if mode not in MODES:
        raise SpeakError(f"unknown mode '{mode}', expected one of {MODES}")
    audio = check_pcm(audio)
    if len(audio) == 0:
        raise SpeakError("the audio is empty")
    timings = Timings(len(audio) / SAMPLE_RATE)
    source = FrameSource(
        speaker.avatar, renderer=renderer, size=size, device=device, live=mode == "streaming"
    )

    def streamed() -> Iterator[np.ndarray]:
        for params in speaker.streaming(audio, timings):
            if len(params):
                yield from source.render(params)

    def whole() -> Iterator[np.ndarray]:
        params = speaker.offline(audio, timings)
        for first in range(0, len(params), RENDER_BATCH):
            after = first + RENDER_BATCH  # R2V's future frames of the batch's last ones
            yield from source.render(params[first:after], params[after : after + source.future])

    def counted(frames: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            timings.frames += 1
            yield frame

    start = time.perf_counter()
    write_mp4(out, counted(streamed() if mode == "streaming" else whole()), audio)
    timings.render = time.perf_counter() - start - timings.features - timings.animate
    return timings
