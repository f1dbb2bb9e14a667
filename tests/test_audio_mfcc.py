"""The MFCC front ends reproduce the originals: TensorFlow's AudioSpectrogram + Mfcc ops
(DeepSpeech 0.9.3) and python_speech_features 0.6 (DeepSpeech 0.1.0, FACIAL). The reference values
come from those libraries (tests/data/make_deepspeech_mfcc_reference.py)."""
from pathlib import Path

import numpy as np
import pytest

from engine.audio.mfcc import PsfMfcc, TfMfcc, TfMfccConfig, tf_frames

REFERENCE = Path(__file__).parent / "data" / "deepspeech_mfcc_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as f:
        return dict(f)


def test_tf_mfcc_matches_tensorflow(reference):
    ours = TfMfcc()(tf_frames(reference["audio"], 512, 320))
    assert ours.shape == reference["tf_mfcc"].shape == (14, 26)
    np.testing.assert_allclose(ours, reference["tf_mfcc"], atol=1e-4, rtol=1e-5)


def test_psf_mfcc_matches_python_speech_features(reference):
    ours = PsfMfcc()(reference["audio"] * 32768)
    assert ours.shape == reference["psf_mfcc"].shape == (29, 26)  # the last frame zero-padded
    np.testing.assert_allclose(ours, reference["psf_mfcc"], atol=1e-3, rtol=1e-5)


def test_tf_filterbank_shape():
    bank = TfMfcc().filterbank  # [257 bins, 40 channels]
    assert bank.shape == (257, 40)
    assert bank[:2].sum() == 0 and bank[2].sum() > 0  # first bin int(1.5 + 20 Hz / 31.25 Hz) = 2, as the op
    # a bin between two centres gives w to one channel and 1 - w to the next
    inner = bank[20:200].sum(axis=1)
    np.testing.assert_allclose(inner, 1.0)


def test_frames():
    audio = np.arange(2000, dtype=np.float32)
    frames = tf_frames(audio, 512, 320)
    assert frames.shape == (5, 512) and frames[4, 0] == 1280
    assert tf_frames(audio[:511], 512, 320).shape == (0, 512)
    assert PsfMfcc()(np.zeros(10)).shape == (1, 26)  # at least one frame, like the original


def test_upper_frequency_changes_the_filterbank():
    assert not np.allclose(TfMfcc(TfMfccConfig(upper_hz=4000)).filterbank, TfMfcc().filterbank)
