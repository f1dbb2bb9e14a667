"""The live server end to end on loopback: a real aiortc viewer receives the avatar's video."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aioice.ice
import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import VIDEO_CLOCK_RATE
from av import VideoFrame
from PIL import Image
from live_server import live_server, read_index

from engine.types import FPS, SAMPLE_RATE, frame_pts
from streaming.app import ServerConfig, idle_avatar_factory

SIZE = 128
FRAMES = 30
RECEIVE_TIMEOUT_S = 10
ROUNDING_TICKS = 1


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's viewer gathers ICE candidates on loopback only, like the server."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        yield url


async def viewer() -> RTCPeerConnection:
    """A peer connection with its offer to receive video made (and candidates gathered)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def post_offer(http: aiohttp.ClientSession, url: str, pc: RTCPeerConnection) -> dict:
    async with http.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def health(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(f"{url}/health") as response:
        assert response.status == 200
        return await response.json()


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
    assert frames[0].pts == 0 and all(a.pts < b.pts for a, b in zip(frames, frames[1:]))
    # ... and step by the media clock time between the frames drawn in them, which only move forward.
    indices = [read_index(f.to_ndarray(format="rgb24")) for f in frames]
    for i, j, a, b in zip(indices, indices[1:], frames, frames[1:]):
        assert j > i, indices
        expected = frame_pts(j) * VIDEO_CLOCK_RATE // SAMPLE_RATE - frame_pts(i) * VIDEO_CLOCK_RATE // SAMPLE_RATE
        # aiortc's VP8 encoder carries the pts through microseconds, so a tick may round away
        assert abs((b.pts - a.pts) - expected) <= ROUNDING_TICKS, (i, j, b.pts - a.pts, expected)
    # 30 frames after the first one take one second at FPS; loose bounds for a loaded 2-core CI.
    elapsed = arrivals[FRAMES] - arrivals[0]
    assert 0.7 * FRAMES / FPS < elapsed < 2.5 * FRAMES / FPS, elapsed


async def test_viewer_sees_the_builtin_avatar_alive(http: aiohttp.ClientSession, avatar) -> None:
    """The real idle avatar (no injected source): it looks like the photo, and it moves."""
    config = ServerConfig(port=0, size=SIZE)
    async with live_server(config, idle_avatar_factory(config)) as url:
        pc = await viewer()
        tracks: asyncio.Queue = asyncio.Queue()
        pc.on("track", tracks.put_nowait)
        try:
            answer = await post_offer(http, url, pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
            async with asyncio.timeout(RECEIVE_TIMEOUT_S + 10):  # + loading the avatar
                track = await tracks.get()
                frames = [(await track.recv()).to_ndarray(format="rgb24").astype(np.float32) for _ in range(2 * FPS)]
        finally:
            await pc.close()
    photo = np.asarray(Image.fromarray(avatar.reference).resize((SIZE, SIZE), Image.Resampling.BILINEAR), np.float32)
    assert np.abs(frames[-1] - photo).mean() < 10  # grey levels: the avatar, through a lossy codec
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
async def test_bad_request_is_400_with_a_json_error(server: str, http: aiohttp.ClientSession, body: bytes) -> None:
    async with http.post(f"{server}/offer", data=body, headers={"Content-Type": "application/json"}) as response:
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
    ],
)
async def test_bad_offer_is_400_with_a_json_error(server: str, http: aiohttp.ClientSession, change: dict) -> None:
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
        async with http.delete(f"{server}/sessions/nosuchsession", headers={"Authorization": "Bearer x"}) as response:
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
        while (await health(http, server))["sessions"]:
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
    for bad in ({"port": 70000}, {"size": 255}, {"size": 0}, {"max_sessions": 0}):
        with pytest.raises(ValueError):
            ServerConfig(**bad)
