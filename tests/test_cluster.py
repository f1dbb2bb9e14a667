"""Cluster mode on a local Ray instance (streaming/cluster): two session-host replicas of 128x128
gradient avatars behind the signalling front, on loopback.

- the front answers the page, /health, /avatars and bad offers as the single-process server does;
- four aiortc viewers spread over both replicas and each receives video at >= 25 fps; killing
  one replica ends only its sessions, and a new offer lands on the survivor;
- the batcher deployment renders two concurrent calls as one batch of two, and a session host
  with the batcher on gets its frames from it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import ray
from json_schema import check
from live_server import gradient_factory
from ray import serve

from engine.avatar.bundle import MotionStats
from engine.types import FaceParams
from streaming.avatars import EngineOptions, LiveAvatar
from streaming.client import AvatarClient, ServerError
from streaming.cluster import launch
from streaming.cluster.batcher import BATCHER
from streaming.cluster.config import ClusterConfig
from streaming.config import ServerConfig

TESTS = Path(__file__).resolve().parent
SIZE = 128
VIEWERS = 4
WATCH_S = 8.0
MIN_FPS = 25


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The front's URL; Ray with 4 logical CPUs (one per session host), stopped after the module."""
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": f"{TESTS.parent}:{TESTS}"}},  # live_server's avatars
    )
    try:
        config = ServerConfig(port=0, size=SIZE, connect_timeout_s=20)
        hosts = ClusterConfig(replicas=2, sessions_per_replica=VIEWERS, drain_s=5)
        yield launch.deploy(config, hosts, gradient_factory(SIZE))
    finally:
        launch.shutdown()


async def get(http: aiohttp.ClientSession, url: str) -> dict:
    """The JSON reply of a GET; its schema (docs/protocol.schema.json) is checked for /health and
    /avatars."""
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    if url.rsplit("/", 1)[1] in ("health", "avatars"):
        check(body, url.rsplit("/", 1)[1])
    return body


async def test_front_keeps_the_servers_contract(cluster: str, http: aiohttp.ClientSession) -> None:
    assert (await get(http, f"{cluster}/health"))["status"] == "ok"
    assert (await get(http, f"{cluster}/avatars"))["default"] == "default"
    async with http.get(f"{cluster}/") as response:
        assert response.status == 200 and "text/html" in response.content_type
    bad = [
        ({"data": b"{", "headers": {"Content-Type": "application/json"}}, 400),
        ({"data": b"sdp", "headers": {"Content-Type": "text/plain"}}, 415),
        ({"json": {"sdp": "v=0", "type": "answer"}}, 400),
        ({"json": {"sdp": "v=0\r\nm=application 9 DTLS/SCTP 5000\r\n", "type": "offer"}}, 400),
        ({"json": {"sdp": "v=0\r\n", "type": "offer"}}, 400),  # no video section: a replica says so
    ]
    for request, status in bad:
        async with http.post(f"{cluster}/offer", **request) as response:
            assert response.status == status, await response.text()
            check(await response.json(), "error")
    for method in ("GET", "DELETE"):
        async with http.request(
            method, f"{cluster}/sessions/nope", headers={"Authorization": "Bearer x"}
        ) as r:
            assert r.status == 404 and "error" in await r.json()
    assert (await get(http, f"{cluster}/health"))["sessions"] == 0


async def test_session_requests_and_websocket_are_forwarded(
    cluster: str, http: aiohttp.ClientSession, loopback_ice: None
) -> None:
    async with await AvatarClient.connect(cluster, http=http) as client:
        assert (await client.status())["session_id"] == client.session_id
        await client.interrupt()
        speech = await client.open_speech()
        assert (await speech.start(16_000))["type"] == "ready"
        with pytest.raises(aiohttp.WSServerHandshakeError) as second:
            await http.ws_connect(client.ws_url)
        assert second.value.status == 409
        with pytest.raises(aiohttp.WSServerHandshakeError) as stranger:
            await http.ws_connect(client.ws_url.replace(client.token, "not-the-token"))
        assert stranger.value.status == 401
        async with http.get(f"{cluster}/metrics") as response:
            assert response.status == 200
            assert "avatar_sessions 1\n" in await response.text()
    assert await hosts_when(http, cluster, lambda hosts: not hosts) == {}


async def frame_rate(client: AvatarClient, seconds: float) -> float:
    """Frames received a second over `seconds`, after the first frame."""
    frames = client.video()
    await anext(frames)
    start, count = time.monotonic(), 0
    async for _ in frames:
        count += 1
        if time.monotonic() - start >= seconds:
            break
    return count / (time.monotonic() - start)


async def test_sessions_spread_and_survive_a_replica(
    cluster: str, http: aiohttp.ClientSession, loopback_ice: None
) -> None:
    clients = [await AvatarClient.connect(cluster, http=http) for _ in range(VIEWERS)]
    try:
        hosts = (await get(http, f"{cluster}/health"))["hosts"]
        assert len(hosts) == 2 and sum(hosts.values()) == VIEWERS, hosts
        rates = await asyncio.gather(*(frame_rate(client, WATCH_S) for client in clients))
        print(f"frames a second received by {VIEWERS} viewers over 2 replicas: {rates}")
        assert min(rates) >= MIN_FPS, rates

        statuses = [await client.status() for client in clients]
        assert all(status["connection"] == "connected" for status in statuses)
        victim = min(hosts, key=lambda host: hosts[host])  # fewer sessions: the other keeps more
        ray.kill(ray.get_actor(victim, namespace="serve"))
        after = await hosts_when(http, cluster, lambda hosts: victim not in hosts)
        assert victim not in after and sum(after.values()) == VIEWERS - hosts[victim], after
        survivors = [c for c in clients if (await status_or_none(c)) is not None]
        assert len(survivors) == VIEWERS - hosts[victim]
        assert min(await asyncio.gather(*(frame_rate(c, 2.0) for c in survivors))) >= MIN_FPS

        newcomer = await AvatarClient.connect(cluster, http=http)
        clients.append(newcomer)
        placed = (await get(http, f"{cluster}/health"))["hosts"]
        assert victim not in placed and sum(placed.values()) == len(survivors) + 1, placed
        assert await frame_rate(newcomer, 1.0) > 0
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    assert await hosts_when(http, cluster, lambda hosts: not hosts) == {}


async def hosts_when(
    http: aiohttp.ClientSession, url: str, done: Callable[[dict], bool], timeout_s: float = 30
) -> dict:
    """The front's sessions per replica once `done` says so, or after `timeout_s`."""
    for _ in range(int(timeout_s / 0.2)):
        hosts = (await get(http, f"{url}/health"))["hosts"]
        if done(hosts):
            break
        await asyncio.sleep(0.2)
    return hosts


async def status_or_none(client: AvatarClient) -> dict | None:
    """The session's status through the front, or None once the front has forgotten it."""
    async with client.http.get(
        f"{client.url}/sessions/{client.session_id}", headers={"Authorization": f"Bearer {client.token}"}
    ) as response:
        return await response.json() if response.status == 200 else None


class Recorder:
    """A renderer that paints each frame with its window's blink value."""

    past = 1

    def __init__(self, size: int = 8) -> None:
        self.size = size

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        return self.render_batch(window)[0]

    def render_batch(self, windows: FaceParams) -> np.ndarray:
        levels = (windows.blink[self.past :: self.past + 1] * 100).astype(np.uint8)
        return np.ascontiguousarray(
            np.broadcast_to(levels[:, None, None, None], (len(levels), self.size, self.size, 3))
        )


def recorder_avatar(name: str) -> LiveAvatar:
    return LiveAvatar(name, Recorder(), FaceParams.neutral(), MotionStats(), speech_error="no speech here")


def flat_avatar(name: str) -> LiveAvatar:
    return LiveAvatar(name, Recorder(64), FaceParams.neutral(), MotionStats(), speech_error="no speech here")


def window(blink: float) -> np.ndarray:
    params = FaceParams.neutral(2).array.copy()
    params[:, 6] = blink
    return params


async def test_batcher_renders_concurrent_calls_as_one_batch(cluster: str) -> None:
    app = BATCHER.options(max_ongoing_requests=8).bind(EngineOptions(), recorder_avatar, 8, 500.0)
    batcher = serve.run(app, name="batcher-test", route_prefix=None)
    try:
        assert await batcher.shape.remote("a") == (8, 1)
        frames = await asyncio.gather(
            batcher.render.remote("a", window(0.5)), batcher.render.remote("a", window(1))
        )
        assert await batcher.batches.remote() == {2: 1}
        assert [int(frame[0, 0, 0]) for frame in frames] == [50, 100]  # each caller its own frame
        for blink in (0.2, 0.3):  # calls apart: batches of one
            assert int((await batcher.render.remote("a", window(blink)))[0, 0, 0]) == round(blink * 100)
        assert await batcher.batches.remote() == {2: 1, 1: 2}
    finally:
        serve.delete("batcher-test")


async def test_session_hosts_render_through_the_batcher(
    cluster: str, http: aiohttp.ClientSession, loopback_ice: None
) -> None:
    """A second application with the batcher on: a viewer's frames are the batcher's."""
    config = ServerConfig(port=0, size=64, connect_timeout_s=20)
    app = launch.application(config, ClusterConfig(replicas=1, batcher=True), flat_avatar)
    front = await serve.run(app, name="batched", route_prefix=None).url.remote()
    try:
        async with await AvatarClient.connect(front, http=http) as client:
            rate = await frame_rate(client, 2.0)
        batches = await serve.get_deployment_handle("Batcher", app_name="batched").batches.remote()
        frames = sum(size * count for size, count in batches.items())
        assert rate > 0 and frames >= 2 * rate, batches  # every frame received came from the batcher
    finally:
        serve.delete("batched")


async def test_a_draining_front_lets_sessions_finish_and_takes_no_new_ones(
    cluster: str, http: aiohttp.ClientSession, loopback_ice: None
) -> None:
    """Last in the module: the front drains, as run_server.py's Ctrl-C makes it."""
    front = serve.get_app_handle(launch.APP_NAME)
    async with await AvatarClient.connect(cluster, http=http) as client:
        assert await front.drain.remote(0.5) == 1  # the live session is not cut short
        assert (await client.status())["session_id"] == client.session_id
        with pytest.raises(ServerError) as refused:
            await AvatarClient.connect(cluster, http=http)
        assert refused.value.status == 503
    assert await hosts_when(http, cluster, lambda hosts: not hosts) == {}
    assert await front.drain.remote(5.0) == 0
