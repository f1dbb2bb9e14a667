"""The ways speech gets into a session: websocket PCM, server-side text-to-speech, the viewer's
microphone; and the interruption that stops it.

Websocket protocol (GET /ws/{session_id}?token=T), client to server:
  {"type": "start", "sample_rate": N}   first: a new utterance, PCM at N Hz (interrupts the avatar)
  binary                                PCM16 little-endian mono samples of the utterance
  {"type": "end"}                       the utterance is over (the avatar finishes saying it);
                                        binary data after it starts the next utterance
  {"type": "interrupt"}                 stop speaking now; binary data after it starts anew
Server to client: {"type": "ready", "sample_rate": N, "latency_ms": L} after each start. A
malformed message closes the websocket with a reason (1007 bad data, 1008 against the protocol,
1009 too big); the session goes on, idle, and takes a new websocket.
"""
from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from engine.types import SAMPLE_RATE
from streaming.access import CONFIG, SESSIONS, bearer_token, json_error, speaking_session
from streaming.pipeline import SpeechInput
from streaming.session import Session

log = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 8000, 192_000
# espeak-ng keeps global state: one synthesis at a time, in its own thread.
_TTS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts")


class ProtocolError(Exception):
    """A websocket message that breaks the protocol: closes the websocket with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


async def websocket_input(request: web.Request) -> web.WebSocketResponse:
    session = speaking_session(request, request.query.get("token", ""))
    if session.websocket is not None:
        raise json_error(web.HTTPConflict, "this session already has a websocket input")
    ws = web.WebSocketResponse(max_msg_size=request.app[CONFIG].max_message_bytes)
    session.websocket = ws  # before the await: a second websocket cannot slip in
    try:
        await ws.prepare(request)
    except BaseException:
        session.websocket = None
        raise
    feed = WebsocketFeed(session)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                reply = await feed.control(message.data)
                if reply:
                    await ws.send_json(reply)
            elif message.type == WSMsgType.BINARY:
                await feed.audio(message.data)
            # ERROR (too big, broken frame): aiohttp has closed the websocket with its code
    except ProtocolError as e:
        log.info("session %s: websocket closed: %s", session.id, e.reason)
        await ws.close(code=e.code, message=e.reason.encode()[:120])  # a close reason is at most 123 bytes
    finally:
        session.websocket = None
        await feed.end()
    return ws


class WebsocketFeed:
    """One websocket's utterances into a session's pipeline."""

    def __init__(self, session: Session) -> None:
        self.pipeline = session.pipeline
        self.session = session
        self.sample_rate: int | None = None
        self.speech: SpeechInput | None = None

    async def control(self, text: str) -> dict | None:
        try:
            message = json.loads(text)
        except ValueError:
            raise ProtocolError(WSCloseCode.INVALID_TEXT, "text messages must be JSON") from None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "start":
            rate = message.get("sample_rate")
            if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
                raise ProtocolError(WSCloseCode.POLICY_VIOLATION, f"'sample_rate' must be a whole number of Hz from {MIN_RATE} to {MAX_RATE}")
            self.sample_rate = rate
            self.speech = self.pipeline.open_input(rate)
            return {"type": "ready", "sample_rate": rate, "latency_ms": 1000 * self.pipeline.latency / SAMPLE_RATE}
        if kind == "end":
            await self.end()
        elif kind == "interrupt":
            self.session.interrupt()
            self.speech = None
        else:
            raise ProtocolError(WSCloseCode.POLICY_VIOLATION, f"unknown message type {json.dumps(kind)}: expected start, end or interrupt")
        return None

    async def audio(self, data: bytes) -> None:
        if self.sample_rate is None:
            raise ProtocolError(WSCloseCode.POLICY_VIOLATION, 'send {"type": "start", "sample_rate": N} before audio')
        if len(data) % 2:
            raise ProtocolError(WSCloseCode.INVALID_TEXT, "binary messages must hold whole 16-bit samples")
        if self.speech is None:
            self.speech = self.pipeline.open_input(self.sample_rate)
        await self.speech.push(np.frombuffer(data, "<i2"))  # superseded by another input: dropped

    async def end(self) -> None:
        if self.speech is not None:
            await self.speech.end()
            self.speech = None


async def say(request: web.Request) -> web.Response:
    """POST /sessions/{id}/say {"text"}: espeak-ng speaks it through the avatar, interrupting it."""
    from engine.audio.tts import TtsError as SpeakError, text_to_speech  # espeak loads on first use

    session = speaking_session(request, bearer_token(request))
    limit = request.app[CONFIG].max_text_chars
    try:
        body = await request.json()
    except ValueError:
        raise json_error(web.HTTPBadRequest, 'the body must be JSON like {"text": "Hello"}') from None
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise json_error(web.HTTPBadRequest, "'text' must be a non-empty string")
    if len(text) > limit:
        raise json_error(web.HTTPBadRequest, f"'text' is longer than {limit} characters")
    try:
        audio = await asyncio.get_running_loop().run_in_executor(_TTS, text_to_speech, text)
    except SpeakError as e:
        raise json_error(web.HTTPServiceUnavailable, str(e)) from None
    if request.app[SESSIONS].get(session.id) is not session:
        raise json_error(web.HTTPNotFound, "the session closed while its text was being synthesised")
    speech = session.pipeline.open_input(SAMPLE_RATE)
    await speech.push(audio)
    await speech.end()
    return web.json_response({"session_id": session.id, "status": "speaking", "duration_s": len(audio) / SAMPLE_RATE})


async def interrupt(request: web.Request) -> web.Response:
    session = speaking_session(request, bearer_token(request))
    session.interrupt()
    return web.json_response({"session_id": session.id, "status": "interrupted"})


async def consume_microphone(session: Session, track: MediaStreamTrack) -> None:
    """The viewer's microphone as the session's speech, heard back only with `echo`. While
    another input (a `say`) is speaking, the microphone waits for it to finish."""
    speech: SpeechInput | None = None
    try:
        while True:
            frame = await track.recv()
            if speech is None or speech.superseded:
                if speech is not None and session.speaking():
                    continue
                speech = session.pipeline.open_input(frame.sample_rate, audible=session.echo)
            await speech.push(samples(frame))
    except MediaStreamError:  # the viewer hung up
        pass


def samples(frame: AudioFrame) -> np.ndarray:
    """An audio frame's samples as [S, channels]."""
    array = frame.to_ndarray()
    channels = len(frame.layout.channels)
    return array.T if frame.format.is_planar else array.reshape(-1, channels)
