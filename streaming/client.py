"""A Python client of the live server (docs/PROTOCOL.md): open a session over WebRTC, feed it speech
over its websocket, make it say text or stop, and receive its video and voice.

    async with await AvatarClient.connect("http://127.0.0.1:8080") as avatar:
        speech = await avatar.open_speech()
        await speech.send_wav("speech.wav")
        async for frame in avatar.video():   # av.VideoFrame, 30 fps, pts on the session clock
            ...

Only the speech websocket is needed to feed a session opened elsewhere (the page, another app):

    async with SpeechSocket.open("ws://127.0.0.1:8080/ws/SESSION?token=TOKEN") as speech:
        await speech.send_wav("speech.wav")
"""
from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from types import TracebackType

import aiohttp
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

MESSAGE_MS = 20  # PCM per websocket message


class ServerError(Exception):
    """The server refused a request: its HTTP status and the error line it gave."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


async def _reply(response: aiohttp.ClientResponse) -> dict:
    """The JSON body of a successful response; a ServerError with the server's line otherwise."""
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    if response.status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        raise ServerError(response.status, error or response.reason or "request failed")
    if not isinstance(body, dict):
        raise ServerError(response.status, "the server's reply is not a JSON object")
    return body


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV as mono int16 samples [S] (channels averaged) and its sample rate."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            bits = 8 * wav.getsampwidth()
            raise ValueError(f"{Path(path).name}: only 16-bit PCM WAV files can be sent, not {bits}-bit")
        rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").reshape(-1, channels)
    return (pcm.mean(axis=1).round().astype("<i2") if channels > 1 else pcm[:, 0]), rate


def pcm16(block: np.ndarray | bytes) -> bytes:
    """A block of mono PCM as the websocket's PCM16 little-endian bytes: int16 as is, floats in
    [-1, 1] scaled (and clipped)."""
    if isinstance(block, bytes):
        if len(block) % 2:
            raise ValueError("PCM16 bytes must hold whole 16-bit samples")
        return block
    block = np.asarray(block)
    if block.ndim != 1:
        raise ValueError(f"PCM blocks must be mono [S], got shape {block.shape}")
    if block.dtype.kind == "f":
        block = np.clip(block, -1, 1) * 32767
    return block.astype("<i2").tobytes()


class SpeechSocket:
    """A session's speech websocket (GET /ws/{session_id}?token=T): utterances of PCM, and
    interruptions. One per session at a time."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, http: aiohttp.ClientSession | None = None):
        self.ws = ws
        self._own_http = http  # the HTTP session opened for this socket alone, closed with it
        self.sample_rate: int | None = None

    @classmethod
    async def open(cls, url: str, http: aiohttp.ClientSession | None = None) -> SpeechSocket:
        """Connects to a ws:// URL (with its token); `http` is used when given, else one is made."""
        own = http is None
        http = http or aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url)
        except aiohttp.WSServerHandshakeError as e:
            if own:
                await http.close()
            raise ServerError(e.status, e.message) from None
        except BaseException:
            if own:
                await http.close()
            raise
        return cls(ws, http if own else None)

    async def start(self, sample_rate: int) -> dict:
        """A new utterance at `sample_rate` (it interrupts the avatar): the server's ready message."""
        await self.ws.send_json({"type": "start", "sample_rate": sample_rate})
        message = await self.ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            reason = message.extra or message.type.name
            raise ServerError(self.ws.close_code or 1006, f"the server closed the websocket: {reason}")
        ready = message.json()
        self.sample_rate = sample_rate
        return ready

    async def push(self, block: np.ndarray | bytes) -> None:
        """Mono PCM of the current utterance (see pcm16): sent in messages of MESSAGE_MS."""
        if self.sample_rate is None:
            raise RuntimeError("start() an utterance before pushing its audio")
        data = pcm16(block)
        step = 2 * self.sample_rate * MESSAGE_MS // 1000
        for i in range(0, len(data), step):
            await self.ws.send_bytes(data[i : i + step])

    async def end(self) -> None:
        """The utterance is over: the avatar finishes saying it."""
        await self.ws.send_json({"type": "end"})

    async def interrupt(self) -> None:
        """Stop speaking now: what was sent and not yet played is dropped."""
        await self.ws.send_json({"type": "interrupt"})

    async def stream(self, blocks: AsyncIterable[np.ndarray | bytes], sample_rate: int) -> dict:
        """One utterance from an async iterator of PCM blocks (at its own pace, e.g. a TTS
        stream's): start, push each block, end. Returns the ready message."""
        ready = await self.start(sample_rate)
        async for block in blocks:
            await self.push(block)
        await self.end()
        return ready

    async def send_wav(self, path: str | Path) -> dict:
        """One utterance from a 16-bit WAV file at its own rate (sent as fast as the server takes
        it; the server plays it in real time). Returns the ready message."""
        pcm, rate = read_wav(path)
        ready = await self.start(rate)
        await self.push(pcm)
        await self.end()
        return ready

    async def close(self) -> None:
        await self.ws.close()
        if self._own_http is not None:
            await self._own_http.close()

    async def __aenter__(self) -> SpeechSocket:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def send_wav(ws_url: str, path: str | Path) -> dict:
    """Speaks a WAV file into the session of a websocket URL; returns the ready message."""
    async with await SpeechSocket.open(ws_url) as speech:
        return await speech.send_wav(path)


class AvatarClient:
    """One session of the server: its WebRTC connection receiving the avatar's video and voice,
    its speech websocket, and its REST calls (say, interrupt, status, close)."""

    def __init__(
        self, url: str, http: aiohttp.ClientSession, pc: RTCPeerConnection, answer: dict, own_http: bool
    ) -> None:
        self.url, self.http, self.pc = url.rstrip("/"), http, pc
        self.session_id: str = answer["session_id"]
        self.token: str = answer["token"]
        self.latency_ms: float = answer["latency_ms"]
        self.can_speak: bool = answer["speech"]
        self.speech_socket: SpeechSocket | None = None
        self._own_http = own_http
        self._tracks: dict[str, asyncio.Future[MediaStreamTrack]] = {}

    @classmethod
    async def connect(
        cls,
        url: str,
        avatar: str | None = None,
        http: aiohttp.ClientSession | None = None,
        rtc: RTCConfiguration | None = None,
    ) -> AvatarClient:
        """Opens a session on the server at `url` (http://host:port): POST /offer, then the
        WebRTC connection. `rtc` defaults to no STUN servers (enough on one machine or a LAN)."""
        own = http is None
        http = http or aiohttp.ClientSession()
        pc = RTCPeerConnection(rtc or RTCConfiguration(iceServers=[]))
        loop = asyncio.get_running_loop()
        tracks: dict[str, asyncio.Future[MediaStreamTrack]] = {
            kind: loop.create_future() for kind in ("video", "audio")
        }

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if not tracks[track.kind].done():
                tracks[track.kind].set_result(track)

        try:
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            await pc.setLocalDescription(await pc.createOffer())
            offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
            if avatar is not None:
                offer["avatar"] = avatar
            async with http.post(f"{url.rstrip('/')}/offer", json=offer) as response:
                answer = await _reply(response)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        except BaseException:
            await pc.close()
            if own:
                await http.close()
            raise
        client = cls(url, http, pc, answer, own)
        client._tracks = tracks
        return client

    @property
    def ws_url(self) -> str:
        base = self.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/ws/{self.session_id}?token={self.token}"

    async def open_speech(self) -> SpeechSocket:
        """The session's speech websocket (opened on the first call)."""
        if self.speech_socket is None:
            self.speech_socket = await SpeechSocket.open(self.ws_url, self.http)
        return self.speech_socket

    async def _call(self, method: str, path: str, json: dict | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.token}"}
        url = f"{self.url}/sessions/{self.session_id}{path}"
        async with self.http.request(method, url, json=json, headers=headers) as response:
            return await _reply(response)

    async def say(self, text: str) -> dict:
        """The server's text-to-speech says `text` (interrupting the avatar)."""
        return await self._call("POST", "/say", {"text": text})

    async def interrupt(self) -> dict:
        """Stop speaking now (barge-in)."""
        return await self._call("POST", "/interrupt")

    async def status(self) -> dict:
        """The session's figures (latency, queues, frames sent...)."""
        return await self._call("GET", "")

    async def track(self, kind: str, timeout_s: float = 10.0) -> MediaStreamTrack:
        """The received "video" or "audio" track, once the connection has it."""
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(self._tracks[kind])

    async def video(self) -> AsyncIterator[VideoFrame]:
        """The avatar's video frames as they arrive, until the connection ends."""
        track = await self.track("video")
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, VideoFrame)
                yield frame
        except MediaStreamError:
            return

    async def audio(self) -> AsyncIterator[AudioFrame]:
        """The avatar's voice (20 ms frames) as it arrives, until the connection ends."""
        track = await self.track("audio")
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, AudioFrame)
                yield frame
        except MediaStreamError:
            return

    async def close(self) -> None:
        """Ends the session (DELETE) and closes its connections."""
        try:
            if self.speech_socket is not None:
                await self.speech_socket.close()
            await self._call("DELETE", "")
        except (ServerError, aiohttp.ClientError):
            pass  # the session had already ended (timed out, or the server went away)
        finally:
            await self.pc.close()
            if self._own_http:
                await self.http.close()

    async def __aenter__(self) -> AvatarClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
