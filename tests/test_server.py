"""The live server's endpoints on loopback with real aiortc viewers: offers, sessions (isolated,
capped, token-protected, expiring), health, metrics, the page. Speech end to end is in
test_server_speech.py."""
from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VIDEO_CLOCK_RATE
from av import VideoFrame
from live_server import gradient_factory, live_server, read_index
from viewers import OPEN, RECEIVE_TIMEOUT_S, Microphone, Viewer, health, post_offer, tone_with_pauses, viewer

from engine.pipeline.frames import FrameSource
from engine.types import FPS, SAMPLE_RATE, FaceParams, frame_pts
from streaming.app import ServerConfig
from streaming.avatars import engine_avatar_factory
from streaming.probe import LoudnessExtractor, loudness_speech
from streaming.speech import SpeechModel

SIZE = 128
FRAMES = 30
ROUNDING_TICKS = 1


pytestmark = pytest.mark.usefixtures("loopback_ice")


async def test_viewer_receives_live_video_at_fps(server: str, http: aiohttp.ClientSession) -> None:
    pc = await viewer()
    tracks: asyncio.Queue = asyncio.Queue()
    pc.on("track", tracks.put_nowait)
    try:
        answer = await post_offer(http, server, pc)
        assert answer["type"] == "answer" and answer["session_id"] and answer["token"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        frames: list[VideoFrame] = []
        arrivals: list[float] = []
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            track = await tracks.get()
            while len(frames) <= FRAMES:
                frames.append(await track.recv())
                arrivals.append(time.monotonic())
    finally:
        await pc.close()

    assert all((f.width, f.height) == (SIZE, SIZE) for f in frames)
    # The viewer's pts count from its first frame (aiortc unwraps the RTP timestamps) ...
    assert frames[0].pts == 0 and all(a.pts < b.pts for a, b in zip(frames, frames[1:], strict=False))
    # ... and step by the media clock time between the frames drawn in them, which only move forward.
    indices = [read_index(f.to_ndarray(format="rgb24")) for f in frames]
    for i, j, a, b in zip(indices, indices[1:], frames, frames[1:], strict=False):
        assert j > i, indices
        expected = (
            frame_pts(j) * VIDEO_CLOCK_RATE // SAMPLE_RATE - frame_pts(i) * VIDEO_CLOCK_RATE // SAMPLE_RATE
        )
        # aiortc's VP8 encoder carries the pts through microseconds, so a tick may round away
        assert abs((b.pts - a.pts) - expected) <= ROUNDING_TICKS, (i, j, b.pts - a.pts, expected)
    # 30 frames after the first one take one second at FPS; loose bounds for a loaded 2-core CI.
    elapsed = arrivals[FRAMES] - arrivals[0]
    assert 0.7 * FRAMES / FPS < elapsed < 2.5 * FRAMES / FPS, elapsed


async def test_viewer_sees_the_builtin_avatar_alive(http: aiohttp.ClientSession, avatar) -> None:
    """The real idle avatar (no injected source): it looks like the photo, and it moves."""
    config = ServerConfig(port=0, size=SIZE)
    async with live_server(config, engine_avatar_factory(config.engine)) as url:
        pc = await viewer()
        tracks: asyncio.Queue = asyncio.Queue()
        pc.on("track", tracks.put_nowait)
        try:
            answer = await post_offer(http, url, pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            async with asyncio.timeout(RECEIVE_TIMEOUT_S + 10):  # + loading the avatar
                track = await tracks.get()
                frames = [
                    (await track.recv()).to_ndarray(format="rgb24").astype(np.float32) for _ in range(2 * FPS)
                ]
        finally:
            await pc.close()
    photo = FrameSource(avatar, renderer="composite", size=SIZE).render(avatar.rest_params)[0]
    # grey levels (a grey frame: ~66): the avatar, through VP8 at a bitrate that drops under load
    assert np.abs(frames[-1] - photo).mean() < 20
    assert max(np.abs(f - frames[0]).mean() for f in frames[FPS:]) > 1.0  # head sway, blinks


async def test_health_counts_sessions(server: str, http: aiohttp.ClientSession) -> None:
    assert await health(http, server) == {"status": "ok", "sessions": 0}
    pc = await viewer()
    try:
        await post_offer(http, server, pc)
        assert await health(http, server) == {"status": "ok", "sessions": 1}
    finally:
        await pc.close()


async def test_index_page_and_static_files(server: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server}/") as response:
        assert response.status == 200
        assert '<video id="avatar"' in await response.text()
    for name in ("app.js", "style.css"):
        async with http.get(f"{server}/static/{name}") as response:
            assert response.status == 200, name


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[1, 2]", id="not-an-object"),
        pytest.param(b'{"type": "offer"}', id="no-sdp"),
        pytest.param(b'{"sdp": "", "type": "offer"}', id="empty-sdp"),
        pytest.param(b'{"sdp": 5, "type": "offer"}', id="sdp-not-a-string"),
        pytest.param(b'{"sdp": "v=0", "type": "answer"}', id="wrong-type"),
        pytest.param(b'{"sdp": "hello", "type": "offer"}', id="sdp-without-media"),
    ],
)
async def test_bad_request_is_400_with_a_json_error(
    server: str, http: aiohttp.ClientSession, body: bytes
) -> None:
    async with http.post(
        f"{server}/offer", data=body, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert isinstance(error, str) and error
    assert await health(http, server) == {"status": "ok", "sessions": 0}


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"sdp": lambda sdp: sdp.replace("a=rtpmap:", "a=rtpmap:x")}, id="unparsable-sdp"),
        pytest.param({"sdp": lambda sdp: sdp.replace("a=ice-ufrag", "a=ice-frag")}, id="sdp-without-ice"),
        pytest.param({"avatar": "nobody"}, id="unknown-avatar"),
        pytest.param({"avatar": "../default"}, id="avatar-path"),
        pytest.param({"avatar": 7}, id="avatar-not-a-string"),
        pytest.param({"input": "telepathy"}, id="unknown-input"),
        pytest.param({"echo": "yes"}, id="echo-not-a-bool"),
    ],
)
async def test_bad_offer_is_400_with_a_json_error(
    server: str, http: aiohttp.ClientSession, change: dict
) -> None:
    pc = await viewer()
    body: dict = {"sdp": pc.localDescription.sdp, "type": "offer"}
    await pc.close()
    for key, value in change.items():
        body[key] = value(body[key]) if callable(value) else value
    async with http.post(f"{server}/offer", json=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert isinstance(error, str) and error
    assert await health(http, server) == {"status": "ok", "sessions": 0}


async def test_delete_needs_the_session_token(server: str, http: aiohttp.ClientSession) -> None:
    pc = await viewer()
    try:
        answer = await post_offer(http, server, pc)
        session_url = f"{server}/sessions/{answer['session_id']}"
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": answer["token"]}):
            async with http.delete(session_url, headers=headers) as response:
                assert response.status == 401, headers
                assert (await response.json())["error"]
        async with http.delete(
            f"{server}/sessions/nosuchsession", headers={"Authorization": "Bearer x"}
        ) as response:
            assert response.status == 404
        assert (await health(http, server))["sessions"] == 1

        bearer = {"Authorization": f"Bearer {answer['token']}"}
        async with http.delete(session_url, headers=bearer) as response:
            assert response.status == 200
        assert (await health(http, server))["sessions"] == 0
        async with http.delete(session_url, headers=bearer) as response:
            assert response.status == 404
    finally:
        await pc.close()


async def test_session_ends_when_the_viewer_hangs_up(server: str, http: aiohttp.ClientSession) -> None:
    pc = await viewer()
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state() -> None:
        if pc.connectionState == "connected":
            connected.set()

    answer = await post_offer(http, server, pc)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    async with asyncio.timeout(RECEIVE_TIMEOUT_S):
        await connected.wait()
        await pc.close()
        while (await health(http, server))["sessions"]:  # noqa: ASYNC110 (polls the server over HTTP, as a client would)
            await asyncio.sleep(0.05)


async def test_sessions_beyond_the_maximum_get_503(http: aiohttp.ClientSession) -> None:
    async with live_server(ServerConfig(port=0, size=SIZE, max_sessions=2)) as url:
        pcs = [await viewer() for _ in range(3)]
        try:
            answers = [await post_offer(http, url, pc) for pc in pcs[:2]]
            body = {"sdp": pcs[2].localDescription.sdp, "type": "offer"}
            async with http.post(f"{url}/offer", json=body) as response:
                assert response.status == 503
                assert (await response.json())["error"]

            first = answers[0]
            headers = {"Authorization": f"Bearer {first['token']}"}
            async with http.delete(f"{url}/sessions/{first['session_id']}", headers=headers) as response:
                assert response.status == 200
            await post_offer(http, url, pcs[2])  # a freed place is taken again
        finally:
            await asyncio.gather(*(pc.close() for pc in pcs))


def test_server_config_rejects_impossible_values() -> None:
    for bad in (
        {"port": 70000},
        {"size": 255},
        {"size": 0},
        {"max_sessions": 0},
        {"workers": -1},
        {"margin_ms": -1},
    ):
        with pytest.raises(ValueError):
            ServerConfig(**bad)


async def test_the_sessions_work_runs_in_as_many_threads_as_asked() -> None:
    def thread_name() -> str:
        time.sleep(0.1)  # busy: the next task takes another thread, while there is one
        return threading.current_thread().name

    async with live_server(ServerConfig(port=0, size=SIZE, workers=2)):
        names = await asyncio.gather(*(asyncio.to_thread(thread_name) for _ in range(4)))
    assert len(set(names)) == 2 and all(name.startswith("session") for name in names)


class FailingAnimator:
    def push(self, features: np.ndarray) -> FaceParams:
        raise RuntimeError("this avatar's animator broke")

    def flush(self) -> FaceParams:
        return FaceParams.neutral(0)


async def test_a_failing_session_closes_alone(http):
    broken = SpeechModel(LoudnessExtractor(), lambda first, idle: FailingAnimator(), 0)
    config = ServerConfig(port=0, size=SIZE)
    async with live_server(
        config, gradient_factory(SIZE, {"default": loudness_speech(), "broken": broken})
    ) as url:
        good, bad = Viewer(), Viewer()
        try:
            await good.connect(http, url)
            await bad.connect(http, url, avatar="broken")
            await asyncio.gather(good.record(0.3), bad.record(0.3))
            for one in (good, bad):
                await (await one.speak(http, url, tone_with_pauses(0.1, 0.5))).close()
            async with asyncio.timeout(RECEIVE_TIMEOUT_S):
                while (await health(http, url))["sessions"] != 1:  # noqa: ASYNC110 (polls the server over HTTP, as a client would)
                    await asyncio.sleep(0.05)
            received = await good.record(1.0)
            async with http.get(f"{url}/metrics") as response:
                metrics = await response.text()
        finally:
            await asyncio.gather(good.pc.close(), bad.pc.close())
    assert max(jaw for _, _, jaw in received.video) > OPEN  # the other session spoke on
    assert "avatar_session_errors_total 1\n" in metrics


async def test_an_abandoned_offer_expires(http):
    async with live_server(ServerConfig(port=0, size=SIZE, connect_timeout_s=0.3)) as url:
        pc = await viewer()
        await post_offer(http, url, pc)  # and never completes the connection
        await pc.close()
        assert (await health(http, url))["sessions"] == 1
        async with asyncio.timeout(RECEIVE_TIMEOUT_S):
            while (await health(http, url))["sessions"]:  # noqa: ASYNC110 (polls the server over HTTP, as a client would)
                await asyncio.sleep(0.05)


async def test_metrics_are_prometheus_text(server, http):
    viewer_ = Viewer()
    try:
        await viewer_.connect(http, server)
        await viewer_.record(0.5)
        async with http.get(f"{server}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
    finally:
        await viewer_.pc.close()
    samples = {}
    lines = text.splitlines()
    for help_line, type_line, sample in zip(lines[::3], lines[1::3], lines[2::3], strict=False):
        name, value = sample.split(" ")
        assert help_line.startswith(f"# HELP {name} ") and type_line in (
            f"# TYPE {name} counter",
            f"# TYPE {name} gauge",
        )
        assert name.endswith("_total") == type_line.endswith("counter")
        samples[name] = float(value)
    assert samples["avatar_sessions"] == 1 and samples["avatar_sessions_opened_total"] == 1
    assert samples["avatar_frames_sent_total"] >= 5 and samples["avatar_audio_packets_sent_total"] >= 5
    assert samples["avatar_pipeline_latency_seconds"] > 0


async def test_avatars_lists_the_bundles_and_the_default(server, http):
    async with http.get(f"{server}/avatars") as response:
        body = await response.json()
    assert body["default"] == "default" and "default" in body["avatars"]


async def test_session_figures_need_the_token(server, http):
    pc = await viewer()
    try:
        answer = await post_offer(http, server, pc)
        url = f"{server}/sessions/{answer['session_id']}"
        async with http.get(url) as response:
            assert response.status == 401
        async with http.get(url, headers={"Authorization": f"Bearer {answer['token']}"}) as response:
            figures = await response.json()
        assert figures["session_id"] == answer["session_id"] and figures["speech"] and not figures["speaking"]
    finally:
        await pc.close()


async def test_microphone_input_needs_an_avatar_that_can_speak(http):
    config = ServerConfig(port=0, size=SIZE)
    async with live_server(config, gradient_factory(SIZE, {"default": None})) as url:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="recvonly")
        pc.addTrack(Microphone(tone_with_pauses(0.1, 0.1, rate=48_000)))
        await pc.setLocalDescription(await pc.createOffer())
        try:
            async with http.post(
                f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer", "input": "mic"}
            ) as response:
                assert response.status == 503
                assert "speech input is unavailable" in (await response.json())["error"]
            assert (await health(http, url))["sessions"] == 0
            await post_offer(http, url, pc)  # watching the idle avatar is fine
        finally:
            await pc.close()
