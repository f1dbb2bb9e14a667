"""Helpers for tests of the live server: a synthetic avatar, and the real app on a free port."""
from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from aiohttp import web

from streaming.app import ServerConfig, SourceFactory, create_app

INDEX_BITS = 12  # the frame index is drawn as this many black/white blocks along the top
WHITE = 255


class GradientSource:
    """A FrameSource for tests: a colour gradient that moves with the frame index, with the index
    drawn in it as a bar code, so a received frame says which frame it is."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._y, self._x = np.mgrid[0:size, 0:size]
        self._block = size // INDEX_BITS

    def frame(self, index: int) -> np.ndarray:
        rgb = np.empty((self.size, self.size, 3), np.uint8)
        rgb[..., 0] = (self._x + 4 * index) % 256
        rgb[..., 1] = (self._y + 2 * index) % 256
        rgb[..., 2] = 128
        for bit in range(INDEX_BITS):
            rgb[: self._block, bit * self._block : (bit + 1) * self._block] = WHITE * ((index >> bit) & 1)
        return rgb


def read_index(rgb: np.ndarray) -> int:
    """The frame index drawn by GradientSource, read from the centres of its blocks."""
    block = rgb.shape[1] // INDEX_BITS
    centres = rgb[block // 2, block // 2 :: block][:INDEX_BITS].mean(axis=1)
    return sum(1 << bit for bit, level in enumerate(centres) if level > WHITE / 2)


def gradient_factory(size: int, avatars: tuple[str, ...] = ("default",)) -> SourceFactory:
    """Sources for the named avatars; any other name is unknown."""

    def make(avatar: str) -> GradientSource:
        if avatar not in avatars:
            raise LookupError(f"no avatar named {avatar!r}")
        return GradientSource(size)

    return make


@asynccontextmanager
async def live_server(config: ServerConfig, factory: SourceFactory | None = None) -> AsyncIterator[str]:
    """Runs the app on config.host (port 0: a free one) with gradient avatars, or the sources
    `factory` makes; yields its URL."""
    runner = web.AppRunner(create_app(config, factory or gradient_factory(config.size)))
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
