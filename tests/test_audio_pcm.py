"""PCM checks: one clear error for unusable samples."""
import numpy as np
import pytest

from engine.audio.pcm import BadAudioError, check_level, check_pcm, check_speech_input


def test_check_pcm_accepts_and_converts():
    out = check_pcm(np.array([0, 1, -1], np.float64))
    assert out.dtype == np.float32 and out.flags.c_contiguous


@pytest.mark.parametrize(
    "pcm,message",
    [
        (np.zeros((10, 2), np.float32), "expected mono samples"),
        (np.array(["a"]), "must be numbers"),
        (np.array([0.0, 0.0, np.nan], np.float32), "NaN or infinite sample at 0.000 s"),
        (np.r_[np.zeros(16000), np.inf], "NaN or infinite sample at 1.000 s"),
    ],
)
def test_check_pcm_refuses(pcm, message):
    with pytest.raises(BadAudioError, match=message):
        check_pcm(pcm)


def test_speech_input_must_have_sound():
    with pytest.raises(BadAudioError, match="empty"):
        check_speech_input(np.zeros(0, np.float32), "a.wav")
    with pytest.raises(BadAudioError, match="a.wav: the audio is silent \\(digital silence\\)"):
        check_speech_input(np.zeros(100, np.float32), "a.wav")
    with pytest.raises(BadAudioError, match="silent \\(peak -100 dBFS\\)"):
        check_level(100, 1e-5)
    assert len(check_speech_input(np.full(10, 0.01, np.float32))) == 10
