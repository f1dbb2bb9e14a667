"""Helpers for tests of the live server: small real components behind the server's interfaces, and
the real app on a free port.

- GradientRenderer: a FaceRenderer that draws a colour gradient moving with the frame index, the
  index as a bar code along the top, and the frame's jawOpen as the grey level of a patch at the
  bottom; so a received frame says which frame it is and what mouth it was drawn with. Frames
  drawn in a batch (several sessions' frames at once) are not told their index: their bar code
  reads BATCHED.
- Speaking avatars use streaming.probe's speech model: loudness opens the jaw, frame for frame.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from aiohttp import web

from engine.avatar.bundle import MotionStats
from engine.types import FaceParams
from streaming import probe
from streaming.app import ServerConfig, create_app
from streaming.avatars import AvatarFactory, LiveAvatar
from streaming.probe import loudness_speech
from streaming.speech import SpeechModel

INDEX_BITS = 12  # the frame index is drawn as this many black/white blocks along the top
WHITE = 255
BATCHED = (1 << INDEX_BITS) - 1  # the index drawn on frames drawn in a batch


class GradientRenderer:
    past = 0

    def __init__(self, size: int) -> None:
        self.size = size
        self._y, self._x = np.mgrid[0:size, 0:size]
        self._block = size // INDEX_BITS

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        rgb = np.empty((self.size, self.size, 3), np.uint8)
        rgb[..., 0] = (self._x + 4 * index) % 256
        rgb[..., 1] = (self._y + 2 * index) % 256
        rgb[..., 2] = 128
        for bit in range(INDEX_BITS):
            rgb[: self._block, bit * self._block : (bit + 1) * self._block] = WHITE * ((index >> bit) & 1)
        rgb[self._jaw_patch()] = round(WHITE * float(np.clip(window.array[-1, probe.JAW], 0, 1)))
        return rgb

    def render_batch(self, windows: FaceParams) -> np.ndarray:
        return np.stack([self.render(BATCHED, windows[k]) for k in range(len(windows))])

    def _jaw_patch(self) -> tuple[slice, slice]:
        b = 2 * self._block
        return slice(self.size - 2 * b, self.size), slice(self.size // 2 - b, self.size // 2 + b)


def read_index(rgb: np.ndarray) -> int:
    """The frame index drawn by GradientRenderer, read from the centres of its blocks."""
    block = rgb.shape[1] // INDEX_BITS
    centres = rgb[block // 2, block // 2 :: block][:INDEX_BITS].mean(axis=1)
    return sum(1 << bit for bit, level in enumerate(centres) if level > WHITE / 2)


def jaw_box(size: int) -> list[int]:
    """[x0, y0, x1, y1] inside the patch whose grey level GradientRenderer draws as jawOpen."""
    ys, xs = GradientRenderer(size)._jaw_patch()
    return [xs.start + 4, ys.start + 4, xs.stop - 4, ys.stop - 4]


def read_jaw(rgb: np.ndarray) -> float:
    """The jawOpen drawn by GradientRenderer (0..1), from the middle of its patch."""
    ys, xs = GradientRenderer(rgb.shape[0])._jaw_patch()
    h, w = ys.stop - ys.start, xs.stop - xs.start
    return (
        float(rgb[ys.start + h // 4 : ys.stop - h // 4, xs.start + w // 4 : xs.stop - w // 4].mean()) / WHITE
    )


def gradient_avatar(name: str, size: int, speech: SpeechModel | None = None) -> LiveAvatar:
    """A gradient avatar; without `speech` it cannot speak (as an avatar without trained models)."""
    error = (
        "" if speech else f"speech input is unavailable for avatar '{name}': no speech models in this test"
    )
    return LiveAvatar(name, GradientRenderer(size), FaceParams.neutral(), MotionStats(), speech, error)


def gradient_factory(size: int, avatars: dict[str, SpeechModel | None] | None = None) -> AvatarFactory:
    """Gradient avatars by name (default: "default", speaking by loudness); any other name is unknown."""
    avatars = avatars if avatars is not None else {"default": loudness_speech()}

    def make(name: str) -> LiveAvatar:
        if name not in avatars:
            raise LookupError(f"no avatar named {name!r}")
        return gradient_avatar(name, size, avatars[name])

    return make


@asynccontextmanager
async def live_app(
    config: ServerConfig, factory: AvatarFactory | None = None
) -> AsyncIterator[tuple[str, web.Application]]:
    """Runs the app on config.host (port 0: a free one) with gradient avatars, or the avatars
    `factory` makes; yields its URL and the app (for tests that look at its sessions)."""
    app = create_app(config, factory or gradient_factory(config.size))
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


@asynccontextmanager
async def live_server(config: ServerConfig, factory: AvatarFactory | None = None) -> AsyncIterator[str]:
    """live_app's URL alone."""
    async with live_app(config, factory) as (url, _):
        yield url
