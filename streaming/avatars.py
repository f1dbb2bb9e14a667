"""The avatars a server serves: for each, what its sessions share (renderer, rest pose, motion
statistics, speech models), made once on first use in a worker thread.

An avatar without trained speech models still serves: it idles (blinks, head motion, closed
mouth), and every speech input is refused with the reason (`speech_error`), never faked.
"""
from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
_SETUP = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avatar-setup")


class FaceRenderer(Protocol):
    """Face parameters -> video frames; shared by the avatar's sessions, called from several
    worker threads at once."""

    size: int  # frames are size x size pixels
    past: int  # frames before the current one that its input window holds

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        """window: params of frames index - past .. index -> [size, size, 3] uint8 RGB of frame `index`."""
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
    renderer: str = "auto"  # R2V when the avatar has weights (and, on a CPU, LIVE_R2V_MIN_CORES cores), else the compositor
    backend: str = "eager"
    lookahead: int = StreamConfig.lookahead  # FACIAL-GAN streaming look-ahead, frames (latency against smoothness)
    stride: int = StreamConfig.stride  # FACIAL-GAN streaming update stride, frames (latency against compute)


class EngineRenderer:
    """engine.pipeline.frames.FrameSource in live mode (no future frames) as a FaceRenderer."""

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.size = source.size
        self.past = source.past

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        return self.source.windows(window)[0]


def engine_avatar_factory(options: EngineOptions) -> AvatarFactory:
    """Avatars from bundles (a name under avatars/ or a path): the engine's renderer, and its
    speech models when they are trained."""

    renderer = options.renderer
    if renderer == "auto" and options.device == "cpu" and (os.cpu_count() or 1) < LIVE_R2V_MIN_CORES:
        renderer = "composite"
        log.info("%d CPU cores: live frames come from the direct compositor (R2V live wants %d; --renderer r2v insists)", os.cpu_count(), LIVE_R2V_MIN_CORES)

    def make(name: str) -> LiveAvatar:
        avatar = load(name)
        source = FrameSource(avatar, renderer=renderer, backend=options.backend, size=options.size, device=options.device, live=True)
        speech, error = None, ""
        try:
            speech = SpeechModel.load(avatar, options.lookahead, options.stride)
        except SpeechUnavailable as e:
            error = f"speech input is unavailable for avatar '{avatar.name}': {e}"
            log.warning("%s", error)
        return LiveAvatar(avatar.name, EngineRenderer(source), avatar.rest_params, avatar.motion, speech, error)

    return make


def bundle_names() -> list[str]:
    """The avatar bundles under avatars/."""
    return sorted(path.parent.name for path in AVATARS_DIR.glob("*/avatar.json"))


class AvatarCache:
    """One LiveAvatar per name, made on first use in a thread of its own (setup takes seconds and
    must not hold up the sessions already live, whose worker threads are as many as the cores) and
    shared by every session of that avatar."""

    def __init__(self, factory: AvatarFactory) -> None:
        self._factory = factory
        self._avatars: dict[str, asyncio.Future[LiveAvatar]] = {}

    async def get(self, name: str) -> LiveAvatar:
        avatar = self._avatars.get(name)
        if avatar is None:
            avatar = asyncio.get_running_loop().run_in_executor(_SETUP, self._factory, name)
            self._avatars[name] = avatar
        try:
            # shielded: a viewer who gives up must not cancel the setup other viewers wait for
            return await asyncio.shield(avatar)
        except Exception:
            if self._avatars.get(name) is avatar:
                del self._avatars[name]  # not cached, so the next offer tries again
            raise
