"""ParamsTimeline: idle where there is no speech, speech rows on their frames, smooth transitions,
and an interruption that is back to idle within 200 ms."""
from __future__ import annotations

import numpy as np
import pytest

from engine.avatar.bundle import MotionStats
from engine.pipeline.idle import IdleMotion
from engine.types import EXP_START, FPS, NUM_PARAMS, FaceParams
from streaming.timeline import FADE_FRAMES, ParamsTimeline

FIRST, COUNT = 40, 20


@pytest.fixture
def idle() -> IdleMotion:
    return IdleMotion(FaceParams.neutral(), MotionStats(), seed=1)


def speech(count: int = COUNT, seed: int = 0) -> FaceParams:
    rng = np.random.default_rng(seed)
    rows = rng.uniform(0.2, 0.8, (count, NUM_PARAMS)).astype(np.float32)
    return FaceParams(rows)


def test_without_speech_it_is_the_idle_motion(idle):
    timeline = ParamsTimeline(idle)
    frames = np.arange(100, 160)
    assert np.array_equal(timeline.params(frames).array, idle.params(frames).array)


def test_speech_rows_are_drawn_on_their_frames(idle):
    timeline = ParamsTimeline(idle)
    rows = speech()
    timeline.put(FIRST, rows)
    out = timeline.params(range(FIRST, FIRST + COUNT)).array
    # the mouth is the animator's from the first frame; the head reaches it after the fade
    assert np.array_equal(out[:, EXP_START:], rows.array[:, EXP_START:])
    assert np.array_equal(out[FADE_FRAMES:], rows.array[FADE_FRAMES:])
    assert timeline.speech_until() == FIRST + COUNT - 1


def test_the_head_ramps_into_speech(idle):
    timeline = ParamsTimeline(idle)
    rows = speech()
    timeline.put(FIRST, rows)
    frames = np.arange(FIRST - 1, FIRST + FADE_FRAMES + 1)
    head = timeline.params(frames).array[:, :EXP_START]
    idle_head = idle.params(frames).array[:, :EXP_START]
    assert np.array_equal(head[0], idle_head[0])
    target = rows.array[: FADE_FRAMES + 1, :EXP_START]
    share = (head - idle_head)[1:] / (target - idle_head[1:])  # how far from idle to speech, per column
    assert np.allclose(share, share[:, :1], atol=1e-4)  # every head column alike
    assert share[-1, 0] == 1 and np.all(np.diff(share[:, 0]) > 0)


def test_after_the_last_row_it_fades_back_to_idle(idle):
    timeline = ParamsTimeline(idle)
    rows = speech()
    timeline.put(FIRST, rows)
    last = FIRST + COUNT - 1
    frames = np.arange(last, last + FADE_FRAMES + 3)
    offset = timeline.params(frames).array - idle.params(frames).array
    size = np.abs(offset).sum(1)
    assert np.all(np.diff(size[: FADE_FRAMES + 2]) < 0)  # shrinks every frame ...
    assert np.all(size[FADE_FRAMES + 1 :] == 0)  # ... to exactly idle


def test_an_interruption_is_idle_within_200_ms(idle):
    timeline = ParamsTimeline(idle)
    timeline.put(FIRST, speech())
    timeline.params([FIRST + 5])  # the renderer has drawn up to here
    timeline.interrupt(timeline.last_read + 1)
    assert timeline.speech_until() == FIRST + 5
    back = FIRST + 6 + FADE_FRAMES
    assert (back - (FIRST + 5)) / FPS <= 0.2
    frames = np.arange(back, FIRST + COUNT + 5)
    assert np.array_equal(timeline.params(frames).array, idle.params(frames).array)


def test_a_frame_is_final_once_its_expected_row_is_in(idle):
    timeline = ParamsTimeline(idle)
    assert timeline.final(FIRST)  # no speech expected: idle is final
    timeline.expect(range(FIRST, FIRST + 10))
    timeline.expect(range(FIRST + 10, FIRST + COUNT))  # an utterance's audio, chunk by chunk
    assert timeline.final(FIRST - 1) and timeline.final(FIRST + COUNT)  # idle around it
    assert not timeline.final(FIRST) and not timeline.final(FIRST + COUNT - 1)
    timeline.put(FIRST, speech(5))
    assert timeline.final(FIRST + 4) and not timeline.final(FIRST + 5)
    timeline.interrupt(FIRST + 5)  # what was expected from there will not come
    assert all(timeline.final(i) for i in range(FIRST, FIRST + COUNT + 1))
    timeline.expect(range(FIRST + 30, FIRST + 35))  # the next utterance
    assert timeline.final(FIRST + 29) and not timeline.final(FIRST + 30)


def test_rows_that_come_after_their_frame_was_drawn_are_counted_late(idle):
    timeline = ParamsTimeline(idle)
    timeline.params([FIRST + 2])
    timeline.put(FIRST, speech(5))
    assert timeline.late_frames == 3  # FIRST .. FIRST + 2


def test_old_rows_are_forgotten(idle):
    timeline = ParamsTimeline(idle)
    timeline.put(FIRST, speech())
    timeline.params([FIRST + COUNT + 2 * FADE_FRAMES])
    assert timeline.speech_until() == -1


def test_fade_must_be_a_positive_number_of_frames(idle):
    with pytest.raises(ValueError):
        ParamsTimeline(idle, fade_frames=0)


def test_rows_nobody_drew_are_forgotten_once_past(idle):
    timeline = ParamsTimeline(idle)
    timeline.put(FIRST, speech())
    timeline.forget_before(FIRST + COUNT + FADE_FRAMES)
    assert timeline.speech_until() == -1
