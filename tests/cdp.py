"""A tiny Chrome DevTools Protocol client for browser tests: evaluate script, take screenshots."""
from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp


class CdpError(RuntimeError):
    """The browser answered a command with an error, or the page threw."""


class CdpPage:
    """One page target of a browser, driven over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    @classmethod
    @asynccontextmanager
    async def connect(cls, http: aiohttp.ClientSession, devtools_port: int) -> AsyncIterator[CdpPage]:
        """The browser's first page (the one it opened at launch)."""
        async with http.get(f"http://127.0.0.1:{devtools_port}/json/list") as response:
            targets = await response.json()
        page = next((t for t in targets if t["type"] == "page"), None)
        if page is None:
            raise CdpError(f"the browser has no page open: {targets}")
        # max_msg_size=0: screenshots are larger than aiohttp's default message limit
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            yield cls(ws)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Runs one command and returns its result; events that arrive meanwhile are ignored."""
        command_id = next(self._ids)
        await self._ws.send_json({"id": command_id, "method": method, "params": params})
        async for message in self._ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            reply = message.json()
            if reply.get("id") != command_id:
                continue
            if "error" in reply:
                raise CdpError(f"{method}: {reply['error'].get('message')}")
            return reply["result"]
        raise CdpError(f"{method}: the DevTools connection closed")

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises are awaited)."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(f"{expression}: {details.get('exception', {}).get('description') or details.get('text')}")
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        result = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(result["data"]))
