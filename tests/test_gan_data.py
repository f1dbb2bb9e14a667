"""FACIAL-GAN data: espeak-ng phone segments, sessions with pauses, the held-out split, files."""
from __future__ import annotations

import numpy as np

from engine.audio.phones import PHONE_INDEX, SILENCE
from engine.audio.tts import Espeak
from engine.train.gan import data as gan_data
from engine.train.gan.targets import TargetConfig
from engine.train.speech import data as speech_data
from engine.types import NUM_PARAMS, SAMPLE_RATE

SMALL = gan_data.DataConfig(
    espeak_sessions=2, festival_sessions=0, held_out_sessions=2, sentences_per_session=(2, 3)
)


class Rms:
    """A stand-in feature extractor: frame energy (the real ones are tested in their own files)."""

    dim = 1

    def offline(self, audio):
        n = -(-len(audio) * 30 // SAMPLE_RATE)
        padded = np.pad(audio, (0, n * SAMPLE_RATE // 30 + SAMPLE_RATE))
        return np.array(
            [
                [np.sqrt(np.mean(padded[i * SAMPLE_RATE // 30 : (i + 1) * SAMPLE_RATE // 30] ** 2))]
                for i in range(n)
            ],
            np.float32,
        )


def test_espeak_segments_tile_the_audio_with_known_phones():
    synthesis = Espeak.get().synthesize("Bob bought a map.")
    segments = gan_data.espeak_segments(synthesis)
    assert all(p in PHONE_INDEX for p, _, _ in segments)
    assert all(a[2] == b[1] for a, b in zip(segments, segments[1:], strict=False))  # contiguous
    assert abs(segments[-1][2] - len(synthesis.audio) / synthesis.sample_rate) < 1e-9
    phones = [p for p, _, _ in segments if p != SILENCE]
    assert phones[:3] == ["B", "AA", "B"] and "M" in phones and "P" in phones


def test_sessions_join_sentences_with_pauses_and_hold_out_voices_and_sentences():
    train = gan_data.training_sessions(SMALL, None, log=lambda m: None)
    held = gan_data.held_out_sessions(SMALL)
    assert len(train) == 2 and len(held) == 2
    for s in train + held:
        assert 2 <= len(s.texts) <= 3
        assert abs(s.segments[-1][2] - len(s.audio) / SAMPLE_RATE) < 1e-3  # segments cover the audio
        pauses = [e - b for p, b, e in s.segments if p == SILENCE and e - b >= 0.2]
        assert len(pauses) >= len(s.texts) + 1  # before, between and after the sentences
    assert all(s.held_out and s.voice.split("+")[-1] in speech_data.HELD_OUT_VARIANTS for s in held)
    assert not any(s.voice.split("+")[-1] in speech_data.HELD_OUT_VARIANTS for s in train)
    assert not {t for s in train for t in s.texts} & {t for s in held for t in s.texts}
    again = gan_data.held_out_sessions(SMALL)
    assert [s.texts for s in again] == [s.texts for s in held]  # the same for every caller


def test_examples_and_files_round_trip(tmp_path):
    sessions = gan_data.held_out_sessions(SMALL)
    items = gan_data.examples(sessions, Rms(), TargetConfig(), SMALL)
    for session, item in zip(sessions, items, strict=True):
        assert item.features.shape == (len(item.params), 1) and item.params.shape[1] == NUM_PARAMS
        assert len(item.params) == -(-len(session.audio) * 30 // SAMPLE_RATE)
    path = tmp_path / "d.npz"
    gan_data.save(path, items)
    loaded = gan_data.load(path)
    assert [(e.voice, e.held_out) for e in loaded] == [(e.voice, e.held_out) for e in items]
    assert all(
        np.array_equal(a.features, b.features) and np.array_equal(a.params, b.params)
        for a, b in zip(loaded, items, strict=True)
    )
    gan_data.save_sessions(tmp_path / "s.pkl", sessions)
    assert [s.texts for s in gan_data.load_sessions(tmp_path / "s.pkl")] == [s.texts for s in sessions]


def test_forced_alignment_places_the_transcript_in_order():
    import torch

    from models.phonetic import PhoneticConfig, PhoneticNet

    torch.manual_seed(0)
    aligner = PhoneticNet(PhoneticConfig()).eval()  # any posteriors: the path must still be the transcript
    audio = (0.1 * np.random.default_rng(0).normal(size=SAMPLE_RATE)).astype(np.float32)
    segments = gan_data.aligned_segments(aligner, audio, [["B", "AA", "B"], ["M", "AE", "P"]])
    assert [p for p, _, _ in segments if p != SILENCE] == ["B", "AA", "B", "M", "AE", "P"]
    assert segments[0][1] == 0 and all(a[2] == b[1] for a, b in zip(segments, segments[1:], strict=False))
    assert abs(segments[-1][2] - 1.0) < 0.05
    assert (
        gan_data.aligned_segments(aligner, audio[:800], [["B", "AA", "B", "M", "AE", "P"] * 3]) is None
    )  # too short
