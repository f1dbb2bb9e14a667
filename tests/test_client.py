"""streaming.client against the real server on loopback (gradient avatars that speak by loudness,
tests/live_server.py): a session opened and received over WebRTC, speech streamed from a WAV and
from an async iterator, interrupted over the websocket and over REST, and the server's refusals
surfacing as ServerError."""
from __future__ import annotations

import asyncio
import importlib.util
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest
from live_server import read_jaw
from viewers import OPEN, tone_with_pauses

from streaming.client import AvatarClient, ServerError, SpeechSocket, pcm16, read_wav

pytestmark = pytest.mark.usefixtures("loopback_ice")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
WAIT_S = 10  # the most a test waits for what it expects to see


def write_wav(path: Path, pcm: np.ndarray, rate: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.repeat(pcm, channels).astype("<i2").tobytes())
    return path


async def mouth_until(client: AvatarClient, opened: bool) -> float:
    """Reads received frames until the mouth is open (or closed); returns when, monotonic."""
    async with asyncio.timeout(WAIT_S):
        async for frame in client.video():
            if (read_jaw(frame.to_ndarray(format="rgb24")) > OPEN) == opened:
                return time.monotonic()
    raise AssertionError("the video ended")


async def test_a_wav_makes_the_avatar_speak_and_interrupt_stops_it(server: str, tmp_path: Path) -> None:
    tone = tone_with_pauses(0.2, 4.0, rate=48_000)
    wav = write_wav(tmp_path / "speech.wav", tone, 48_000, channels=2)
    async with await AvatarClient.connect(server) as client:
        assert client.can_speak and client.latency_ms > 0
        await mouth_until(client, opened=False)  # connected, idle
        speech = await client.open_speech()
        ready = await speech.send_wav(wav)
        assert ready == {"type": "ready", "sample_rate": 48_000, "latency_ms": client.latency_ms}
        await mouth_until(client, opened=True)
        assert (await client.status())["speaking"]
        await speech.interrupt()
        interrupted = time.monotonic()
        closed = await mouth_until(client, opened=False)
        # well before the 4 s tone would have ended
        assert closed - interrupted < 1.0
        status = await client.status()
        assert not status["speaking"] and status["audio_queue_ms"] == 0
        assert status["interrupts"] >= 2  # the utterance's start, then ours


async def test_an_async_iterator_of_pcm_blocks_is_one_utterance(server: str) -> None:
    rate = 16_000

    async def tts() -> AsyncIterator[np.ndarray]:
        """Float blocks of 100 ms, at about real time, as a TTS stream gives them."""
        pcm = tone_with_pauses(0.1, 1.0, rate) / 32768
        for start in range(0, len(pcm), rate // 10):
            yield pcm[start : start + rate // 10].astype(np.float32)
            await asyncio.sleep(0.05)

    async with await AvatarClient.connect(server) as client:
        speech = await client.open_speech()
        ready = await speech.stream(tts(), rate)
        assert ready["sample_rate"] == rate
        await mouth_until(client, opened=True)
        await client.interrupt()
        await mouth_until(client, opened=False)
        assert not (await client.status())["speaking"]


async def test_say_speaks_text_with_the_servers_voice(server: str) -> None:
    async with await AvatarClient.connect(server) as client:
        reply = await client.say("Hello there, how are you today?")
        assert reply["status"] == "speaking" and reply["duration_s"] > 0.5
        await mouth_until(client, opened=True)


async def test_the_server_refusals_are_server_errors(server: str, http: aiohttp.ClientSession) -> None:
    with pytest.raises(ServerError) as refused:
        await AvatarClient.connect(server, avatar="nobody")
    assert refused.value.status == 400 and "unknown avatar" in refused.value.message
    async with await AvatarClient.connect(server, http=http) as client:
        with pytest.raises(ServerError) as refused:
            await SpeechSocket.open(client.ws_url.replace(client.token, "wrong"))
        assert refused.value.status == 401
        with pytest.raises(ServerError) as refused:
            await client.say("")
        assert refused.value.status == 400 and "'text'" in refused.value.message
        speech = await client.open_speech()
        with pytest.raises(ServerError) as refused:
            await speech.start(100)  # below the protocol's sample rates: the server closes the socket
        assert refused.value.status == 1008 and "sample_rate" in refused.value.message
    with pytest.raises(ServerError) as refused:
        await client.status()  # closed: the session is gone
    assert refused.value.status == 404


def test_wav_and_pcm_conversions(tmp_path: Path) -> None:
    stereo = write_wav(tmp_path / "s.wav", np.array([1000, -2000, 3000], np.int16), 22_050, channels=2)
    pcm, rate = read_wav(stereo)
    assert rate == 22_050 and pcm.dtype == np.dtype("<i2") and pcm.tolist() == [1000, -2000, 3000]
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(bytes(10))
    with pytest.raises(ValueError, match="16-bit"):
        read_wav(tmp_path / "8bit.wav")
    assert pcm16(np.array([0.5, -2.0], np.float32)) == np.array([16383, -32767], "<i2").tobytes()
    with pytest.raises(ValueError, match="mono"):
        pcm16(np.zeros((4, 2), np.int16))
    with pytest.raises(ValueError, match="whole"):
        pcm16(b"\x00\x01\x02")


async def test_the_client_example_records_what_the_avatar_says(server: str, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("client_example", EXAMPLES / "client.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    wav = write_wav(tmp_path / "speech.wav", tone_with_pauses(0.2, 1.0), 16_000)
    out = tmp_path / "said.mp4"
    frames = await example.record(server, str(wav), None, str(out), seconds=2.0)
    assert frames == 60
    with av.open(str(out)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(decoded) == 60 and max(read_jaw(rgb) for rgb in decoded) > OPEN
