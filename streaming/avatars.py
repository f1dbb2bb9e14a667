"""The avatars a server serves: for each, what its sessions share (renderer, rest pose, motion
statistics, speech models), made once on first use in a worker thread.

An avatar without trained speech models still serves: it idles (blinks, head motion, closed
mouth), and every speech input is refused with the reason (`speech_error`), never faked.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from engine.avatar.bundle import AVATARS_DIR, MotionStats, load
from engine.pipeline.animator import StreamConfig
from engine.pipeline.frames import DEFAULT_SIZE, FrameSource
from engine.types import FaceParams
from streaming.speech import SpeechModel, SpeechUnavailable

log = logging.getLogger(__name__)

# Live R2V (lite, 256) costs about 0.6 of a CPU core at 30 fps on top of the rest of a session
# (`python -m bench r2v`: 18.8 ms a streamed frame on one thread); on fewer cores than this the
# frame rate comes first and "auto" serves the direct compositor (`--renderer r2v` insists).
LIVE_R2V_MIN_CORES = 4


class FaceRenderer(Protocol):
    """Face parameters -> video frames; shared by the avatar's sessions, called from several
    worker threads at once."""

    size: int  # frames are size x size pixels
    past: int  # frames before the current one that its input window holds

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        """window: params of frames index - past .. index -> [size, size, 3] uint8 RGB of frame `index`."""
        ...

    def render_batch(self, windows: FaceParams) -> np.ndarray:
        """B windows of past + 1 frames each, concatenated -> [B, size, size, 3] uint8."""
        ...


@dataclass(frozen=True)
class LiveAvatar:
    name: str
    renderer: FaceRenderer
    rest: FaceParams  # one frame: the mouth closed, the head at home
    motion: MotionStats  # drives the idle motion
    speech: SpeechModel | None = None
    speech_error: str = ""  # why `speech` is None

    def __post_init__(self) -> None:
        if self.speech is None and not self.speech_error:
            raise ValueError("an avatar without speech models needs the reason in speech_error")


AvatarFactory = Callable[[str], LiveAvatar]


@dataclass(frozen=True)
class EngineOptions:
    size: int = DEFAULT_SIZE
    device: str = "cpu"
    # R2V when the avatar has weights (and, on a CPU, LIVE_R2V_MIN_CORES cores), else the compositor
    renderer: str = "auto"
    backend: str = "eager"
    lookahead: int = (
        StreamConfig.lookahead
    )  # FACIAL-GAN streaming look-ahead, frames (latency against smoothness)
    stride: int = StreamConfig.stride  # FACIAL-GAN streaming update stride, frames (latency against compute)


class EngineRenderer:
    """engine.pipeline.frames.FrameSource in live mode (no future frames) as a FaceRenderer."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.size = source.size
        self.past = source.past

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        return self.source.windows(window)[0]

    def render_batch(self, windows: FaceParams) -> np.ndarray:
        return self.source.windows(windows)


def engine_avatar_factory(options: EngineOptions, cores: int | None = None) -> AvatarFactory:
    """Avatars from bundles: the engine's renderer, and its speech models when they are trained.
    A name is a bundle under avatars/ (never looked up elsewhere); a path (the operator's
    --avatar) is a bundle directory. `cores`: the CPU cores the server may use (default: its
    affinity)."""
    from streaming.config import cpu_cores

    cores = cores or cpu_cores()
    renderer = options.renderer
    if renderer == "auto" and options.device == "cpu" and cores < LIVE_R2V_MIN_CORES:
        renderer = "composite"
        log.info(
            "%d CPU cores: live frames come from the direct compositor "
            "(R2V live wants %d; --renderer r2v insists)",
            cores,
            LIVE_R2V_MIN_CORES,
        )

    def make(name: str) -> LiveAvatar:
        avatar = load(bundle_path(name))
        source = FrameSource(
            avatar,
            renderer=renderer,
            backend=options.backend,
            size=options.size,
            device=options.device,
            live=True,
        )
        speech, error = None, ""
        try:
            speech = SpeechModel.load(avatar, options.lookahead, options.stride)
        except SpeechUnavailable as e:
            error = f"speech input is unavailable for avatar '{avatar.name}': {e}"
            log.warning("%s", error)
        return LiveAvatar(
            avatar.name, EngineRenderer(source), avatar.rest_params, avatar.motion, speech, error
        )

    return make


def bundle_path(name: str) -> Path:
    """The bundle directory of an avatar name (under avatars/) or of a path (with a separator)."""
    return Path(name) if os.sep in name or name.startswith(".") else AVATARS_DIR / name


def bundle_names() -> list[str]:
    """The avatar bundles under avatars/."""
    return sorted(path.parent.name for path in AVATARS_DIR.glob("*/avatar.json"))


class AvatarCache:
    """One LiveAvatar per name, made on first use in `executor` (setup takes seconds and must not
    hold up the sessions already live, whose worker threads are as many as the cores) and shared
    by every session of that avatar. A name that failed to load fails again at once for
    `retry_s` seconds (a broken bundle is not reloaded for every offer), then is tried anew."""

    def __init__(
        self, factory: AvatarFactory, executor: Executor | None = None, retry_s: float = 30.0
    ) -> None:
        self._factory = factory
        self._executor = executor
        self.retry_s = retry_s
        self._avatars: dict[str, asyncio.Future[LiveAvatar]] = {}
        self._failed: dict[str, tuple[float, BaseException]] = {}  # name -> (monotonic time, error)

    async def get(self, name: str) -> LiveAvatar:
        failed = self._failed.get(name)
        if failed is not None:
            if time.monotonic() - failed[0] < self.retry_s:
                raise failed[1]
            del self._failed[name]
        avatar = self._avatars.get(name)
        if avatar is None:
            avatar = asyncio.get_running_loop().run_in_executor(self._executor, self._factory, name)
            self._avatars[name] = avatar
        try:
            # shielded: a viewer who gives up must not cancel the setup other viewers wait for
            return await asyncio.shield(avatar)
        except Exception as error:
            if self._avatars.get(name) is avatar:
                del self._avatars[name]
                self._failed[name] = (time.monotonic(), error)
            raise
