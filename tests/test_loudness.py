"""RunningLevel: loudness against the speaker's own running level, the same for any microphone gain."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from engine.audio.loudness import NO_REFERENCE_DB, SINK_DB_PER_S, RunningLevel
from engine.types import FPS


def _levels(seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return -30 + 8 * rng.standard_normal(n), rng.random(n) < 0.6


def test_a_gain_shifts_nothing():
    level, voiced = _levels()
    np.testing.assert_allclose(RunningLevel().push(level - 26, voiced), RunningLevel().push(level, voiced))


def test_no_reference_before_the_first_voiced_frame():
    out = RunningLevel().push(np.array([-20.0, -10.0, -30.0]), np.array([False, False, True]))
    assert out.tolist() == [NO_REFERENCE_DB, NO_REFERENCE_DB, 0.0]


def test_rises_quickly_sinks_slowly_and_pauses_leave_it():
    running = RunningLevel()
    running.push(np.full(30, -30.0), np.ones(30, bool))
    assert running.reference_db == -30
    louder = running.push(np.full(10, -20.0), np.ones(10, bool))
    assert louder[0] > 5 and 0 < louder[-1] < 0.5  # most of the way within a third of a second
    reference = running.reference_db
    pause = running.push(np.full(90, -80.0), np.zeros(90, bool))
    np.testing.assert_allclose(pause, -80 - reference)
    assert running.reference_db == reference
    quieter = running.push(np.full(FPS, -35.0), np.ones(FPS, bool))  # a second of a quieter voice
    assert np.isclose(running.reference_db, reference - SINK_DB_PER_S)
    assert quieter[-1] == -35 - running.reference_db


@given(st.lists(st.integers(1, 40), min_size=1, max_size=20), st.integers(0, 5))
def test_chunks_give_the_same_levels(sizes, seed):
    level, voiced = _levels(seed)
    running, out, pos = RunningLevel(), [], 0
    for size in sizes:
        out.append(running.push(level[pos : pos + size], voiced[pos : pos + size]))
        pos += size
    out.append(running.push(level[pos:], voiced[pos:]))
    np.testing.assert_array_equal(np.concatenate(out), RunningLevel().push(level, voiced))
