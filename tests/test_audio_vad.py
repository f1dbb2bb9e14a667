"""Voice activity per chunk: WebRTC VAD + onset + hangover."""
import numpy as np
import pytest

from engine.audio.pcm import BadAudioError
from engine.audio.vad import VadConfig, VoiceActivity
from engine.types import SAMPLE_RATE, AudioChunk

CHUNK = 320  # 20 ms


def voiced_then_pause_then_voiced():
    """1 s of a 130 Hz harmonic vowel, 1 s of faint noise, 1 s of vowel."""
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    vowel = 0.2 * sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 12))
    gate = (t < 1) | (t >= 2)
    return (vowel * gate + 0.003 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


def activity(audio, chunk=CHUNK, config=VadConfig()):
    vad = VoiceActivity(config)
    return np.array([vad.push(AudioChunk(audio[i : i + chunk], i)) for i in range(0, len(audio), chunk)])


def test_silence_is_never_speech():
    assert not activity(np.zeros(SAMPLE_RATE, np.float32)).any()


def test_speech_onset_and_hangover():
    on = activity(voiced_then_pause_then_voiced())
    seconds = np.arange(len(on)) * CHUNK / SAMPLE_RATE
    assert on[(seconds >= 0.1) & (seconds < 1.0)].all()  # starts within 100 ms
    assert on[(seconds >= 1.0) & (seconds < 1.3)].all()  # the 300 ms hangover bridges pauses
    assert not on[(seconds >= 1.6) & (seconds < 2.0)].any()  # then it ends
    assert on[(seconds >= 2.1)].all()  # and starts again


def test_hangover_is_configurable():
    short = activity(voiced_then_pause_then_voiced(), config=VadConfig(hangover_ms=0))
    long = activity(voiced_then_pause_then_voiced(), config=VadConfig(hangover_ms=600))
    assert short.sum() < long.sum()


@pytest.mark.parametrize("chunk", [160, 480, 1600, 555])
def test_any_chunk_size(chunk):
    on = activity(voiced_then_pause_then_voiced(), chunk)
    seconds = np.arange(len(on)) * chunk / SAMPLE_RATE
    assert on[(seconds > 0.2) & (seconds < 0.9)].all() and not on[(seconds > 1.7) & (seconds < 1.9)].any()


def test_bad_config_and_samples():
    with pytest.raises(ValueError, match="10, 20 or 30"):
        VadConfig(frame_ms=15)
    with pytest.raises(ValueError, match="0..3"):
        VadConfig(aggressiveness=4)
    with pytest.raises(BadAudioError, match="NaN"):
        VoiceActivity().push(AudioChunk(np.array([np.nan] * 160, np.float32), 0))
