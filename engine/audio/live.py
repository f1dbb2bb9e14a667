"""Live input: PCM blocks of any rate, sample format and channel count -> AudioChunks of a fixed
duration at SAMPLE_RATE, stamped on the session clock.

The resampler is FFmpeg's (PyAV's AudioResampler), which carries its filter state across calls:
feeding a signal in blocks of any size gives exactly the samples of resampling it whole, and
round(S * SAMPLE_RATE / rate) of them in all once flushed. Chunk pts count the output samples
from `start_pts`, so chunks are contiguous and the clock cannot drift.
"""
from __future__ import annotations

import av
import numpy as np

from engine.audio.pcm import BadAudioError, check_pcm
from engine.types import SAMPLE_RATE, AudioChunk

MIN_CHUNK_MS, MAX_CHUNK_MS = 10, 100


def to_float_mono(block: np.ndarray, source: str = "audio block") -> np.ndarray:
    """block [S] or [S, C] (frames x channels) of int16, uint8 (8-bit WAV's offset binary), int32
    or float in [-1, 1] -> [S] float32 mono (the channels' mean). NaN / infinity are refused."""
    block = np.asarray(block)
    if block.ndim not in (1, 2) or (block.ndim == 2 and block.shape[1] < 1):
        raise BadAudioError(f"{source}: expected samples [S] or [S, channels], got shape {list(block.shape)}")
    if block.dtype == np.uint8:
        block = (block.astype(np.float32) - 128) / 128
    elif block.dtype.kind == "i":
        block = block.astype(np.float32) / np.float32(2 ** (8 * block.dtype.itemsize - 1))
    elif block.dtype.kind != "f":
        raise BadAudioError(
            f"{source}: unsupported sample type {block.dtype} (use int16, uint8, int32 or float)"
        )
    mono = block.mean(axis=1) if block.ndim == 2 else block
    return check_pcm(mono, source)


class LiveChunker:
    """push(block) -> the AudioChunks of `chunk_ms` completed so far; flush() -> the rest (the
    last chunk may be shorter). One per live input; interruption: drop it and make a new one."""

    def __init__(self, input_rate: int, chunk_ms: int = 20, start_pts: int = 0) -> None:
        if not MIN_CHUNK_MS <= chunk_ms <= MAX_CHUNK_MS or SAMPLE_RATE * chunk_ms % 1000:
            raise ValueError(
                f"chunk_ms must be a whole number of samples between {MIN_CHUNK_MS} and {MAX_CHUNK_MS} ms, "
                f"got {chunk_ms}"
            )
        if not 1000 <= input_rate <= 384_000:
            raise ValueError(f"input sample rate must be between 1000 and 384000 Hz, got {input_rate}")
        self.input_rate = input_rate
        self.chunk_samples = SAMPLE_RATE * chunk_ms // 1000
        self._resampler = (
            None
            if input_rate == SAMPLE_RATE
            else av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        )
        self._pending = np.zeros(0, np.float32)
        self._next_pts = start_pts
        self._flushed = False

    def push(self, block: np.ndarray) -> list[AudioChunk]:
        """block [S] or [S, C] at `input_rate` (see to_float_mono for sample types)."""
        if self._flushed:
            raise RuntimeError("push after flush: make a new LiveChunker for new input")
        mono = to_float_mono(block)
        return self._cut(self._resample(mono), final=False)

    def flush(self) -> list[AudioChunk]:
        """What the resampler still holds, and the last, possibly shorter, chunk."""
        if self._flushed:
            return []
        self._flushed = True
        tail = self._resample(None) if self._resampler else np.zeros(0, np.float32)
        return self._cut(tail, final=True)

    def _resample(self, mono: np.ndarray | None) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32) if mono is None else mono
        frame = None
        if mono is not None:
            if len(mono) == 0:
                return mono
            frame = av.AudioFrame.from_ndarray(mono[None, :], format="flt", layout="mono")
            frame.sample_rate = self.input_rate
        out = [o.to_ndarray().reshape(-1) for o in self._resampler.resample(frame)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _cut(self, samples: np.ndarray, final: bool) -> list[AudioChunk]:
        pending = np.concatenate([self._pending, samples])
        n = len(pending) if final else len(pending) - len(pending) % self.chunk_samples
        chunks = []
        for start in range(0, n, self.chunk_samples):
            pcm = pending[start : min(start + self.chunk_samples, n)]
            chunks.append(AudioChunk(pcm, self._next_pts))
            self._next_pts += len(pcm)
        self._pending = pending[n:]
        return chunks
