import numpy as np
import pytest

from engine.audio import features
from engine.audio.builtin_features import DEFAULT_WEIGHTS, LOUDNESS_RANGE_DB, BuiltinExtractor
from engine.audio.features import FeatureError, num_frames
from engine.audio.phones import NUM_PHONES, PHONE_INDEX, SILENCE, VISEMES
from engine.audio.tts import Voice
from engine.train.speech.data import HELD_OUT_VARIANTS, espeak_speech, step_labels
from engine.train.speech.evaluate import summary, viseme_confusion
from engine.types import FPS, SAMPLE_RATE, AudioChunk, frame_pts


@pytest.fixture(scope="module")
def builtin():
    return features.extractor("builtin")


@pytest.fixture(scope="module")
def speech():
    """A sentence from an espeak-ng voice variant the model never trained on, with phone timings."""
    voice = Voice(f"en-us+{HELD_OUT_VARIANTS[0]}", rate=160, pitch=45)
    return espeak_speech("Bob may move the big map above a warm pool, Paul.", voice)


def test_registered_with_shape_and_declared_lookahead(builtin):
    assert isinstance(builtin, BuiltinExtractor) and builtin.kind == "builtin"
    assert builtin.dim == NUM_PHONES + 2 == 42
    assert (
        builtin.lookahead_frames == 3 and frame_pts(builtin.lookahead_frames) <= SAMPLE_RATE // 10
    )  # <= 100 ms
    assert DEFAULT_WEIGHTS.stat().st_size <= 5_000_000


def test_offline_rows_are_probabilities_and_cues(builtin, speech):
    audio = speech[0]
    rows = builtin.offline(audio)
    assert rows.shape == (num_frames(len(audio)), 42) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[:, :NUM_PHONES].sum(1), 1, atol=1e-4)
    assert rows.min() >= 0 and rows.max() <= 1
    assert rows[:, NUM_PHONES + 1].max() > 0.5  # loud speech


def test_streaming_equals_offline_with_any_chunks(builtin, speech):
    audio = speech[0]
    offline = builtin.offline(audio)
    stream = builtin.stream()
    start_pts = 3200  # a stream starting later on the session clock: frames on the session grid
    rows, pos = [], 0
    for size in [1, 319, 320, 7, 1600, 4000, 333] * 100:
        if pos >= len(audio):
            break
        rows += stream.push(AudioChunk(audio[pos : pos + size], start_pts + pos))
        pos += size
    rows += stream.flush()
    assert [r.pts for r in rows] == [start_pts + frame_pts(i) for i in range(len(offline))]
    np.testing.assert_allclose(np.stack([r.values for r in rows]), offline, atol=1e-4)


def test_each_frame_arrives_within_the_declared_lookahead(builtin, speech):
    audio = speech[0][: SAMPLE_RATE]
    chunk = 80
    stream, received = builtin.stream(), []
    for pos in range(0, len(audio), chunk):
        for frame in stream.push(AudioChunk(audio[pos : pos + chunk], pos)):
            received.append((frame.pts, pos + chunk))
    assert len(received) >= FPS - builtin.lookahead_frames - 1
    for i, (pts, delivered) in enumerate(received):
        assert pts == frame_pts(i)
        deadline = frame_pts(i + 1 + builtin.lookahead_frames)  # the sample frame_pts(...) - 1 is in
        assert delivered - chunk < deadline, f"frame {i} came with sample {delivered}, due by {deadline}"


def test_silence_gives_silence(builtin):
    rows = builtin.offline(np.zeros(SAMPLE_RATE, np.float32))
    assert rows[:, PHONE_INDEX[SILENCE]].mean() > 0.9
    assert rows[:, NUM_PHONES].max() < 0.3  # not voiced
    assert rows[:, NUM_PHONES + 1].max() == 0  # no loudness


def test_loudness_is_the_speakers_own_whatever_the_microphone_gain(builtin, speech):
    audio = speech[0]
    loudness = builtin.offline(audio)[:, NUM_PHONES + 1]
    quiet = builtin.offline(audio * 10 ** (-30 / 20))[:, NUM_PHONES + 1]  # a microphone 30 dB lower
    voiced = loudness > 0.5
    assert voiced.mean() > 0.3
    assert np.abs(quiet - loudness)[voiced].mean() < 0.03
    middle = slice(len(audio) // 2, len(audio) // 2 + SAMPLE_RATE // 2)
    softer = audio.copy()
    softer[middle] *= 10 ** (-12 / 20)  # half a second 12 dB softer than the rest of the voice
    frames = slice(num_frames(middle.start) + 4, num_frames(middle.stop) - 1)
    dropped = loudness[frames] - builtin.offline(softer)[frames, NUM_PHONES + 1]
    assert dropped[voiced[frames]].mean() > 6 / LOUDNESS_RANGE_DB


def test_lip_shapes_of_an_unseen_voice(builtin, speech):
    audio, phones, starts = speech
    rows = builtin.offline(audio)
    reference = step_labels(phones, starts, len(rows), 1 / FPS)
    scores = summary(viseme_confusion(reference, rows[:, :NUM_PHONES]), 0, 1)
    assert scores["viseme_accuracy"] > 0.6, scores
    assert scores["bilabial_recall"] > 0.5 and scores["bilabial_precision"] > 0.5, scores
    assert VISEMES[1] == "bilabial"


def test_bad_model_files_are_clear_errors(tmp_path):
    with pytest.raises(FeatureError, match="no such built-in feature model"):
        BuiltinExtractor(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(FeatureError, match="not a built-in phonetic model"):
        BuiltinExtractor(junk)
