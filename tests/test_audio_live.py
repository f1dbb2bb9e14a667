"""Live input: any rate, sample type and channel count -> contiguous fixed-length chunks at
SAMPLE_RATE on the session clock; blockwise resampling equals resampling the whole signal."""
import numpy as np
import pytest

from engine.audio.live import LiveChunker, to_float_mono
from engine.audio.pcm import BadAudioError
from engine.types import SAMPLE_RATE


def run(chunker, signal, block_sizes):
    chunks, start, sizes = [], 0, iter(block_sizes)
    while start < len(signal):
        size = next(sizes)
        chunks += chunker.push(signal[start : start + size])
        start += size
    return chunks + chunker.flush()


def noise(seconds, rate, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("chunk_ms", [10, 20, 100])
def test_chunks_are_contiguous_and_exact(rate, chunk_ms):
    signal = noise(1.3, rate)
    blocks = np.random.default_rng(1).integers(1, rate // 20, 1000)  # ragged live blocks up to 50 ms
    chunks = run(LiveChunker(rate, chunk_ms, start_pts=4800), signal, blocks)
    size = SAMPLE_RATE * chunk_ms // 1000
    assert all(len(c.pcm) == size for c in chunks[:-1]) and 0 < len(chunks[-1].pcm) <= size
    assert [c.pts for c in chunks] == [4800 + i * size for i in range(len(chunks))]
    assert sum(len(c.pcm) for c in chunks) == round(len(signal) * SAMPLE_RATE / rate)
    # The resampler carries its state: blocks give exactly what one block gives.
    whole = np.concatenate([c.pcm for c in run(LiveChunker(rate, chunk_ms), signal, [len(signal)])])
    np.testing.assert_array_equal(np.concatenate([c.pcm for c in chunks]), whole)


def test_resampled_tone_keeps_its_frequency_and_level():
    rate = 44100
    t = np.arange(rate) / rate
    chunks = run(LiveChunker(rate), (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), [441] * 100)
    out = np.concatenate([c.pcm for c in chunks])[500:-500]
    expected = 0.5 * np.sin(2 * np.pi * 1000 * (np.arange(500, 500 + len(out)) / SAMPLE_RATE))
    lag = np.argmax(np.correlate(out[:2000], expected[:2000], "full")) - 1999  # the filter's small delay
    assert abs(lag) < 16
    assert np.sqrt(np.mean(out**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_sample_types_and_channels():
    x = np.array([0.5, -0.5, 0.25], np.float32)
    np.testing.assert_allclose(to_float_mono((x * 32768).astype(np.int16)), x, atol=1e-4)
    np.testing.assert_allclose(to_float_mono((x * 128 + 128).astype(np.uint8)), x, atol=1e-2)
    np.testing.assert_allclose(to_float_mono((x * 2**31).astype(np.int32)), x, atol=1e-6)
    np.testing.assert_allclose(to_float_mono(np.stack([x, -x], 1)), 0)  # the channels' mean
    chunker = LiveChunker(SAMPLE_RATE, 10)
    stereo16 = (np.stack([x, x], 1).repeat(60, 0) * 32767).astype(np.int16)  # 180 frames
    chunks = chunker.push(stereo16) + chunker.flush()
    assert [len(c.pcm) for c in chunks] == [160, 20]


@pytest.mark.parametrize(
    "block,message",
    [
        (np.array([0.1, np.nan], np.float32), "NaN"),
        (np.zeros((2, 2, 2), np.float32), "expected samples"),
        (np.array([True, False]), "unsupported sample type"),
    ],
)
def test_bad_blocks(block, message):
    with pytest.raises(BadAudioError, match=message):
        LiveChunker(48000).push(block)


def test_bad_settings_and_misuse():
    with pytest.raises(ValueError, match="chunk_ms"):
        LiveChunker(16000, chunk_ms=5)
    with pytest.raises(ValueError, match="chunk_ms"):
        LiveChunker(16000, chunk_ms=200)
    with pytest.raises(ValueError, match="sample rate"):
        LiveChunker(0)
    chunker = LiveChunker(48000)
    chunker.flush()
    with pytest.raises(RuntimeError, match="push after flush"):
        chunker.push(np.zeros(10, np.float32))
