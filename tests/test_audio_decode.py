"""Decoding files to mono float32 at SAMPLE_RATE: formats, rates, channels, streaming in bounded
memory, and one clear error per kind of bad file."""
import tracemalloc

import numpy as np
import pytest
from audio_signals import tone, write_encoded, write_wav_float, write_wav_int

from engine.audio.decode import AudioDecodeError, load_audio, stream_audio
from engine.audio.pcm import BadAudioError
from engine.types import SAMPLE_RATE


def sine_amplitude(x, hz=440.0):
    """Amplitude of the `hz` component of x (at SAMPLE_RATE), by projection."""
    t = np.arange(len(x)) / SAMPLE_RATE
    return 2 * np.hypot(x @ np.sin(2 * np.pi * hz * t), x @ np.cos(2 * np.pi * hz * t)) / len(x)


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000, 7350])
def test_any_rate_to_16k(tmp_path, rate):
    audio = load_audio(write_wav_int(tmp_path / "a.wav", tone(1.0, rate), rate))
    assert audio.dtype == np.float32 and abs(len(audio) - SAMPLE_RATE) <= 1
    assert sine_amplitude(audio[1000:-1000]) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize(
    "write",
    [
        lambda p, x: write_wav_int(p / "u8.wav", x, SAMPLE_RATE, width=1),
        lambda p, x: write_wav_float(p / "f32.wav", x, SAMPLE_RATE),
        lambda p, x: write_encoded(p / "a.flac", x, SAMPLE_RATE, "flac"),
        lambda p, x: write_encoded(p / "a.mp3", x, SAMPLE_RATE, "libmp3lame"),
    ],
    ids=["8-bit wav", "float wav", "flac", "mp3"],
)
def test_sample_formats_and_codecs(tmp_path, write):
    audio = load_audio(write(tmp_path, tone(1.0, SAMPLE_RATE)))
    assert audio.dtype == np.float32 and abs(len(audio) - SAMPLE_RATE) <= 1200  # codec priming / padding
    assert sine_amplitude(audio[2000:14000]) == pytest.approx(0.5, abs=0.04)  # mp3 is lossy at 16 kHz


def test_stereo_is_the_channels_mean(tmp_path):
    left, right = tone(1.0, SAMPLE_RATE), tone(1.0, SAMPLE_RATE, hz=1000)
    audio = load_audio(write_wav_int(tmp_path / "s.wav", np.stack([left, right], 1), SAMPLE_RATE))
    np.testing.assert_allclose(audio, (left + right) / 2, atol=2e-4)


def test_video_file_sound(tmp_path):
    from engine.video import write_mp4

    write_mp4(
        tmp_path / "v.mp4", (np.zeros((64, 64, 3), np.uint8) for _ in range(30)), tone(1.0, SAMPLE_RATE)
    )
    assert sine_amplitude(load_audio(tmp_path / "v.mp4")[2000:12000]) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("chunk", [1, 1000, 16000, 100_000])
def test_stream_chunks_equal_load(tmp_path, chunk):
    path = write_wav_int(tmp_path / "a.wav", tone(2.5, 44100), 44100)
    chunks = list(stream_audio(path, chunk))
    whole = load_audio(path)
    assert all(len(c) == chunk for c in chunks[:-1]) and 0 < len(chunks[-1]) <= chunk
    np.testing.assert_array_equal(np.concatenate(chunks), whole)


def test_long_file_is_streamed_in_bounded_memory(tmp_path):
    path = write_wav_int(
        tmp_path / "long.wav", np.tile(tone(1.0, SAMPLE_RATE), 180), SAMPLE_RATE
    )  # 3 minutes
    tracemalloc.start()
    total = sum(len(chunk) for chunk in stream_audio(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert total == 180 * SAMPLE_RATE
    assert peak < 3_000_000  # the decoded signal is 11.5 MB


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda p: p / "missing.wav", AudioDecodeError, "cannot decode audio \\(No such file"),
        (
            lambda p: (p / "junk.wav").write_bytes(np.random.default_rng(0).bytes(5000)) and p / "junk.wav",
            AudioDecodeError,
            "cannot decode audio",
        ),
        (
            lambda p: (p / "text.wav").write_text("hello") and p / "text.wav",
            AudioDecodeError,
            "cannot decode audio",
        ),
        (
            lambda p: write_wav_float(
                p / "nan.wav", np.r_[np.zeros(8000), np.nan, np.zeros(10)], SAMPLE_RATE
            ),
            BadAudioError,
            "NaN or infinite sample at 0.500 s",
        ),
        (
            lambda p: write_wav_float(
                p / "cut.wav", tone(0.5, SAMPLE_RATE), SAMPLE_RATE, declared_bytes=4 * SAMPLE_RATE
            ),
            AudioDecodeError,
            "truncated \\(it declares 1.00 s of audio, only 0.50 s",
        ),
    ],
    ids=["missing", "random bytes", "text", "nan", "truncated wav"],
)
def test_bad_files(tmp_path, make, error, message):
    with pytest.raises(error, match=message):
        load_audio(make(tmp_path))


def test_truncated_mp3(tmp_path):
    path = write_encoded(tmp_path / "a.mp3", tone(3.0, SAMPLE_RATE), SAMPLE_RATE, "libmp3lame")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioDecodeError, match="truncated"):
        load_audio(path)


def test_file_without_audio(tmp_path):
    from engine.video import write_mp4

    write_mp4(tmp_path / "silent.mp4", (np.zeros((64, 64, 3), np.uint8) for _ in range(5)))
    with pytest.raises(AudioDecodeError, match="no audio stream"):
        load_audio(tmp_path / "silent.mp4")


def test_empty_file_has_no_samples(tmp_path):
    assert len(load_audio(write_wav_float(tmp_path / "empty.wav", np.zeros(0), SAMPLE_RATE))) == 0
