"""The probe speech model: loudness per frame, streamed as offline, and a jaw that follows it."""
from __future__ import annotations

import numpy as np
import pytest

from engine.audio.features import num_frames
from engine.types import SAMPLE_RATE, AudioChunk, FaceParams, frame_pts
from streaming.probe import JAW, JAW_GAIN, JawAnimator, LoudnessExtractor, rms


def signal(seconds: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (
        0.2 * rng.standard_normal(int(seconds * SAMPLE_RATE)) * np.linspace(0, 1, int(seconds * SAMPLE_RATE))
    ).astype(np.float32)


def test_offline_is_the_rms_of_each_frame():
    audio = signal()
    rows = LoudnessExtractor().offline(audio)
    assert rows.shape == (num_frames(len(audio)), 1)
    for i in range(len(rows)):
        assert rows[i, 0] == pytest.approx(rms(audio[frame_pts(i) : frame_pts(i + 1)]), rel=1e-5)


@pytest.mark.parametrize("chunk", [160, 320, 533, 1600])
def test_streaming_equals_offline_in_any_chunks(chunk):
    audio = signal()
    extractor = LoudnessExtractor()
    stream = extractor.stream()
    frames = [
        f
        for start in range(0, len(audio), chunk)
        for f in stream.push(AudioChunk(audio[start : start + chunk], 3200 + start))
    ]
    frames += stream.flush()
    assert [f.pts for f in frames] == [3200 + frame_pts(i) for i in range(len(frames))]  # on the session grid
    assert np.allclose(np.stack([f.values for f in frames]), extractor.offline(audio), rtol=1e-5)


def test_the_jaw_opens_with_the_loudness_and_nothing_else_moves():
    rest = FaceParams.neutral()
    rest.array[0, :3] = [0.1, -0.2, 0.05]
    out = JawAnimator(rest).push(np.array([[0.0], [0.1], [1.0]], np.float32)).array
    assert np.allclose(out[:, JAW], [0, JAW_GAIN * 0.1, 1])
    others = np.delete(out, JAW, axis=1)
    assert np.array_equal(others, np.delete(np.repeat(rest.array, 3, 0), JAW, axis=1))
