"""JSON commands over one websocket with replies matched by id: what the Chrome DevTools Protocol
(cdp.py) and WebDriver BiDi (bidi.py) have in common. Each protocol says what an error reply is."""
from __future__ import annotations

import itertools
from typing import Any

import aiohttp


class CommandChannel:
    """Sends `{"id", "method", "params"}` and waits for the reply with that id."""

    error_type: type[Exception] = RuntimeError
    protocol = "websocket"

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    @staticmethod
    def error_message(reply: dict[str, Any]) -> str | None:
        """The error a reply reports, or None for a result."""
        raise NotImplementedError

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
            error = self.error_message(reply)
            if error is not None:
                raise self.error_type(f"{method}: {error}")
            return reply["result"]
        raise self.error_type(f"{method}: the {self.protocol} connection closed")
