"""Prosody measurements, accents and phrases, head motion and blinks of the target curves."""
from __future__ import annotations

import numpy as np

from engine.audio.features import num_frames
from engine.train.gan import prosody as gan_prosody
from engine.train.gan.prosody import Prosody, analyse, blinks, head_motion, measure
from engine.types import FPS, SAMPLE_RATE

POSE_STD = np.array([0.035, 0.045, 0.02, 0.15, 0.12, 0.1])


def test_pitch_and_energy_of_a_tone_and_of_silence():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = np.where(t < 0.5, 0.5 * np.sin(2 * np.pi * 180 * t), 0.0).astype(np.float32)
    energy, f0 = measure(tone, FPS)
    assert np.allclose(f0[2:12], 180, rtol=0.03)
    assert (f0[18:] == 0).all()
    assert abs(energy[5] - 10 * np.log10(0.125)) < 0.5  # RMS of a 0.5 sine
    assert energy[25] < -90


def _spoken(pattern: list[tuple[str, float, float]]) -> tuple[list, np.ndarray]:
    """Segments and audio where each vowel is a tone; accented vowels ('AA!') are louder and higher."""
    end = pattern[-1][2]
    audio = np.zeros(int(end * SAMPLE_RATE), np.float32)
    segs = []
    for phone, start, stop in pattern:
        accented = phone.endswith("!")
        phone = phone.rstrip("!")
        segs.append((phone, start, stop))
        if phone in gan_prosody.VOWELS:
            a, b = int(start * SAMPLE_RATE), int(stop * SAMPLE_RATE)
            t = np.arange(b - a) / SAMPLE_RATE
            audio[a:b] = (0.6 if accented else 0.15) * np.sin(2 * np.pi * (220 if accented else 130) * t)
    return segs, audio


def _utterance(accents: set[int], vowels: int = 8, start: float = 0.5) -> list[tuple[str, float, float]]:
    out = [("SIL", 0.0, start)]
    t = start
    for k in range(vowels):
        out += [("T", t, t + 0.08), ("AA!" if k in accents else "AA", t + 0.08, t + 0.25)]
        t += 0.25
    return out + [("SIL", t, t + 0.8)]


def test_phrases_split_at_pauses_and_accents_found():
    first = _utterance({2})
    second = [
        (p, s + first[-1][1] + 0.4, e + first[-1][1] + 0.4) for p, s, e in _utterance({5}, start=0.0)[1:]
    ]
    pattern = first[:-1] + [("SIL", first[-1][1], first[-1][1] + 0.4)] + second
    segs, audio = _spoken(pattern)
    prosody = analyse(segs, audio, num_frames(len(audio)))
    assert len(prosody.phrases) == 2
    assert prosody.phrases[0][0] == 0.5 and abs(prosody.phrases[1][0] - (first[-1][1] + 0.4)) < 1e-9
    accented = [(s + e) / 2 for p, s, e in pattern if p == "AA!"]
    assert [round(c, 3) for c, _ in prosody.accents] == [round(c, 3) for c in accented]


def test_nods_follow_accents_and_the_head_settles_in_pauses():
    segs, audio = _spoken(_utterance({3}) + [("SIL", 2.8, 6.0)])
    prosody = analyse(segs, audio, num_frames(len(audio)))
    quiet = Prosody(prosody.energy_db, prosody.f0, prosody.phrases, [])
    pose, brows = head_motion(prosody, POSE_STD, np.random.default_rng(0))
    plain, _ = head_motion(quiet, POSE_STD, np.random.default_rng(0))
    nod = pose[:, 0] - plain[:, 0]  # the same drift and phrase offsets: the difference is the nod
    accent = prosody.accents[0][0]
    assert nod.max() > 0.02 and abs(nod.argmax() / FPS - accent) < 0.35
    assert brows.max() > 0.1
    # The head turns during the phrase and settles most of the way back in the pause after it.
    drift_free = (
        plain[:, 1]
        - head_motion(Prosody(quiet.energy_db, quiet.f0, [], []), POSE_STD, np.random.default_rng(0))[0][:, 1]
    )
    end = int(prosody.phrases[0][1] * FPS)
    assert np.abs(drift_free[:end]).max() > 0.5 * POSE_STD[1]
    assert np.abs(drift_free[-10:]).max() < 0.5 * np.abs(drift_free[:end]).max()


def test_blink_rate_duration_and_pauses():
    rng = np.random.default_rng(1)
    t, phrases = 0.5, []
    while t < 300:  # five minutes of phrases 1-4 s long with 0.2-1 s pauses
        length = rng.uniform(1, 4)
        phrases.append((t, t + length))
        t += length + rng.uniform(0.2, 1.0)
    n = int(t * FPS)
    prosody = Prosody(np.zeros(n), np.zeros(n), phrases, [(s + 0.3, 1.5) for s, _ in phrases])
    closure = blinks(prosody, rng)
    closed = closure > 0.5
    onsets = np.flatnonzero(np.diff(closed.astype(int)) == 1)
    rate = len(onsets) / (n / FPS / 60)
    assert 15 <= rate <= 22
    started = np.flatnonzero(np.diff((closure > 0).astype(int)) == 1)
    ended = np.flatnonzero(np.diff((closure > 0).astype(int)) == -1)
    durations = (ended - started[: len(ended)]) / FPS
    assert durations.min() >= 0.1 and durations.max() <= 0.4
    # More at pauses: most blinks start within 0.3 s after a phrase ends.
    ends = np.array([e for _, e in phrases])
    near = [np.min(np.abs(s / FPS - ends - 0.05)) < 0.3 for s in started]
    assert np.mean(near) > 0.6
