"""The live server against hostile clients inside sessions, one test per finding of the security
review (docs/SECURITY.md lists them with the limits that answer them): incoming media, worker-thread
jobs, closing, audio ahead, websocket floods, `say`, the page under load. A real server on
loopback, real aiortc and aiohttp clients doing what an attacker would. The boundary before a
session (SDP, access, clean 4xx, avatar names): test_server_boundary.py. Fuzzing: test_server_fuzz.py."""

from __future__ import annotations

import asyncio
import re
import threading
import time

import aiohttp
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError
from hostile_clients import RATE, SIZE, WAIT_S, bearer, closed_with, open_ws, post, tone
from live_server import GradientRenderer, gradient_avatar, gradient_factory, live_app, live_server
from viewers import Microphone, Viewer, open_session, tone_with_pauses

from engine.types import FaceParams
from streaming.access import SESSIONS
from streaming.app import ServerConfig
from streaming.probe import LoudnessExtractor, loudness_speech
from streaming.speech import SpeechModel

pytestmark = pytest.mark.usefixtures("loopback_ice")


# ---- 1. incoming media is answered or drained --------------------------------------------------


class Camera(VideoStreamTrack):
    """A viewer's camera: 30 fps of noise (costly to encode, decode and queue)."""

    async def recv(self):  # noqa: ANN201 (av.VideoFrame)
        from av import VideoFrame

        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(
            np.random.default_rng(pts).integers(0, 255, (240, 320, 3), np.uint8), format="rgb24"
        )
        frame.pts, frame.time_base = pts, time_base
        return frame


async def test_media_a_viewer_sends_is_not_received_unless_used(http: aiohttp.ClientSession) -> None:
    """Finding 1: a viewer sending video, and audio in websocket mode, gets answered sendonly,
    so the server never decodes (and queues) media nobody reads."""
    async with live_app(ServerConfig(port=0, size=SIZE)) as (url, app):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(Camera())
        pc.addTrack(Microphone(tone_with_pauses(0, 1, 48_000)))
        tracks: asyncio.Queue = asyncio.Queue()
        pc.on("track", tracks.put_nowait)
        try:
            await pc.setLocalDescription(await pc.createOffer())
            status, answer = await post(
                http, f"{url}/offer", {"sdp": pc.localDescription.sdp, "type": "offer"}
            )
            assert status == 200, answer
            directions = re.findall(r"a=(sendrecv|sendonly|recvonly|inactive)", answer["sdp"])
            assert directions == ["sendonly", "sendonly"], directions
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            async with asyncio.timeout(WAIT_S):
                video = await tracks.get()
                for _ in range(45):  # 1.5 s of the avatar while the camera and microphone send
                    await video.recv()
            (session,) = list(app[SESSIONS])
            queued = [r.track._queue.qsize() for r in session.pc.getReceivers() if r.track is not None]
            assert sum(queued) == 0, queued
        finally:
            await pc.close()


# ---- 4. one worker-thread job per stage ---------------------------------------------------------


class SlowStream:
    """A loudness feature stream whose every push holds a worker thread for `seconds`."""

    running = 0
    most = 0
    lock = threading.Lock()

    def __init__(self, stream, seconds: float) -> None:  # noqa: ANN001
        self.stream, self.seconds = stream, seconds

    def push(self, chunk):  # noqa: ANN001, ANN201
        with SlowStream.lock:
            SlowStream.running += 1
            SlowStream.most = max(SlowStream.most, SlowStream.running)
        time.sleep(self.seconds)
        with SlowStream.lock:
            SlowStream.running -= 1
        return self.stream.push(chunk)

    def flush(self):  # noqa: ANN201
        return self.stream.flush()


class SlowExtractor(LoudnessExtractor):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def stream(self) -> SlowStream:  # type: ignore[override]
        return SlowStream(super().stream(), self.seconds)


def slow_speech(seconds: float) -> SpeechModel:
    return SpeechModel(
        SlowExtractor(seconds), lambda first, idle: loudness_speech().new_animator(first, idle), 0, "slow"
    )


async def test_interrupt_loops_do_not_pile_up_worker_jobs(http: aiohttp.ClientSession) -> None:
    """Finding 4: start / audio / interrupt in a loop: an interrupted stage's thread job finishes
    before the stage starts another, so a session never has more than one in flight per stage."""
    SlowStream.running = SlowStream.most = 0
    config = ServerConfig(port=0, size=SIZE, workers=6)
    async with live_server(config, gradient_factory(SIZE, {"default": slow_speech(0.2)})) as url:
        session = await open_session(http, url)
        ws = await open_ws(http, url, session)
        for _ in range(15):
            await ws.send_bytes(tone(1))
            await asyncio.sleep(0.1)  # the feature stage is busy with it
            await ws.send_json({"type": "interrupt"})
            await ws.send_json({"type": "start", "sample_rate": RATE})
            assert (await ws.receive_json(timeout=WAIT_S))["type"] == "ready"
        await asyncio.sleep(0.5)
        await ws.close()
    assert SlowStream.most == 1, SlowStream.most


# ---- 5. closing is bounded and frees the media first --------------------------------------------


async def test_a_websocket_that_never_answers_cannot_keep_a_closed_session_alive(
    http: aiohttp.ClientSession,
) -> None:
    """Finding 5: DELETE with a websocket client that never reads: the peer connection closes at
    once (the viewer's track ends), the websocket close is bounded."""
    async with live_server(ServerConfig(port=0, size=SIZE, close_timeout_s=1.0)) as url:
        viewer = Viewer()
        try:
            session = await viewer.connect(http, url)
            await viewer.record(0.5)
            ws = await open_ws(http, url, session)  # and never read again
            start = time.monotonic()
            async with http.delete(
                f"{url}/sessions/{session['session_id']}", headers=bearer(session)
            ) as response:
                assert response.status == 200
            assert time.monotonic() - start < 3
            video = await viewer.tracks["video"]
            with pytest.raises(MediaStreamError):
                async with asyncio.timeout(3):
                    while True:
                        await video.recv()
            await ws.close()
        finally:
            await viewer.pc.close()


# ---- 6. control overtakes audio; audio buffered ahead is bounded --------------------------------


async def test_an_interrupt_overtakes_audio_sent_ahead(http: aiohttp.ClientSession) -> None:
    """Finding 6: 20 s of audio sent at once, then interrupt and start: the answer to the start
    comes at once, not after the audio queued before it."""
    async with live_server(
        ServerConfig(port=0, size=SIZE, max_buffered_audio_s=30, max_messages_per_s=1000)
    ) as url:
        session = await open_session(http, url)
        ws = await open_ws(http, url, session)
        pcm = tone(20)
        for start in range(0, len(pcm), 640):  # 20 ms messages
            await ws.send_bytes(pcm[start : start + 640])
        await ws.send_json({"type": "interrupt"})
        sent = time.monotonic()
        await ws.send_json({"type": "start", "sample_rate": RATE})
        assert (await ws.receive_json(timeout=WAIT_S))["type"] == "ready"
        assert time.monotonic() - sent < 2.0
        await ws.close()


async def test_audio_far_ahead_of_real_time_is_refused(http: aiohttp.ClientSession) -> None:
    """Finding 6: a client that sends minutes of audio at once gets a protocol close, not minutes
    of buffered memory."""
    async with live_server(ServerConfig(port=0, size=SIZE, max_buffered_audio_s=2.0)) as url:
        session = await open_session(http, url)
        ws = await open_ws(http, url, session)
        with pytest.raises((ConnectionResetError, aiohttp.ClientConnectionError)):
            for _ in range(120):  # 60 s in 0.5 s messages
                await ws.send_bytes(tone(0.5))
            raise ConnectionResetError  # the loop may finish before the close arrives
        code, reason = await closed_with(ws)
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION and "real time" in reason, (code, reason)


# ---- 7. websocket message rate and compression --------------------------------------------------


async def test_websocket_compression_is_off(http: aiohttp.ClientSession) -> None:
    """Finding 7: no permessage-deflate, so a small message on the wire cannot expand to 1 MiB."""
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        session = await open_session(http, url)
        ws = await open_ws(http, url, session, compress=15)
        assert ws.compress == 0
        await ws.close()


async def test_websocket_message_floods_are_closed(http: aiohttp.ClientSession) -> None:
    """Finding 7: tiny messages at a high rate close the websocket (1008)."""
    async with live_server(ServerConfig(port=0, size=SIZE, max_messages_per_s=50)) as url:
        session = await open_session(http, url)
        ws = await open_ws(http, url, session)
        try:
            for _ in range(2000):
                await ws.send_bytes(b"\0\0")
        except (ConnectionResetError, aiohttp.ClientConnectionError):
            pass
        code, _ = await closed_with(ws)
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION


async def test_control_message_floods_are_closed(http: aiohttp.ClientSession) -> None:
    """Findings 4 and 7: interrupts at a high rate close the websocket (1008)."""
    async with live_server(ServerConfig(port=0, size=SIZE, max_controls_per_s=5)) as url:
        session = await open_session(http, url)
        ws = await open_ws(http, url, session)
        try:
            for _ in range(200):
                await ws.send_json({"type": "interrupt"})
        except (ConnectionResetError, aiohttp.ClientConnectionError):
            pass
        code, _ = await closed_with(ws)
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION


# ---- 8. say -------------------------------------------------------------------------------------


async def test_say_refuses_text_it_cannot_encode(http: aiohttp.ClientSession) -> None:
    """Finding 8: a lone surrogate is a 400, not a 500."""
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        session = await open_session(http, url)
        body = '{"text": "hello \\ud800 there"}'
        async with http.post(
            f"{url}/sessions/{session['session_id']}/say",
            data=body,
            headers={**bearer(session), "Content-Type": "application/json"},
        ) as response:
            assert response.status == 400, await response.text()


async def test_one_say_at_a_time_per_session(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 8: a second say while the first is being synthesised is a 409."""
    from engine.audio import tts

    def slow_tts(text: str, voice: str = "en-us") -> np.ndarray:
        time.sleep(1.0)
        return np.zeros(16_000, np.float32)

    monkeypatch.setattr(tts, "text_to_speech", slow_tts)
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        session = await open_session(http, url)
        say = f"{url}/sessions/{session['session_id']}/say"
        first, second = await asyncio.gather(
            post(http, say, {"text": "one"}, headers=bearer(session)),
            post(http, say, {"text": "two"}, headers=bearer(session)),
        )
        assert sorted([first[0], second[0]]) == [200, 409], (first, second)


async def test_say_caps_the_length_of_its_speech(http: aiohttp.ClientSession) -> None:
    """Finding 8: speech longer than max_say_s is refused."""
    async with live_server(ServerConfig(port=0, size=SIZE, max_say_s=1.0)) as url:
        session = await open_session(http, url)
        status, body = await post(
            http,
            f"{url}/sessions/{session['session_id']}/say",
            {"text": "This sentence takes more than one second to say aloud."},
            headers=bearer(session),
        )
        assert status == 400 and "seconds" in body["error"], body


async def test_a_failing_text_to_speech_fails_only_its_request(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 8: text-to-speech raising is a 503 with a clear error; the server goes on."""
    from engine.audio import tts

    def broken(text: str, voice: str = "en-us") -> np.ndarray:
        raise RuntimeError("/opt/secret/espeak-data: segfault imminent")

    monkeypatch.setattr(tts, "text_to_speech", broken)
    async with live_server(ServerConfig(port=0, size=SIZE)) as url:
        session = await open_session(http, url)
        status, body = await post(
            http, f"{url}/sessions/{session['session_id']}/say", {"text": "hi"}, headers=bearer(session)
        )
        assert status == 503 and "/opt" not in body["error"], body
        async with http.get(f"{url}/health") as response:
            assert response.status == 200


# ---- 9. the page and name lookups do not wait for the sessions' threads -------------------------


class BlockedRenderer(GradientRenderer):
    """Holds its worker thread until released: every session thread is busy."""

    def __init__(self, size: int, release: threading.Event) -> None:
        super().__init__(size)
        self.release = release

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        self.release.wait(WAIT_S)
        return super().render(index, window)


async def test_the_page_is_served_while_every_session_thread_is_busy(http: aiohttp.ClientSession) -> None:
    """Finding 9: static files do not queue behind rendering."""
    release = threading.Event()

    def factory(name: str):  # noqa: ANN202
        avatar = gradient_avatar(name, SIZE)
        return type(avatar)(
            name, BlockedRenderer(SIZE, release), avatar.rest, avatar.motion, None, avatar.speech_error
        )

    async with live_server(ServerConfig(port=0, size=SIZE, workers=1), factory) as url:
        viewer = Viewer()
        try:
            await viewer.connect(http, url)
            await asyncio.wait_for(viewer.tracks["video"], WAIT_S)
            await asyncio.sleep(0.5)  # the first frame's render now holds the only worker
            async with asyncio.timeout(2):
                for path in ("/", "/static/app.js", "/static/style.css"):
                    async with http.get(url + path) as response:
                        assert response.status == 200
                        await response.read()
        finally:
            release.set()
            await viewer.pc.close()
