"""docs/protocol.schema.json against the real server (tests/live_server.py): every reply the server
sends matches its schema, and a websocket message is accepted exactly when the schema says it is
valid (otherwise the websocket closes with the documented code)."""
from __future__ import annotations

import json

import aiohttp
import numpy as np
import pytest
from json_schema import check, definitions, errors
from viewers import open_session

pytestmark = pytest.mark.usefixtures("loopback_ice")

CLIENT_MESSAGES = ("ws_start", "ws_end", "ws_interrupt")


def ws_url(url: str, session: dict) -> str:
    return f"{url.replace('http://', 'ws://')}/ws/{session['session_id']}?token={session['token']}"


def auth(session: dict) -> dict:
    return {"Authorization": f"Bearer {session['token']}"}


async def reply(response: aiohttp.ClientResponse, name: str, status: int = 200) -> dict:
    assert response.status == status, await response.text()
    body = await response.json()
    check(body, name)
    return body


async def test_every_reply_of_the_server_matches_the_schema(server: str, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server}/health") as response:
        await reply(response, "health")
    async with http.get(f"{server}/avatars") as response:
        await reply(response, "avatars")
    session = await open_session(http, server)
    check(session, "offer_answer")
    base = f"{server}/sessions/{session['session_id']}"
    async with http.get(base, headers=auth(session)) as response:
        await reply(response, "session_status")
    async with http.ws_connect(ws_url(server, session)) as ws:
        start = {"type": "start", "sample_rate": 24_000}
        check(start, "ws_start")
        await ws.send_json(start)
        check(await ws.receive_json(), "ws_ready")
        await ws.send_bytes(np.zeros(480, "<i2").tobytes())
        await ws.send_json({"type": "end"})
    say = {"text": "Hello"}
    check(say, "say_request")
    async with http.post(f"{base}/say", json=say, headers=auth(session)) as response:
        await reply(response, "say_reply")
    async with http.post(f"{base}/interrupt", headers=auth(session)) as response:
        await reply(response, "interrupt_reply")
    async with http.delete(base, headers=auth(session)) as response:
        await reply(response, "delete_reply")


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/offer", "not json", 400),
    ("POST", "/offer", b"<sdp/>", 415),  # not sent as application/json
    ("POST", "/offer", {"sdp": "v=0", "type": "answer"}, 400),
    ("POST", "/offer", {"sdp": "v=0", "type": "offer", "avatar": "../etc"}, 400),
    ("POST", "/offer", {"sdp": "v=0", "type": "offer", "input": "radio"}, 400),
    ("POST", "/offer", {"sdp": "v=0", "type": "offer", "echo": "yes"}, 400),
    ("GET", "/sessions/0123", None, 401),
    ("DELETE", "/sessions/0123", None, 401),
])
async def test_refused_requests_get_an_error_object(
    server: str, http: aiohttp.ClientSession, method: str, path: str, body: object, status: int
) -> None:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    if isinstance(body, dict):
        assert errors(body, definitions()["offer_request"]), "a refused offer must break the schema"
    headers = {} if isinstance(body, bytes) else {"Content-Type": "application/json"}
    async with http.request(method, f"{server}{path}", data=data, headers=headers) as response:
        await reply(response, "error", status)


async def test_session_errors_get_an_error_object(server: str, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{server}/offer", json={"sdp": "not sdp", "type": "offer"}) as response:
        await reply(response, "error", 400)  # valid by the schema, but its SDP cannot be used
    session = await open_session(http, server)
    base = f"{server}/sessions/{session['session_id']}"
    async with http.get(f"{server}/sessions/{'0' * 32}", headers=auth(session)) as response:
        await reply(response, "error", 404)
    async with http.get(base, headers={"Authorization": "Bearer wrong"}) as response:
        await reply(response, "error", 401)
    async with http.post(f"{base}/say", json={"text": ""}, headers=auth(session)) as response:
        await reply(response, "error", 400)
    async with http.get(ws_url(server, session) + "x") as response:
        await reply(response, "error", 401)


@pytest.mark.parametrize("message", [
    {"type": "start", "sample_rate": 16_000},
    {"type": "start", "sample_rate": 8_000},
    {"type": "start", "sample_rate": 192_000},
    {"type": "start", "sample_rate": 7_999},
    {"type": "start", "sample_rate": 16_000.0},
    {"type": "start", "sample_rate": True},
    {"type": "start"},
    {"type": "end"},
    {"type": "interrupt"},
    {"type": "stop"},
    ["start"],
])
async def test_a_websocket_message_is_accepted_exactly_when_the_schema_says_so(
    server: str, http: aiohttp.ClientSession, message: object
) -> None:
    valid = any(not errors(message, definitions()[name]) for name in CLIENT_MESSAGES)
    session = await open_session(http, server)
    async with http.ws_connect(ws_url(server, session)) as ws:
        await ws.send_json(message)
        if valid and message["type"] != "start":  # no reply to these: a start after them gets one
            await ws.send_json({"type": "start", "sample_rate": 16_000})
        answer = await ws.receive(timeout=10)
        if valid:
            assert answer.type == aiohttp.WSMsgType.TEXT, answer
            check(json.loads(answer.data), "ws_ready")
        else:
            assert answer.type == aiohttp.WSMsgType.CLOSE and answer.data == 1008, answer


@pytest.mark.parametrize(("messages", "code"), [
    (["not json"], 1007),
    ([b"\x00\x00"], 1008),  # audio before start
    ([{"type": "start", "sample_rate": 16_000}, b"\x00\x00\x00"], 1007),  # half a sample
])
async def test_bad_websocket_data_closes_with_its_code(
    server: str, http: aiohttp.ClientSession, messages: list, code: int
) -> None:
    session = await open_session(http, server)
    async with http.ws_connect(ws_url(server, session), max_msg_size=0) as ws:
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            elif isinstance(message, str):
                await ws.send_str(message)
            else:
                await ws.send_json(message)
        while (answer := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            check(json.loads(answer.data), "ws_ready")
        assert answer.type == aiohttp.WSMsgType.CLOSE and answer.data == code, answer
