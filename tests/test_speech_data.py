"""The training-data pipeline: synthesisers with phone timings, real prompts, alignment, augmentation,
scores."""

import shutil

import numpy as np
import pytest

from engine.audio.phones import PHONE_INDEX, PHONES, SILENCE, VISEMES, ipa_to_phones
from engine.audio.tts import Espeak, Voice
from engine.train.speech import asterisk
from engine.train.speech.align import align
from engine.train.speech.augment import augment, telephone
from engine.train.speech.data import espeak_speech, step_labels
from engine.train.speech.evaluate import decode, edit_distance, summary, viseme_confusion
from engine.train.speech.sentences import sentences
from engine.types import SAMPLE_RATE

STEP_S = 0.02


@pytest.fixture(scope="module")
def espeak():
    return Espeak.get()


def test_espeak_phone_timings_are_monotonic_and_cover_the_audio():
    audio, phones, starts = espeak_speech("Bob moved five boxes.", Voice("en-us+f3", rate=170, pitch=60))
    duration = len(audio) / SAMPLE_RATE
    assert 0.8 < duration < 4
    assert np.all(np.diff(starts) >= 0) and starts[0] < 0.2 and starts[-1] < duration
    spoken = [p for p in phones if p != SILENCE]
    assert spoken[:3] == ["B", "AA", "B"] and "F" in spoken and "V" in spoken
    labels = step_labels(phones, starts, int(duration / STEP_S), STEP_S)
    assert labels[-1] == PHONE_INDEX[SILENCE]
    assert set(labels) <= set(PHONE_INDEX[p] for p in phones) | {PHONE_INDEX[SILENCE]}


def test_espeak_phonemizer_matches_its_synthesiser(espeak):
    words = espeak.phonemize("Bob moved five boxes.", "en-us")
    assert [p for w in words for s in w for p in ipa_to_phones(s)][:3] == ["B", "AA", "B"]
    assert len(words) == 4


def test_step_labels_take_the_phone_at_each_step_centre():
    labels = step_labels(["SIL", "M", "AA"], np.array([0.0, 0.03, 0.05]), 4, STEP_S)
    assert [PHONES[i] for i in labels] == ["SIL", "M", "AA", "AA"]


def test_sentences_are_deterministic_and_cover_every_phone(espeak):
    texts = sentences(150, seed=3)
    assert texts == sentences(150, seed=3) and texts != sentences(150, seed=4)
    seen = {p for t in texts for w in espeak.phonemize(t, "en-us") for s in w for p in ipa_to_phones(s)}
    assert seen >= set(PHONES) - {SILENCE}


@pytest.mark.skipif(
    shutil.which("festival") is None, reason="festival is not installed (Debian festival + festvox voices)"
)
def test_festival_segments_cover_the_audio():
    from engine.train.speech.festival import synthesize

    (utt,) = synthesize(["Maybe five boys."], "kal_diphone")
    assert utt.phones[0] == SILENCE and utt.phones[-1] == SILENCE and "M" in utt.phones and "OY" in utt.phones
    assert np.all(np.diff(utt.ends_s) > 0)
    assert abs(utt.ends_s[-1] - len(utt.audio) / SAMPLE_RATE) < 0.05


@pytest.mark.skipif(
    "en" not in asterisk.installed_languages(), reason="asterisk-core-sounds-en(-wav) not installed"
)
def test_asterisk_prompts_transcripts_and_fixed_split():
    prompts = asterisk.prompts("en")
    assert len(prompts) > 500 and all(p.path.exists() for p in prompts)
    held = [p.name for p in prompts if p.held_out]
    assert 0.05 < len(held) / len(prompts) < 0.15
    assert held == [p.name for p in asterisk.prompts("en") if p.held_out]  # the split is fixed
    by_name = {p.name: p for p in prompts}
    assert asterisk.phone_words(by_name["digits/7"]) == [["S", "EH", "V", "AH", "N"]]


def test_forced_alignment_recovers_a_clear_path():
    truth = ["SIL", "SIL", "B", "B", "AA", "AA", "AA", "T", "IY", "IY", "SIL"]
    log_probs = np.full((len(truth), len(PHONES)), -8.0)
    log_probs[np.arange(len(truth)), [PHONE_INDEX[p] for p in truth]] = 0
    path = align(log_probs, [["B", "AA"], ["T", "IY"]])  # no pause between the words: skipped
    assert [PHONES[i] for i in path] == truth
    assert align(log_probs[:3], [["B", "AA"], ["T", "IY"]]) is None  # 3 frames cannot hold 4 phones


def test_augment_keeps_shape_range_and_telephone_band():
    rng = np.random.default_rng(0)
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    for _ in range(5):
        out = augment(audio, rng)
        assert out.shape == audio.shape and out.dtype == np.float32 and np.abs(out).max() <= 1
    spectrum = np.abs(np.fft.rfft(telephone(audio, mu_law=False)))
    assert spectrum[6000] < 0.01 * spectrum[440]


def test_scores():
    assert decode(np.array([0, 16, 16, 1, 1, 0, 1, 33]), min_run=1) == [16, 1, 33]
    assert decode(np.array([16, 16, 1, 33, 33]), min_run=2) == [16, 33]
    assert edit_distance([1, 2, 3], [1, 3]) == 1 and edit_distance([], [4, 5]) == 2
    reference = np.array([PHONE_INDEX[p] for p in ["SIL", "B", "M", "AA", "F"]])
    probs = np.zeros((5, len(PHONES)))
    probs[np.arange(5), [PHONE_INDEX[p] for p in ["SIL", "P", "AA", "AA", "F"]]] = 1
    confusion = viseme_confusion(reference, probs)
    bilabial = VISEMES.index("bilabial")
    assert confusion[bilabial, bilabial] == 1 and confusion[bilabial, VISEMES.index("open")] == 1
    s = summary(confusion, phone_errors=1, reference_phones=4)
    assert s["viseme_accuracy"] == 0.8 and s["bilabial_recall"] == 0.5 and s["bilabial_precision"] == 1.0
    assert s["phone_error_rate"] == 0.25
