"""A tiny Chrome DevTools Protocol client for browser tests: evaluate script, take screenshots."""
from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from ws_commands import CommandChannel


class CdpError(RuntimeError):
    """The browser answered a command with an error, or the page threw."""


class CdpPage(CommandChannel):
    """One page target of a browser, driven over its DevTools websocket."""

    error_type = CdpError
    protocol = "DevTools"

    @staticmethod
    def error_message(reply: dict[str, Any]) -> str | None:
        return reply["error"].get("message") if "error" in reply else None

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

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises are awaited)."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CdpError(
                f"{expression}: {details.get('exception', {}).get('description') or details.get('text')}"
            )
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        result = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(result["data"]))  # noqa: ASYNC240 (a screenshot file written once by a test)
