"""What the hostile-client tests (test_server_hostile.py, test_server_boundary.py) send and read:
offers, posts, websockets and their closes, on a real server on loopback."""

from __future__ import annotations

import asyncio

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection
from viewers import tone_with_pauses

SIZE = 64
RATE = 16_000
WAIT_S = 10


def bearer(session: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['token']}"}


async def offer_sdp(audio: bool = True) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    await pc.close()
    return pc.localDescription.sdp


async def post(http: aiohttp.ClientSession, url: str, body: object, **kwargs: object) -> tuple[int, dict]:
    async with http.post(url, json=body, **kwargs) as response:
        return response.status, await response.json(content_type=None)


async def open_ws(
    http: aiohttp.ClientSession, url: str, session: dict, **kwargs: object
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(f"{url}/ws/{session['session_id']}?token={session['token']}", **kwargs)
    await ws.send_json({"type": "start", "sample_rate": RATE})
    assert (await ws.receive_json(timeout=WAIT_S))["type"] == "ready"
    return ws


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    """Reads until the server closes the websocket: its close code and reason."""
    reason = ""
    async with asyncio.timeout(WAIT_S):
        while (message := await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            pass
        reason = message.extra or ""
    return ws.close_code, reason


def tone(seconds: float) -> bytes:
    return tone_with_pauses(0, seconds, RATE).tobytes()
