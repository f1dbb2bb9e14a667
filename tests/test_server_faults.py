"""Faults inside the server: a speech model or a renderer raising mid-session, espeak-ng missing,
a corrupted avatar bundle, the event loop blocked for 500 ms. Only the affected session fails,
with a clear error; a watching viewer of another session keeps its frame rate."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from live_server import GradientRenderer, gradient_avatar, live_app, live_server
from viewers import Viewer, open_session, tone_with_pauses

from engine.types import FPS, FaceParams
from streaming import avatars
from streaming.access import SESSIONS
from streaming.app import ServerConfig
from streaming.avatars import LiveAvatar, engine_avatar_factory
from streaming.probe import JawAnimator, LoudnessExtractor, loudness_speech
from streaming.speech import SpeechModel

SIZE = 64
MIN_FPS = 0.6 * FPS  # loose for a loaded 2-core CI machine
WATCH_S = 3.0

pytestmark = pytest.mark.usefixtures("loopback_ice")


class FailingAnimator(JawAnimator):
    def push(self, features: np.ndarray) -> FaceParams:
        raise RuntimeError("the model's weights turned to NaN")


class FailingRenderer(GradientRenderer):
    def render(self, index: int, window: FaceParams) -> np.ndarray:
        if index > 10:
            raise RuntimeError("the GPU fell off the bus")
        return super().render(index, window)


def factory(name: str) -> LiveAvatar:
    if name == "bad-model":
        return gradient_avatar(
            name,
            SIZE,
            SpeechModel(LoudnessExtractor(), lambda first, idle: FailingAnimator(FaceParams.neutral()), 0),
        )
    if name == "bad-renderer":
        avatar = gradient_avatar(name, SIZE)
        return LiveAvatar(name, FailingRenderer(SIZE), avatar.rest, avatar.motion, None, avatar.speech_error)
    return gradient_avatar(name, SIZE, loudness_speech())


async def fps_of(viewer: Viewer, seconds: float = WATCH_S) -> float:
    start = len(viewer.received.video)
    await viewer.record(seconds)
    return (len(viewer.received.video) - start) / seconds


async def watched(http: aiohttp.ClientSession, url: str) -> Viewer:
    viewer = Viewer()
    await viewer.connect(http, url)
    await viewer.record(0.5)
    return viewer


async def test_a_model_failing_mid_session_closes_that_session_only(http: aiohttp.ClientSession) -> None:
    async with live_app(ServerConfig(port=0, size=SIZE), factory) as (url, app):
        watcher = await watched(http, url)
        try:
            bad = await open_session(http, url, avatar="bad-model")
            ws = await http.ws_connect(f"{url}/ws/{bad['session_id']}?token={bad['token']}")
            await ws.send_json({"type": "start", "sample_rate": 16_000})
            await ws.receive_json(timeout=10)
            await ws.send_bytes(tone_with_pauses(0, 0.5).tobytes())
            rate = await fps_of(watcher)
            assert app[SESSIONS].get(bad["session_id"]) is None and app[SESSIONS].errors == 1
            assert rate >= MIN_FPS, rate
            await ws.close()
        finally:
            await watcher.pc.close()


async def test_a_renderer_failing_ends_that_session_only(http: aiohttp.ClientSession) -> None:
    async with live_app(ServerConfig(port=0, size=SIZE), factory) as (url, app):
        watcher = await watched(http, url)
        bad = Viewer()
        try:
            session = await bad.connect(http, url, avatar="bad-renderer")
            rate = await fps_of(watcher)
            assert app[SESSIONS].get(session["session_id"]) is None and app[SESSIONS].errors == 1
            assert rate >= MIN_FPS, rate
        finally:
            await bad.pc.close()
            await watcher.pc.close()


async def test_espeak_missing_fails_say_with_the_reason(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.audio import tts

    def missing(text: str, voice: str = "en-us") -> np.ndarray:
        raise tts.TtsError("libespeak-ng is not installed (Debian package libespeak-ng1)")

    monkeypatch.setattr(tts, "text_to_speech", missing)
    async with live_server(ServerConfig(port=0, size=SIZE), factory) as url:
        watcher = await watched(http, url)
        try:
            session = watcher.session
            async with http.post(
                f"{url}/sessions/{session['session_id']}/say",
                json={"text": "hello"},
                headers={"Authorization": f"Bearer {session['token']}"},
            ) as response:
                assert response.status == 503 and "espeak-ng" in (await response.json())["error"]
            assert await fps_of(watcher) >= MIN_FPS
        finally:
            await watcher.pc.close()


async def test_a_corrupted_bundle_is_refused_while_others_are_served(
    http: aiohttp.ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, avatar
) -> None:
    shutil.copytree(avatar.path, tmp_path / "copy")
    shutil.copytree(avatar.path, tmp_path / "broken")
    (tmp_path / "broken" / "identity.npz").write_bytes(b"not a numpy archive")
    monkeypatch.setattr(avatars, "AVATARS_DIR", tmp_path)
    config = ServerConfig(port=0, size=SIZE, avatar="copy")
    async with live_server(config, engine_avatar_factory(config.engine)) as url:
        watcher = await watched(http, url)
        try:
            (tmp_path / "copy" / "reference.png").write_bytes(
                b"rebuilt half way"
            )  # the served bundle changes on disk
            for name in ("broken", "copy"):
                pc = Viewer()
                try:
                    await pc.pc.setLocalDescription(await pc.pc.createOffer())
                    async with http.post(
                        f"{url}/offer",
                        json={"sdp": pc.pc.localDescription.sdp, "type": "offer", "avatar": name},
                    ) as response:
                        body = await response.json()
                        if name == "broken":
                            assert (
                                response.status == 400
                                and "cannot be loaded" in body["error"]
                                and "/" not in body["error"]
                            )
                        else:
                            assert response.status == 200, body  # served from memory, as loaded
                finally:
                    await pc.pc.close()
            assert await fps_of(watcher) >= MIN_FPS
        finally:
            await watcher.pc.close()


async def test_an_event_loop_blocked_for_500_ms_recovers(http: aiohttp.ClientSession) -> None:
    async with live_server(ServerConfig(port=0, size=SIZE), factory) as url:
        watcher = await watched(http, url)
        try:
            asyncio.get_running_loop().call_soon(time.sleep, 0.5)  # a blocking call somewhere on the loop
            await asyncio.sleep(0.6)
            rate = await fps_of(watcher)
            assert rate >= MIN_FPS, rate
            async with http.get(f"{url}/health") as response:
                assert (await response.json())["sessions"] == 1
        finally:
            await watcher.pc.close()
