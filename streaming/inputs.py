"""The ways speech gets into a session: websocket PCM, server-side text-to-speech, the viewer's
microphone; and the interruption that stops it.

Websocket protocol (GET /ws/{session_id}?token=T), client to server:
  {"type": "start", "sample_rate": N}   first: a new utterance, PCM at N Hz (interrupts the avatar)
  binary                                PCM16 little-endian mono samples of the utterance
  {"type": "end"}                       the utterance is over (the avatar finishes saying it);
                                        binary data after it starts the next utterance
  {"type": "interrupt"}                 stop speaking now; binary data after it starts anew
Server to client: {"type": "ready", "sample_rate": N, "latency_ms": L} after each start. A
malformed message closes the websocket with a reason (1007 bad data, 1008 against the protocol
or a limit, 1009 too big); the session goes on, idle, and takes a new websocket.

Control messages overtake audio: the socket is read all the time and audio waits in a buffer of
at most `max_buffered_audio_s` seconds (beyond that: 1008), so a start or an interrupt acts at
once however much audio was sent ahead. Messages are limited to `max_messages_per_s`, controls
to the session's `max_controls_per_s`; compression is off.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque

import numpy as np
from aiohttp import WSCloseCode, WSMsgType, web
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from engine.types import SAMPLE_RATE
from streaming.access import (
    CONFIG,
    SESSIONS,
    TTS,
    bearer_token,
    controlled,
    json_error,
    read_json,
    speaking_session,
)
from streaming.config import ServerConfig
from streaming.limits import TokenBucket
from streaming.offer import quoted
from streaming.pipeline import Pipeline, SpeechInput
from streaming.session import BURST_S, Session

log = logging.getLogger(__name__)

MIN_RATE, MAX_RATE = 8000, 192_000
BLOCK_S = 0.1  # audio enters the speech chain in blocks of at most this (its inbox holds 64)


class ProtocolError(Exception):
    """A websocket message that breaks the protocol: closes the websocket with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


def input_websocket(config: ServerConfig) -> web.WebSocketResponse:
    """The response a session's websocket input is accepted with, in the server's limits."""
    return web.WebSocketResponse(
        max_msg_size=config.max_message_bytes,
        compress=False,
        heartbeat=config.ws_heartbeat_s,
        timeout=config.close_timeout_s,
    )


async def websocket_input(request: web.Request) -> web.WebSocketResponse:
    config = request.app[CONFIG]
    session = speaking_session(request, request.query.get("token", ""))
    if session.websocket is not None:
        raise json_error(web.HTTPConflict, "this session already has a websocket input")
    ws = input_websocket(config)
    session.websocket = ws  # before the await: a second websocket cannot slip in
    try:
        await ws.prepare(request)
    except BaseException:
        session.websocket = None
        raise
    feed = WebsocketFeed(session, config)
    feeding = asyncio.create_task(feed.run())
    messages = TokenBucket(config.max_messages_per_s, config.max_messages_per_s * BURST_S)
    try:
        async for message in ws:
            if not messages.take():
                raise ProtocolError(
                    WSCloseCode.POLICY_VIOLATION, f"more than {config.max_messages_per_s} messages a second"
                )
            if message.type == WSMsgType.TEXT:
                reply = feed.control(message.data)
                if reply:
                    await ws.send_json(reply)
            elif message.type == WSMsgType.BINARY:
                feed.audio(message.data)
            # ERROR (too big, broken frame): aiohttp has closed the websocket with its code
    except ProtocolError as e:
        log.info("session %s: websocket closed: %s", session.id, e.reason)
        await ws.close(code=e.code, message=e.reason.encode()[:120])  # a close reason is at most 123 bytes
    finally:
        session.websocket = None
        feed.end()
        session.run(feed.finish(feeding))  # what is buffered plays out, within the session's life
    return ws


class WebsocketFeed:
    """One websocket's utterances into a session's pipeline: controls act when they arrive, audio
    and ends queue in order in a bounded buffer that a task (`run`) feeds to the pipeline."""

    def __init__(self, session: Session, config: ServerConfig) -> None:
        assert session.pipeline is not None, "websockets feed sessions that can speak"
        self.pipeline: Pipeline = session.pipeline
        self.session = session
        self.max_buffered_s = config.max_buffered_audio_s
        self.sample_rate: int | None = None
        self.speech: SpeechInput | None = None  # the utterance the buffer's audio goes to
        self._buffer: deque[np.ndarray | None] = deque()  # PCM blocks; None: the utterance ends
        self._buffered = 0  # samples in the buffer
        self._queued = asyncio.Event()
        self._generation = 0  # counts the clears

    def control(self, text: str) -> dict | None:
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):
            raise ProtocolError(WSCloseCode.INVALID_TEXT, "text messages must be JSON") from None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind not in ("start", "end", "interrupt"):
            raise ProtocolError(
                WSCloseCode.POLICY_VIOLATION,
                f"unknown message type {quoted(kind)}: expected start, end or interrupt",
            )
        if not self.session.controls.take():
            raise ProtocolError(
                WSCloseCode.POLICY_VIOLATION, "too many start, end and interrupt messages: slow down"
            )
        if kind == "start":
            rate = message.get("sample_rate")
            if not isinstance(rate, int) or isinstance(rate, bool) or not MIN_RATE <= rate <= MAX_RATE:
                raise ProtocolError(
                    WSCloseCode.POLICY_VIOLATION,
                    f"'sample_rate' must be a whole number of Hz from {MIN_RATE} to {MAX_RATE}",
                )
            self._clear()
            self.sample_rate = rate
            self.speech = self.pipeline.open_input(rate)
            return {
                "type": "ready",
                "sample_rate": rate,
                "latency_ms": 1000 * self.pipeline.latency / SAMPLE_RATE,
            }
        if kind == "end":
            self.end()
        else:
            self._clear()
            self.session.interrupt()
            self.speech = None
        return None

    def audio(self, data: bytes) -> None:
        if self.sample_rate is None:
            raise ProtocolError(
                WSCloseCode.POLICY_VIOLATION, 'send {"type": "start", "sample_rate": N} before audio'
            )
        if len(data) % 2:
            raise ProtocolError(WSCloseCode.INVALID_TEXT, "binary messages must hold whole 16-bit samples")
        pcm = np.frombuffer(data, "<i2")
        if (self._buffered + len(pcm)) / self.sample_rate > self.max_buffered_s:
            raise ProtocolError(
                WSCloseCode.POLICY_VIOLATION,
                f"more than {self.max_buffered_s:g} s of audio ahead of the speech: send it in real time",
            )
        if len(pcm):
            self._put(pcm)

    def end(self) -> None:
        """The utterance is over, after the audio buffered before this."""
        if (self._buffer and self._buffer[-1] is not None) or self.speech is not None:
            self._put(None)

    async def run(self) -> None:
        """Feeds the buffer to the pipeline, in blocks of at most BLOCK_S, waiting while it is full.
        A block counts as buffered until the pipeline has taken it."""
        while True:
            await self._queued.wait()
            item = self._buffer.popleft()
            if not self._buffer:
                self._queued.clear()
            if item is None:
                speech, self.speech = self.speech, None
                if speech is not None:
                    await speech.end()
                continue
            assert self.sample_rate is not None, "audio is refused before a start"
            if self.speech is None or self.speech.superseded:
                self.speech = self.pipeline.open_input(
                    self.sample_rate
                )  # audio after an end or interrupt: a new utterance
            speech, generation, size = self.speech, self._generation, max(1, int(BLOCK_S * self.sample_rate))
            for start in range(0, len(item), size):
                await speech.push(item[start : start + size])  # superseded meanwhile: dropped
                if self._generation != generation:
                    break  # the buffer was cleared (start, interrupt) and counts from zero
                self._buffered -= len(item[start : start + size])

    async def finish(self, feeding: asyncio.Task[None]) -> None:
        """The websocket is gone: what it buffered is fed, then the feeding stops."""
        try:
            while (self._buffer or self._buffered) and not feeding.done():  # noqa: ASYNC110 (a bounded drain)
                await asyncio.sleep(BLOCK_S)
        finally:
            feeding.cancel()

    def _put(self, item: np.ndarray | None) -> None:
        self._buffer.append(item)
        self._buffered += 0 if item is None else len(item)
        self._queued.set()

    def _clear(self) -> None:
        self._buffer.clear()
        self._buffered = 0
        self._generation += 1
        self._queued.clear()


async def say(request: web.Request) -> web.Response:
    """POST /sessions/{id}/say {"text"}: espeak-ng speaks it through the avatar, interrupting it.
    One say per session at a time; text-to-speech runs in its own thread (app[TTS])."""
    from engine.audio import tts  # espeak-ng loads on first use

    config = request.app[CONFIG]
    session = speaking_session(request, bearer_token(request))
    body = await read_json(request, '{"text": "Hello"}')
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise json_error(web.HTTPBadRequest, "'text' must be a non-empty string")
    if len(text) > config.max_text_chars:
        raise json_error(web.HTTPBadRequest, f"'text' is longer than {config.max_text_chars} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise json_error(
            web.HTTPBadRequest, "'text' must be valid Unicode (it has a lone surrogate)"
        ) from None
    if session.saying:
        raise json_error(web.HTTPConflict, "this session is already preparing a say; wait for its answer")
    controlled(session)
    session.saying = True
    try:
        audio = await asyncio.get_running_loop().run_in_executor(request.app[TTS], tts.text_to_speech, text)
    except tts.TtsError as e:
        raise json_error(web.HTTPServiceUnavailable, str(e)) from None
    except Exception:  # a failing synthesiser fails this request only
        log.exception("session %s: text-to-speech failed", session.id)
        raise json_error(web.HTTPServiceUnavailable, "text-to-speech failed for this text") from None
    finally:
        session.saying = False
    seconds = len(audio) / SAMPLE_RATE
    if seconds > config.max_say_s:
        raise json_error(
            web.HTTPBadRequest,
            f"'text' makes {seconds:.0f} seconds of speech; at most {config.max_say_s:g} seconds are said",
        )
    if request.app[SESSIONS].get(session.id) is not session or session.pipeline is None:
        raise json_error(web.HTTPNotFound, "the session closed while its text was being synthesised")
    speech = session.pipeline.open_input(SAMPLE_RATE)
    await speech.push(audio)
    await speech.end()
    return web.json_response({"session_id": session.id, "status": "speaking", "duration_s": seconds})


async def interrupt(request: web.Request) -> web.Response:
    session = speaking_session(request, bearer_token(request))
    controlled(session)
    session.interrupt()
    return web.json_response({"session_id": session.id, "status": "interrupted"})


async def consume_microphone(session: Session, track: MediaStreamTrack) -> None:
    """The viewer's microphone as the session's speech, heard back only with `echo`. While
    another input (a `say`) is speaking, the microphone waits for it to finish."""
    assert session.pipeline is not None, "microphone input needs an avatar that can speak"
    speech: SpeechInput | None = None
    try:
        while True:
            frame = await track.recv()
            assert isinstance(frame, AudioFrame)
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
