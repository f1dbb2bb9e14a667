"""ScheduledAudio: chunks read back at their pts, silence elsewhere, late audio dropped."""
from __future__ import annotations

import numpy as np

from engine.types import AudioChunk
from streaming.speech_audio import ScheduledAudio


def ramp(start: int, count: int) -> np.ndarray:
    """Samples whose value says their position: sample k of the signal is k / 1e5."""
    return (np.arange(start, start + count) / 1e5).astype(np.float32)


def test_nothing_scheduled_reads_silence():
    audio = ScheduledAudio()
    assert np.array_equal(audio.read(1000, 320), np.zeros(320, np.float32))
    assert audio.ahead(0) == 0


def test_chunks_are_read_at_their_pts_across_boundaries():
    audio = ScheduledAudio()
    for k in range(5):
        audio.write(AudioChunk(ramp(1000 + 320 * k, 320), 1000 + 320 * k))
    assert audio.ahead(1000) == 1600 and audio.end_pts == 2600
    out = np.concatenate([audio.read(pts, 300) for pts in range(700, 3100, 300)])
    expected = np.zeros(2400, np.float32)
    expected[300:1900] = ramp(1000, 1600)
    assert np.array_equal(out, expected)


def test_a_gap_between_utterances_is_silence():
    audio = ScheduledAudio()
    audio.write(AudioChunk(np.ones(100, np.float32), 0))
    audio.write(AudioChunk(np.ones(100, np.float32), 300))
    out = audio.read(0, 400)
    assert out[:100].all() and not out[100:300].any() and out[300:].all()


def test_audio_after_its_time_is_dropped_and_counted():
    audio = ScheduledAudio()
    audio.read(0, 640)  # the clock has played up to 640
    audio.write(AudioChunk(ramp(600, 100), 600))
    assert audio.late_samples == 40
    assert np.array_equal(audio.read(640, 60), ramp(640, 60))


def test_overlapping_audio_keeps_what_was_scheduled_first():
    audio = ScheduledAudio()
    audio.write(AudioChunk(np.ones(200, np.float32), 0))
    audio.write(AudioChunk(np.full(200, 2, np.float32), 100))
    assert np.array_equal(audio.read(0, 300), np.r_[np.ones(200), np.full(100, 2)].astype(np.float32))


def test_clear_drops_everything_scheduled():
    audio = ScheduledAudio()
    audio.write(AudioChunk(np.ones(16000, np.float32), 0))
    audio.read(0, 320)
    audio.clear()
    assert audio.ahead(320) == 0 and not audio.read(320, 320).any()


def test_audio_nobody_read_is_forgotten_once_due():
    audio = ScheduledAudio()
    for k in range(3):
        audio.write(AudioChunk(np.ones(320, np.float32), 320 * k))
    audio.forget_before(700)  # the chunks that ended by then go; the one still playing stays whole
    out = audio.read(0, 960)
    assert not out[:640].any() and out[640:].all()
