"""Churn: many clients connect, speak, interrupt and leave (some vanish without closing) while a
viewer watches: nothing leaks (tasks, threads, file descriptors, memory) and max_sessions holds
at every moment."""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
from collections import Counter

import aiohttp
import pytest
from live_server import live_app
from viewers import Viewer, open_session, tone_with_pauses

from streaming.access import SESSIONS
from streaming.app import ServerConfig

SIZE = 64
CYCLES = int(os.environ.get("CHURN_CYCLES", "200"))
CLIENTS = 3  # at once, beside the watching viewer
MAX_SESSIONS = 4
MAX_GROWTH_MIB = 150

pytestmark = [pytest.mark.usefixtures("loopback_ice"), pytest.mark.slow]


def rss_mib() -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def cycle(http: aiohttp.ClientSession, url: str, rng: random.Random) -> str:
    """One client: offer, websocket, some speech, an interrupt, then a goodbye or a vanishing."""
    try:
        session = await open_session(http, url)
    except AssertionError:  # 503 or 429: the server is full right now
        await asyncio.sleep(0.2)
        return "refused"
    ws = await http.ws_connect(f"{url}/ws/{session['session_id']}?token={session['token']}")
    await ws.send_json({"type": "start", "sample_rate": 16_000})
    await ws.receive_json(timeout=10)
    await ws.send_bytes(tone_with_pauses(0, rng.uniform(0.05, 0.5)).tobytes())
    await ws.send_json({"type": "interrupt"})
    if (
        rng.random() < 0.3
    ):  # vanishes: the socket drops, nothing is closed; the connect timeout frees the place
        ws._response.connection.transport.abort()  # type: ignore[union-attr]
        return "vanished"
    await ws.close()
    async with http.delete(
        f"{url}/sessions/{session['session_id']}", headers={"Authorization": f"Bearer {session['token']}"}
    ):
        pass
    return "closed"


async def test_churn_leaks_nothing_and_keeps_max_sessions(http: aiohttp.ClientSession) -> None:
    config = ServerConfig(
        port=0,
        size=SIZE,
        max_sessions=MAX_SESSIONS,
        max_sessions_per_client=MAX_SESSIONS,
        offers_per_minute=100_000,
        connect_timeout_s=1.0,
    )
    async with live_app(config) as (url, app):
        viewer = Viewer()
        await viewer.connect(http, url)
        await asyncio.wait_for(viewer.tracks["video"], 10)
        await viewer.record(0.5)
        tasks, threads, fds, memory = (
            len(asyncio.all_tasks()),
            threading.active_count(),
            open_fds(),
            rss_mib(),
        )
        most = 0
        done = asyncio.Event()

        async def watch_capacity() -> None:
            nonlocal most
            while not done.is_set():
                most = max(most, len(app[SESSIONS]))
                await asyncio.sleep(0.005)

        watching = asyncio.create_task(watch_capacity())
        rng = random.Random(14)
        outcomes: list[str] = []

        async def client() -> None:  # until CYCLES clients got a session (refusals: try again)
            while len(outcomes) - outcomes.count("refused") < CYCLES:
                outcomes.append(await cycle(http, url, rng))

        start = time.monotonic()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        await asyncio.sleep(config.connect_timeout_s + 1.5)  # the vanished clients' sessions time out
        done.set()
        await watching
        seconds = time.monotonic() - start
        figures = (await viewer.record(1.0)).video
        await viewer.pc.close()
        await asyncio.sleep(1.0)  # the watcher's own session closes
        print(
            f"churn: {CYCLES} cycles in {seconds:.0f} s {Counter(outcomes)}; "
            f"most sessions at once {most}; tasks {tasks}->{len(asyncio.all_tasks())}, threads {threads}->"
            f"{threading.active_count()}, fds {fds}->{open_fds()}, memory {memory:.0f}->{rss_mib():.0f} MiB"
        )
        assert most <= MAX_SESSIONS
        assert len(app[SESSIONS]) == 0
        assert len(asyncio.all_tasks()) <= tasks, asyncio.all_tasks()
        assert threading.active_count() <= threads + 2
        assert open_fds() <= fds + 5
        assert rss_mib() - memory < MAX_GROWTH_MIB
        assert figures  # the watcher was served to the end
        assert outcomes.count("vanished") > CYCLES // 10
