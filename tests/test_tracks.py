"""The session's tracks: AvatarVideoTrack (frames paced by the media clock, skipping ahead when
late) and SpeechAudioTrack (20 ms packets of the scheduled audio on the same clock)."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError

from engine.types import FPS, SAMPLE_RATE, AudioChunk, frame_pts
from streaming.clock import MediaClock
from streaming.metrics import TrackStats
from streaming.speech_audio import ScheduledAudio
from streaming.tracks import (
    AUDIO_PACKET,
    AUDIO_TIME_BASE,
    ENCODER_DELAY,
    RENDER_LEAD,
    AvatarVideoTrack,
    SpeechAudioTrack,
    frame_at,
)

SIZE = 32
FRAME_S = 1 / FPS
# asyncio.sleep may wake a little early or late; no more than this.
TIMER_SLACK_S = 0.01


class RecordingSource:
    """Black frames; remembers which indices were asked for and takes `render_s` to make one."""

    def __init__(self, render_s: float = 0.0) -> None:
        self.size = SIZE
        self.render_s = render_s
        self.indices: list[int] = []

    def final(self, index: int) -> bool:
        return True

    async def frame(self, index: int) -> np.ndarray:
        self.indices.append(index)
        await asyncio.sleep(self.render_s)
        return np.zeros((SIZE, SIZE, 3), np.uint8)


def test_frame_at_inverts_frame_pts() -> None:
    for index in range(3 * FPS):
        start = frame_pts(index)
        assert frame_at(start) == index
        assert frame_at(frame_pts(index + 1) - 1) == index


async def test_frames_go_out_on_the_clock_with_90khz_pts() -> None:
    source = RecordingSource()
    clock = MediaClock()
    track = AvatarVideoTrack(source, clock)
    for _ in range(FPS // 2):
        frame = await track.recv()
        index = source.indices[-1]
        assert clock.delay_until(frame_pts(index)) < TIMER_SLACK_S  # not early
        assert (frame.width, frame.height) == (SIZE, SIZE)
        assert frame.pts == frame_pts(index) * VIDEO_CLOCK_RATE // SAMPLE_RATE
        assert frame.time_base == VIDEO_TIME_BASE
    # forward only (consecutive unless a stalled test machine made the track skip ahead)
    assert source.indices[0] == 0 and (np.diff(source.indices) >= 1).all()


async def test_a_late_start_begins_at_the_live_frame() -> None:
    clock = MediaClock(start=time.monotonic() - 10)
    source = RecordingSource()
    await AvatarVideoTrack(source, clock).recv()
    assert abs(source.indices[0] - 10 * FPS) <= 1


async def test_a_slow_source_skips_frames_instead_of_bursting() -> None:
    render_s = 2.5 * FRAME_S
    source = RecordingSource(render_s)
    clock = MediaClock()
    track = AvatarVideoTrack(source, clock)
    for _ in range(8):
        frame = await track.recv()
        # never more than the render and one frame behind the clock
        lag_s = -clock.delay_until(frame.pts * SAMPLE_RATE // VIDEO_CLOCK_RATE)
        assert lag_s < render_s + FRAME_S + TIMER_SLACK_S
    steps = np.diff(source.indices)
    assert (steps >= 1).all() and (steps > 1).any(), source.indices
    assert track.stats.frames_dropped == source.indices[-1] - source.indices[0] + 1 - len(source.indices)
    assert track.stats.frames_sent == len(source.indices) and track.stats.render_seconds >= 8 * render_s


class SpeechSource(RecordingSource):
    """Frames whose faces become final `final_after_s` after the source is made; when each
    frame's drawing started is noted."""

    def __init__(self, final_after_s: float) -> None:
        super().__init__()
        self.final_at = time.monotonic() + final_after_s
        self.started: list[float] = []

    def final(self, index: int) -> bool:
        return time.monotonic() >= self.final_at

    async def frame(self, index: int) -> np.ndarray:
        self.started.append(time.monotonic())
        return await super().frame(index)


async def test_a_frame_is_drawn_once_its_face_is_final() -> None:
    clock = MediaClock(start=time.monotonic() + 0.05)
    source = SpeechSource(final_after_s=0.03)  # before frame 0's render deadline
    await AvatarVideoTrack(source, clock).recv()
    assert source.final_at <= source.started[0] < source.final_at + TIMER_SLACK_S


async def test_a_frame_whose_face_is_late_is_drawn_at_its_render_deadline() -> None:
    clock = MediaClock(start=time.monotonic() + 0.05)
    source = SpeechSource(final_after_s=10)
    await AvatarVideoTrack(source, clock).recv()
    deadline = clock.start - RENDER_LEAD / SAMPLE_RATE
    assert deadline <= source.started[0] < deadline + TIMER_SLACK_S


async def test_a_stopped_track_ends() -> None:
    track = AvatarVideoTrack(RecordingSource(), MediaClock())
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


class BrokenSource(RecordingSource):
    async def frame(self, index: int) -> np.ndarray:
        raise RuntimeError("renderer broke")


async def test_a_failing_source_ends_the_track_and_reports_the_error():
    errors = []
    track = AvatarVideoTrack(BrokenSource(), MediaClock(), on_error=errors.append)
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert track.readyState == "ended" and "renderer broke" in str(errors[0])


async def test_audio_packets_carry_the_scheduled_audio_at_their_pts():
    clock = MediaClock()
    audio = ScheduledAudio()
    signal = (np.arange(SAMPLE_RATE) % 100 / 100).astype(np.float32)  # 1 s of a known sawtooth
    audio.write(AudioChunk(signal, 2 * AUDIO_PACKET + 7))  # not on a packet boundary
    track = SpeechAudioTrack(audio, clock, TrackStats())
    received = []
    for _ in range(6):
        frame = await track.recv()
        assert clock.delay_until(frame.pts - ENCODER_DELAY) < TIMER_SLACK_S  # not early
        assert (frame.sample_rate, frame.samples, frame.format.name, frame.layout.name) == (
            SAMPLE_RATE,
            AUDIO_PACKET,
            "s16",
            "mono",
        )
        assert frame.time_base == AUDIO_TIME_BASE and frame.pts % AUDIO_PACKET == 0
        received.append((frame.pts, frame.to_ndarray()[0] / 32767))
    assert received[0][0] == AUDIO_PACKET and all(
        b[0] - a[0] == AUDIO_PACKET for a, b in zip(received, received[1:], strict=False)
    )
    pcm = np.concatenate([r[1] for r in received])
    expected = np.zeros_like(pcm)
    expected[AUDIO_PACKET + 7 :] = signal[: len(pcm) - AUDIO_PACKET - 7]  # from pts AUDIO_PACKET on
    assert np.abs(pcm - expected).max() < 1e-4  # 16-bit rounding
    assert track.stats.audio_packets_sent == 6


async def test_a_late_audio_track_starts_at_the_live_packet():
    clock = MediaClock(start=time.monotonic() - 10)
    frame = await SpeechAudioTrack(ScheduledAudio(), clock).recv()
    assert abs(frame.pts - 10 * SAMPLE_RATE) <= 2 * AUDIO_PACKET
    assert not frame.to_ndarray().any()  # nothing scheduled: silence
