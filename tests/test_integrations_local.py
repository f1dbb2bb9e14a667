"""integrations.local: the avatar in process (a gradient avatar whose jaw opens with loudness,
tests/live_server.py): frames on the 30 fps grid, the mouth open with the audio it is made from,
and an interruption that brings it back to rest within 200 ms and silences the audio."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
from live_server import gradient_avatar, read_jaw
from viewers import OPEN

from engine.types import FPS, SAMPLE_RATE, frame_pts
from integrations.local import AudioPacket, LocalAvatar, VideoFrame
from streaming.probe import loudness_speech

RATE = 24_000  # the input's rate: not the engine's
REST = 0.1  # jawOpen read from a frame that counts as a closed mouth
LOUD = 0.05


def tone(seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


async def record(
    avatar: LocalAvatar, seconds: float, video: list[VideoFrame], audio: list[AudioPacket],
    opened: asyncio.Event | None = None,
) -> None:
    """Collects the avatar's output for `seconds` of its clock; sets `opened` at an open mouth."""
    end = avatar.clock.now_samples() + int(seconds * SAMPLE_RATE)

    async def frames() -> None:
        async for frame in avatar.video():
            video.append(frame)
            if opened and read_jaw(frame.rgb) > OPEN:
                opened.set()
            if frame.pts >= end:
                return

    async def packets() -> None:
        async for packet in avatar.audio():
            audio.append(packet)
            if packet.pts >= end:
                return

    async with asyncio.timeout(seconds + 10):
        await asyncio.gather(frames(), packets())


def level(packet: AudioPacket) -> float:
    return float(np.sqrt(np.mean(np.square(packet.pcm))))


@pytest.fixture
async def avatar():
    local = LocalAvatar(gradient_avatar("default", 64, loudness_speech()))
    yield local
    await local.close()


async def test_frames_at_30_fps_and_the_mouth_moves_with_its_audio(avatar: LocalAvatar) -> None:
    video: list[VideoFrame] = []
    audio: list[AudioPacket] = []
    recording = asyncio.create_task(record(avatar, 2.0, video, audio))
    speech = avatar.open_input(RATE)
    pause = np.zeros(RATE // 5, np.float32)
    await speech.push(np.concatenate([pause, tone(0.8), pause]))
    await speech.end()
    await recording
    assert avatar.error is None
    first = round(video[0].pts * FPS / SAMPLE_RATE)
    assert [f.pts for f in video] == [frame_pts(first + i) for i in range(len(video))]  # no frame dropped
    assert all(f.rgb.shape == (64, 64, 3) and f.rgb.dtype == np.uint8 for f in video)
    loud = [p.pts for p in audio if level(p) > LOUD]
    assert 0.7 * SAMPLE_RATE <= loud[-1] - loud[0] <= 0.9 * SAMPLE_RATE  # the tone, played once
    jaw = {f.pts: read_jaw(f.rgb) for f in video}
    opened = [pts for pts, value in jaw.items() if value > OPEN]
    # the mouth opens and closes with the sound played beside it, within a frame or two
    assert abs(opened[0] - loud[0]) <= frame_pts(2) and abs(opened[-1] - loud[-1]) <= frame_pts(2)
    assert all(value < REST for pts, value in jaw.items() if pts < loud[0] - frame_pts(2))
    assert all(value < REST for pts, value in jaw.items() if pts > loud[-1] + frame_pts(6))
    assert not avatar.speaking()


async def test_an_interruption_returns_to_rest_within_200_ms_and_drops_the_audio(avatar: LocalAvatar) -> None:
    video: list[VideoFrame] = []
    audio: list[AudioPacket] = []
    opened = asyncio.Event()
    recording = asyncio.create_task(record(avatar, 2.0, video, audio, opened))
    speech = avatar.open_input(RATE)
    await speech.push(tone(3.0))
    async with asyncio.timeout(10):
        await opened.wait()
    interrupted = avatar.clock.now_samples()
    avatar.interrupt()
    assert speech.superseded
    await recording
    after = [f for f in video if f.pts >= interrupted + SAMPLE_RATE // 5]
    assert after and all(read_jaw(f.rgb) < REST for f in after)
    # the packet being handed over may still sound; none after it
    assert all(level(p) == 0 for p in audio if p.pts >= interrupted + 2 * SAMPLE_RATE // 50)
    assert not avatar.speaking()
