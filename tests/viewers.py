"""aiortc viewers of the live server for its tests: offers, a session's video and voice received
with their arrival times, a microphone playing PCM in real time."""
from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from av import AudioFrame, VideoFrame
from live_server import read_index, read_jaw

RECEIVE_TIMEOUT_S = 10
TONE_RATE = 16_000
LOUD = 0.05  # RMS of received audio that counts as sound
OPEN = 0.5  # jawOpen read from a received frame that counts as an open mouth


async def viewer() -> RTCPeerConnection:
    """A peer connection with its offer to receive video made (and candidates gathered)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc


async def post_offer(http: aiohttp.ClientSession, url: str, pc: RTCPeerConnection, **offer: object) -> dict:
    async with http.post(
        f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer", **offer}
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def health(http: aiohttp.ClientSession, url: str) -> dict:
    async with http.get(f"{url}/health") as response:
        assert response.status == 200
        return await response.json()


async def open_session(http: aiohttp.ClientSession, url: str, avatar: str = "default") -> dict:
    """A session whose viewer never connects (its speech chain runs from the offer on): the answer."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with http.post(
            f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer", "avatar": avatar}
        ) as response:
            assert response.status == 200, await response.text()
            return await response.json()
    finally:
        await pc.close()  # the server's side of the session lives on until its connect timeout


def tone_with_pauses(pause_s: float, tone_s: float, rate: int = TONE_RATE) -> np.ndarray:
    t = np.arange(int(tone_s * rate)) / rate
    pause = np.zeros(int(pause_s * rate))
    return (np.concatenate([pause, 0.3 * np.sin(2 * np.pi * 220 * t), pause]) * 32767).astype("<i2")


class Microphone(MediaStreamTrack):
    """A viewer's microphone playing `pcm` (int16 at 48 kHz) on a loop, in real time."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray) -> None:
        super().__init__()
        self.pcm, self.sent, self.start = pcm, 0, None

    async def recv(self) -> AudioFrame:
        self.start = self.start or time.monotonic()
        await asyncio.sleep(max(0.0, self.start + self.sent / 48_000 - time.monotonic()))
        block = np.take(self.pcm, np.arange(self.sent, self.sent + 960), mode="wrap")
        frame = AudioFrame.from_ndarray(block[None], format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48_000, self.sent, fractions.Fraction(1, 48_000)
        self.sent += 960
        return frame


@dataclass
class Received:
    video: list[tuple[float, int, float]] = field(default_factory=list)  # arrival, frame index, jawOpen
    audio: list[tuple[float, float]] = field(default_factory=list)  # arrival, RMS level

    def first_open(self) -> float:
        return next(t for t, _, jaw in self.video if jaw > OPEN)

    def first_sound(self) -> float:
        return next(t for t, level in self.audio if level > LOUD)


class Viewer:
    """An aiortc viewer of one session: video and audio in, optionally a microphone out."""

    def __init__(self, microphone: MediaStreamTrack | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("video", direction="recvonly")
        if microphone:
            self.pc.addTrack(microphone)
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        self.tracks: dict[str, asyncio.Future] = {
            kind: asyncio.get_running_loop().create_future() for kind in ("video", "audio")
        }
        self.pc.on("track", lambda track: self.tracks[track.kind].set_result(track))
        self.received = Received()
        self.session: dict = {}

    async def connect(self, http: aiohttp.ClientSession, url: str, **offer: object) -> dict:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        self.session = await post_offer(http, url, self.pc, **offer)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.session["sdp"], type="answer"))
        return self.session

    async def record(self, seconds: float) -> Received:
        """Receives both tracks for `seconds` (from the call), noting arrival times."""
        video, audio = await asyncio.gather(self.tracks["video"], self.tracks["audio"])
        deadline = time.monotonic() + seconds

        async def frames(track, note) -> None:
            while time.monotonic() < deadline:
                note(await track.recv())

        def note_video(frame: VideoFrame) -> None:
            rgb = frame.to_ndarray(format="rgb24")
            self.received.video.append((time.monotonic(), read_index(rgb), read_jaw(rgb)))

        def note_audio(frame: AudioFrame) -> None:
            level = float(np.sqrt(np.mean(np.square(frame.to_ndarray() / 32768.0))))
            self.received.audio.append((time.monotonic(), level))

        async with asyncio.timeout(seconds + RECEIVE_TIMEOUT_S):
            await asyncio.gather(frames(video, note_video), frames(audio, note_audio))
        return self.received

    async def speak(
        self, http: aiohttp.ClientSession, url: str, pcm: np.ndarray
    ) -> aiohttp.ClientWebSocketResponse:
        """Sends `pcm` (int16 at TONE_RATE) over the session's websocket, in 20 ms messages."""
        ws = await http.ws_connect(f"{url}/ws/{self.session['session_id']}?token={self.session['token']}")
        await ws.send_json({"type": "start", "sample_rate": TONE_RATE})
        await ws.receive_json()
        for start in range(0, len(pcm), TONE_RATE // 50):
            await ws.send_bytes(pcm[start : start + TONE_RATE // 50].tobytes())
        return ws
