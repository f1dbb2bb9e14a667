"""Text-to-speech (engine/audio/tts.py): audio at SAMPLE_RATE, one engine shared safely by threads."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engine.audio.pcm import to_sample_rate
from engine.audio.tts import Espeak, TtsError, Voice, text_to_speech
from engine.types import SAMPLE_RATE


def test_text_to_speech_is_speech_at_the_sample_rate():
    synthesis = Espeak.get().synthesize("Bob bought a map.", Voice("en-us"))
    audio = text_to_speech("Bob bought a map.", "en-us")
    assert audio.dtype == np.float32 and np.abs(audio).max() > 0.05
    # espeak-ng's pauses vary by a few samples from call to call
    assert abs(len(audio) - len(synthesis.audio) * SAMPLE_RATE / synthesis.sample_rate) < 0.01 * len(audio)


@pytest.mark.parametrize("text", ["", "  \n "])
def test_empty_text_is_refused(text):
    with pytest.raises(TtsError, match="empty"):
        text_to_speech(text)


def test_an_unknown_voice_is_one_error():
    with pytest.raises(TtsError, match="no voice 'xx-nonexistent'"):
        text_to_speech("Hello.", "xx-nonexistent")


def test_threads_speaking_with_different_voices_get_their_own_speech():
    """espeak-ng has one global voice and output buffer: the engine's lock keeps each call whole."""
    espeak = Espeak.get()
    jobs = [("Bob bought a map.", Voice("en-us")), ("Five fine fish.", Voice("en+f3", rate=120)),
            ("A warm pool.", Voice("en-gb-x-rp+m3", rate=220))]
    alone = [espeak.synthesize(text, voice) for text, voice in jobs]
    with ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(lambda job: espeak.synthesize(*job), jobs * 4))
    for k, synthesis in enumerate(together):
        expected = alone[k % len(jobs)]
        assert synthesis.phonemes == expected.phonemes
        assert abs(len(synthesis.audio) - len(expected.audio)) < 0.05 * len(expected.audio)  # pauses vary


@pytest.mark.parametrize("rate", [22050, 8000, 48000])
def test_to_sample_rate_keeps_a_tone(rate):
    t = np.arange(rate) / rate  # one second
    out = to_sample_rate(np.sin(2 * np.pi * 440 * t), rate)
    assert out.dtype == np.float32 and len(out) == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(out))
    assert np.argmax(spectrum) == 440  # 1 Hz bins
