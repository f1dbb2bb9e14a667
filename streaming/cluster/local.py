"""The single-process server (streaming.app) running on an event loop of its own, in a thread of
this process: what a session host serves its sessions with, and what the benchmark compares to."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import TypeVar

import aiohttp
import uvloop
from aiohttp import web

from streaming.access import SESSIONS
from streaming.app import CLOSED_STATES, create_app
from streaming.avatars import AvatarFactory
from streaming.config import ServerConfig

T = TypeVar("T")


class LocalServer:
    """Starts the server at once (raising what its startup raises, e.g. a bad avatar); `url` is
    where it listens. Coroutines for its loop go through `call` (from any thread, blocking) or
    `run` (from another event loop, awaited)."""

    def __init__(self, config: ServerConfig, factory: AvatarFactory | None = None) -> None:
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="local-server", daemon=True)
        self._thread.start()
        self.app = create_app(config, factory)
        self._runner = web.AppRunner(self.app)
        self._http: aiohttp.ClientSession | None = None  # made on the server's loop
        try:
            self.url = self.call(self._start(config))
        except BaseException:
            self.stop()
            raise

    async def _start(self, config: ServerConfig) -> str:
        await self._runner.setup()
        await web.TCPSite(self._runner, config.host, config.port).start()
        host, port = self._runner.addresses[0][:2]
        self._http = aiohttp.ClientSession()
        return f"http://{host}:{port}"

    def call(self, work: Coroutine[object, object, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    async def run(self, work: Coroutine[object, object, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self.loop))

    async def offer(self, body: object) -> tuple[int, dict]:
        """POST /offer as a viewer would make it: the server's status and JSON answer."""
        assert self._http is not None, "the server has started"
        async with self._http.post(f"{self.url}/offer", json=body) as response:
            return response.status, await response.json()

    async def session_closed(self, session_id: str) -> None:
        """Returns once the session is closed, however it closes (its viewer, DELETE, a timeout,
        an error): every way goes through closing its peer connection, whose state changes."""
        sessions = self.app[SESSIONS]
        session = sessions.get(session_id)
        if session is None:
            return
        changed = asyncio.Event()
        session.pc.on("connectionstatechange", changed.set)
        while sessions.get(session_id) is session and session.pc.connectionState not in CLOSED_STATES:
            await changed.wait()
            changed.clear()

    async def close_session(self, session_id: str) -> None:
        await self.app[SESSIONS].close(session_id)

    def stop(self) -> None:
        """Closes every session and the server, then ends its loop and thread."""
        if self.loop.is_running():
            self.call(self._stop())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()

    async def _stop(self) -> None:
        await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()
