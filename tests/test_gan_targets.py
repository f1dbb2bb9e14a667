"""Target curves: dominance-model visemes and bilabial closure gestures mapped onto the rig, lips that
really close at every p/b/m and part on the vowels between them."""
from __future__ import annotations

import numpy as np
import pytest

from engine.face.topology import LOWER_LIP_MID_INNER, UPPER_LIP_MID_INNER
from engine.train.gan import targets as gan_targets
from engine.train.gan.targets import TargetConfig, targets, viseme_channels
from engine.types import EXP_START, EXPRESSION_NAMES, FPS, SAMPLE_RATE, FaceParams


def _segments(phones: str, duration: float = 0.1, lead: float = 0.3) -> list[tuple[str, float, float]]:
    """'SIL M AA P ...' -> segments of `duration` each, with silence around."""
    out = [("SIL", 0.0, lead)]
    t = lead
    for p in phones.split():
        out.append((p, t, t + duration))
        t += duration
    return out + [("SIL", t, t + lead)]


def _at(curve: np.ndarray, seconds: float) -> float:
    return float(curve[int(round(seconds * FPS))])


def _exp(params: FaceParams, name: str) -> np.ndarray:
    return params.array[:, EXP_START + EXPRESSION_NAMES.index(name)]


def _speech(seconds: float) -> np.ndarray:
    """A voiced buzz: enough for the prosody measurements."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sign(np.sin(2 * np.pi * 120 * t)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )


@pytest.mark.parametrize("duration", [0.06, 0.08, 0.1, 0.15])
def test_bilabials_close_at_their_centre_and_the_vowels_between_open(duration):
    segs = _segments("AA M AA B IY P AE M UW B AA", duration=duration)
    ch = viseme_channels(segs, int(segs[-1][2] * FPS) + 1)
    for p, start, end in segs:
        if p in "PBM":
            assert _at(ch["closure"], (start + end) / 2) > 0.95
        elif p != "SIL":  # every vowel, even in fast speech: closures never merge
            assert _at(ch["closure"], (start + end) / 2) < 0.05


def test_a_closure_holds_60_to_120_ms():
    for duration, hold in ((0.02, 0.06), (0.09, 0.09), (0.3, 0.12)):
        segs = [
            ("SIL", 0.0, 1.0),
            ("AA", 1.0, 1.4),
            ("B", 1.4, 1.4 + duration),
            ("AA", 1.4 + duration, 1.8 + duration),
        ]
        t = np.arange(0, 2.5, 0.001)
        closed = gan_targets.closures(segs, t) > 0.999
        assert abs(closed.sum() * 0.001 - hold) < 0.003


def test_lips_meet_on_the_avatar_at_each_bilabial_and_part_on_the_vowels(avatar, face_model):
    segs = _segments("AA M AA B IY P AE M UW B OW P W", duration=0.12)  # rounded neighbours too
    audio = _speech(segs[-1][2])
    params = targets(segs, audio, TargetConfig(), rest=avatar.rest_params)
    v = face_model.vertices(params)
    gap = v[:, LOWER_LIP_MID_INNER, 1] - v[:, UPPER_LIP_MID_INNER, 1]
    rest = face_model.vertices(avatar.rest_params)[0]
    assert abs(rest[LOWER_LIP_MID_INNER, 1] - rest[UPPER_LIP_MID_INNER, 1]) < 0.05  # lips together at rest
    p90 = np.percentile(gap[int(segs[1][1] * FPS) : int(segs[-1][1] * FPS)], 90)  # the utterance's
    for p, start, end in segs:
        i = int(round((start + end) / 2 * FPS))
        if p in "PBM":
            assert gap[i] <= 0.0
        elif p in ("AA", "AE", "IY"):
            assert gap[i] > 0.4 * p90


def test_jaw_follows_vowel_height_and_diphthongs_move():
    segs = _segments("AA SIL EH SIL IY SIL AY", duration=0.2)
    ch = viseme_channels(segs, int(segs[-1][2] * FPS) + 1)
    centre = {p: _at(ch["jaw"], (s + e) / 2) for p, s, e in segs if p != "SIL"}
    assert centre["AA"] > centre["EH"] > centre["IY"]
    ay = [seg for seg in segs if seg[0] == "AY"][0]
    assert _at(ch["jaw"], ay[1] + 0.05) > _at(ch["jaw"], ay[2] - 0.05) + 0.1  # AA -> IH


def test_rounding_spread_and_tuck():
    segs = _segments("S T R UW SIL SIL IY SIL F AA", duration=0.1)
    ch = viseme_channels(segs, int(segs[-1][2] * FPS) + 1)
    mid = {p: (s + e) / 2 for p, s, e in segs}
    assert _at(ch["pucker"], mid["UW"]) > 0.5
    assert _at(ch["pucker"], mid["T"]) > 0.15  # anticipatory rounding across the consonants
    assert _at(ch["spread"], mid["IY"]) > 0.5 and _at(ch["pucker"], mid["IY"]) < 0.1
    assert _at(ch["tuck"], mid["F"]) > 0.95 and _at(ch["tuck"], mid["AA"]) < 0.1


def test_silence_is_the_rest_mouth():
    segs = [("SIL", 0.0, 2.0)]
    params = targets(segs, np.zeros(2 * SAMPLE_RATE, np.float32), TargetConfig())
    mouth = [n for n in EXPRESSION_NAMES if n.startswith(("jaw", "mouth"))]
    assert all(np.abs(_exp(params, n)).max() < 1e-6 for n in mouth)


def test_targets_shape_rest_and_errors(avatar):
    segs = _segments("HH AH L OW", duration=0.12)
    audio = _speech(1.1)
    params = targets(segs, audio, TargetConfig(), rest=avatar.rest_params)
    assert len(params) == int(np.ceil(len(audio) * FPS / SAMPLE_RATE))
    assert np.allclose(params.array[0, :3], avatar.rest_params.array[0, :3], atol=0.1)
    again = targets(segs, audio, TargetConfig(), rest=avatar.rest_params)
    assert np.array_equal(params.array, again.array)  # seeded
    with pytest.raises(ValueError, match="bad phone"):
        targets([("XX", 0.0, 0.1)], audio, TargetConfig())
    with pytest.raises(ValueError, match="bad phone"):
        targets([("AA", 0.5, 0.1)], audio, TargetConfig())


def test_every_phone_has_targets():
    from engine.audio.phones import PHONES

    for p in PHONES:
        if p in gan_targets.DIPHTHONGS:
            continue
        row = gan_targets.phone_targets(p)
        assert set(row) == set(gan_targets.BLENDED)


def test_the_jaw_opens_with_loudness_against_the_speakers_level_whatever_the_gain():
    segs = _segments("AA AA AA AA AA", duration=0.3)
    audio = _speech(segs[-1][2])
    third = slice(int(segs[3][1] * SAMPLE_RATE), int(segs[3][2] * SAMPLE_RATE))
    audio[third] *= 10 ** (-12 / 20)  # one syllable 12 dB quieter than the others
    jaw = _exp(targets(segs, audio, TargetConfig()), "jawOpen")
    centre = lambda i: _at(jaw, (segs[i][1] + segs[i][2]) / 2)  # noqa: E731
    assert centre(3) < 0.6 * min(centre(2), centre(4))
    assert centre(2) > 0.5 * gan_targets.phone_targets("AA")["jaw"][0]
    quiet_microphone = _exp(targets(segs, audio * 0.05, TargetConfig()), "jawOpen")
    np.testing.assert_allclose(quiet_microphone, jaw, atol=1e-5)
