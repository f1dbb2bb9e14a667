"""Speech inputs over HTTP against the real server: the websocket protocol and its errors, `say`
with espeak-ng, `interrupt`, and the bearer tokens that guard them. The sessions' peer connections
need not connect for this: their speech chains run from the offer on."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from live_server import gradient_factory, live_server
from viewers import open_session

from streaming.app import ServerConfig
from streaming.probe import loudness_speech

SIZE = 64
RATE = 24_000
WAIT_S = 10
MAX_MESSAGE = 64 * 1024


pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture
async def server() -> AsyncIterator[str]:
    config = ServerConfig(port=0, size=SIZE, max_message_bytes=MAX_MESSAGE, max_text_chars=200)
    factory = gradient_factory(SIZE, {"default": loudness_speech(), "mute": None})
    async with live_server(config, factory) as url:
        yield url


async def status(http: aiohttp.ClientSession, url: str, session: dict) -> dict:
    async with http.get(f"{url}/sessions/{session['session_id']}", headers=bearer(session)) as response:
        assert response.status == 200
        return await response.json()


def bearer(session: dict) -> dict:
    return {"Authorization": f"Bearer {session['token']}"}


def ws_url(url: str, session: dict, token: str | None = None) -> str:
    return f"{url}/ws/{session['session_id']}?token={token or session['token']}"


def tone(seconds: float, rate: int = RATE) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


async def until_status(http, url, session, condition, what: str) -> dict:
    try:
        async with asyncio.timeout(WAIT_S):
            while not condition(figures := await status(http, url, session)):  # noqa: ASYNC110 (polls the server over HTTP, as a client would)
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"no {what} after {WAIT_S} s")
    return figures


async def speak_over_websocket(http, url, session, seconds: float = 2.0) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(ws_url(url, session))
    await ws.send_json({"type": "start", "sample_rate": RATE})
    ready = await ws.receive_json(timeout=WAIT_S)
    assert ready["type"] == "ready" and ready["sample_rate"] == RATE and ready["latency_ms"] > 0
    audio = tone(seconds)
    for start in range(0, len(audio), 2 * RATE // 50):  # 20 ms messages
        await ws.send_bytes(audio[start : start + 2 * RATE // 50])
    return ws


async def test_websocket_audio_makes_the_avatar_speak_and_interrupt_stops_it(server, http):
    session = await open_session(http, server)
    assert not (await status(http, server, session))["speaking"]
    ws = await speak_over_websocket(http, server, session)
    figures = await until_status(
        http, server, session, lambda s: s["audio_queue_ms"] > 500, "audio scheduled"
    )
    assert figures["speaking"] and figures["latency_ms"] > 0

    await ws.send_json({"type": "interrupt"})
    figures = await until_status(
        http, server, session, lambda s: s["interrupts"] >= 2, "interruption"
    )  # start + interrupt
    assert figures["audio_queue_ms"] == 0
    await ws.send_bytes(tone(0.5))  # after an interruption, audio starts a new utterance
    await until_status(http, server, session, lambda s: s["audio_queue_ms"] > 0, "new utterance")
    await ws.send_json({"type": "end"})
    await until_status(http, server, session, lambda s: not s["speaking"], "the end of speech")
    await ws.close()


@pytest.mark.parametrize(
    "messages, code, reason",
    [
        pytest.param([b"\x00\x01"], 1008, "before audio", id="audio-before-start"),
        pytest.param(["hello"], 1007, "must be JSON", id="not-json"),
        pytest.param(['{"type": "shout"}'], 1008, "unknown message type", id="unknown-type"),
        pytest.param(['["start"]'], 1008, "unknown message type", id="not-an-object"),
        pytest.param(['{"type": "start", "sample_rate": 12.5}'], 1008, "sample_rate", id="rate-not-whole"),
        pytest.param(['{"type": "start", "sample_rate": 100}'], 1008, "sample_rate", id="rate-too-low"),
        pytest.param(
            ['{"type": "start", "sample_rate": 16000}', b"\x00\x01\x02"], 1007, "16-bit", id="odd-bytes"
        ),
        pytest.param(
            ['{"type": "start", "sample_rate": 16000}', bytes(MAX_MESSAGE + 2)], 1009, "", id="too-big"
        ),
    ],
)
async def test_a_malformed_message_closes_the_websocket_with_a_reason_and_the_session_goes_on(
    server, http, messages, code, reason
):
    session = await open_session(http, server)
    other = await open_session(http, server)
    ws = await http.ws_connect(ws_url(server, session))
    for message in messages:
        await (ws.send_bytes(message) if isinstance(message, bytes) else ws.send_str(message))
    while (closing := await ws.receive(timeout=WAIT_S)).type not in (
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
    ):
        assert closing.type == aiohttp.WSMsgType.TEXT  # the "ready" of a valid start
    assert ws.close_code == code and reason in (closing.extra or "")
    # the session takes a new websocket and speaks; the other session was never touched
    for target in (session, other):
        ws = await speak_over_websocket(http, server, target, seconds=0.3)
        await until_status(http, server, target, lambda s: s["audio_queue_ms"] > 0, "speech")
        await ws.close()


async def test_websocket_needs_the_session_token(server, http):
    session = await open_session(http, server)
    other = await open_session(http, server)
    for url, status_code in (
        (ws_url(server, session, token="wrong"), 401),
        (ws_url(server, session, token=other["token"]), 401),
        (f"{server}/ws/{session['session_id']}", 401),
        (f"{server}/ws/nosuchsession?token=x", 404),
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await http.ws_connect(url)
        assert error.value.status == status_code, url


async def test_one_websocket_at_a_time(server, http):
    session = await open_session(http, server)
    async with http.ws_connect(ws_url(server, session)):
        with pytest.raises(aiohttp.WSServerHandshakeError) as error:
            await http.ws_connect(ws_url(server, session))
        assert error.value.status == 409
    await asyncio.sleep(0.1)  # the first one has closed: a new one is welcome
    async with http.ws_connect(ws_url(server, session)):
        pass


async def test_say_speaks_text_and_a_new_say_interrupts_it(server, http):
    session = await open_session(http, server)
    async with http.post(
        f"{server}/sessions/{session['session_id']}/say",
        json={"text": "Hello, this is a long enough sentence to still be speaking."},
        headers=bearer(session),
    ) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    assert body["status"] == "speaking" and body["duration_s"] > 1
    figures = await until_status(http, server, session, lambda s: s["audio_queue_ms"] > 300, "speech")
    async with http.post(
        f"{server}/sessions/{session['session_id']}/say", json={"text": "Stop."}, headers=bearer(session)
    ) as response:
        assert response.status == 200
    after = await status(http, server, session)
    assert after["interrupts"] == figures["interrupts"] + 1
    assert after["audio_queue_ms"] < figures["audio_queue_ms"]  # "Stop." replaced the long sentence
    async with http.post(
        f"{server}/sessions/{session['session_id']}/interrupt", headers=bearer(session)
    ) as response:
        assert response.status == 200
    assert (await status(http, server, session))["audio_queue_ms"] == 0


@pytest.mark.parametrize(
    "body, headers, status_code",
    [
        pytest.param({"text": "hi"}, {}, 401, id="no-token"),
        pytest.param({"text": "hi"}, {"Authorization": "Bearer wrong"}, 401, id="wrong-token"),
        pytest.param({"text": ""}, None, 400, id="empty-text"),
        pytest.param({"text": 5}, None, 400, id="text-not-a-string"),
        pytest.param([1], None, 400, id="not-an-object"),
        pytest.param({"text": "a" * 201}, None, 400, id="too-long"),
    ],
)
async def test_bad_say_requests_are_clear_errors(server, http, body, headers, status_code):
    session = await open_session(http, server)
    async with http.post(
        f"{server}/sessions/{session['session_id']}/say",
        json=body,
        headers=bearer(session) if headers is None else headers,
    ) as response:
        assert response.status == status_code
        assert (await response.json())["error"]
    assert not (await status(http, server, session))["speaking"]


async def test_an_avatar_without_speech_models_says_why_and_still_serves(server, http):
    session = await open_session(http, server, avatar="mute")
    figures = await status(http, server, session)
    assert figures["speech"] is False and figures["latency_ms"] == 0
    async with http.post(
        f"{server}/sessions/{session['session_id']}/say", json={"text": "hi"}, headers=bearer(session)
    ) as response:
        assert response.status == 503
        assert "speech input is unavailable for avatar 'mute'" in (await response.json())["error"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await http.ws_connect(ws_url(server, session))
    assert error.value.status == 503


async def test_closing_the_session_closes_its_websocket(server, http):
    session = await open_session(http, server)
    ws = await speak_over_websocket(
        http, server, session, seconds=12.0
    )  # more than max_ahead: the input waits
    async with http.delete(f"{server}/sessions/{session['session_id']}", headers=bearer(session)) as response:
        assert response.status == 200
    message = await ws.receive(timeout=WAIT_S)
    assert message.type == aiohttp.WSMsgType.CLOSE and (message.data, message.extra) == (
        1001,
        "the session closed",
    )
    await ws.close()
