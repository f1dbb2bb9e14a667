"""Shared fixtures: the built-in avatar and its face model (loaded once per test session), one
torch thread, and for live-server tests an HTTP client session, loopback-only ICE and a server
of gradient avatars (tests/live_server.py)."""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import torch

from engine.avatar.bundle import load
from engine.face.model import FaceModel


@pytest.fixture(scope="session")
def avatar():
    return load("default")


@pytest.fixture(scope="session")
def face_model(avatar):
    return FaceModel(avatar.identity)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models and many small calls: one thread, so the shared cores are not oversubscribed."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def loopback_ice() -> Iterator[None]:
    """The test's aiortc viewers gather ICE candidates on loopback only, like the server."""
    from streaming.ice import loopback_only

    with loopback_only():
        yield


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """The live server's URL: 128x128 gradient avatars, the default one speaking by loudness."""
    from live_server import live_server

    from streaming.app import ServerConfig

    async with live_server(ServerConfig(port=0, size=128)) as url:
        yield url
