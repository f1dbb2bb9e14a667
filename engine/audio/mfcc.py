"""The two MFCC front ends DeepSpeech was trained on, in NumPy (float64 inside, as the originals).

TfMfcc (DeepSpeech 0.9.3): TensorFlow's `AudioSpectrogram` op (magnitude_squared=True) followed by
its `Mfcc` op, as in tensorflow/core/kernels/{spectrogram,mfcc,mfcc_mel_filterbank,mfcc_dct}.cc:
- frames of `window` samples every `step` samples (512 / 320 = 32 / 20 ms), each multiplied by a
  *periodic* Hann window 0.5 - 0.5 cos(2 pi n / window), zero-padded to the next power of two
  (512), |rfft|^2 -> 257 bins;
- mel filterbank on the bins' *magnitudes* (the op takes sqrt of the squared spectrum): HTK mel
  1127 ln(1 + f / 700); `channels` + 2 points evenly spaced in mel from lower_hz (20) to upper_hz
  (8000 in DeepSpeech); bins from int(1.5 + lower / hz_per_bin) to int(upper / hz_per_bin), with
  hz_per_bin = (rate / 2) / (bins - 1); each bin gives weight w to the channel whose centre lies
  just below it and 1 - w to the next (triangles), exactly the op's band_mapper / weights;
- log(max(x, 1e-12)), then the DCT-II sqrt(2 / C) cos(pi k (j + 0.5) / C) for k < coefficients
  (no special scale for k = 0, unlike the orthonormal DCT).

PsfMfcc (DeepSpeech 0.1.0, as FACIAL and VOCA ran it): python_speech_features 0.6 `mfcc` with
numcep=26 (native_client/deepspeech_utils.cc uses the same settings): pre-emphasis 0.97 over the
whole signal; 25 ms frames (400 samples) every 10 ms, rectangular window, the last frame
zero-padded, at least one frame; power spectrum |rfft_512|^2 / 512; 26 triangular filters on
bins floor(513 * mel2hz(linspace(0, hz2mel(8000), 28)) / rate) with the 2595 log10 mel; zeros
replaced by float eps; log; orthonormal DCT-II, first 26; lifter 1 + 11 sin(pi n / 22); c0
replaced by the log of the frame's total power.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

from engine.types import SAMPLE_RATE


@dataclass(frozen=True)
class TfMfccConfig:
    window: int = 512  # samples (32 ms)
    step: int = 320  # samples (20 ms)
    coefficients: int = 26
    channels: int = 40  # filterbank channels (the op's default)
    lower_hz: float = 20.0  # the op's default
    upper_hz: float = 8000.0  # DeepSpeech passes audio_sample_rate / 2
    sample_rate: int = SAMPLE_RATE


class TfMfcc:
    """frames [n, window] -> MFCC [n, coefficients] float32."""

    def __init__(self, config: TfMfccConfig = TfMfccConfig()) -> None:
        self.config = config
        c = config
        self.fft_length = 1 << (c.window - 1).bit_length()
        self.hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(c.window) / c.window)
        self.filterbank = self._filterbank(self.fft_length // 2 + 1)  # [bins, channels]
        k, j = np.arange(c.coefficients)[:, None], np.arange(c.channels)[None, :]
        self.dct = np.sqrt(2.0 / c.channels) * np.cos(
            np.pi / c.channels * k * (j + 0.5)
        )  # [coefficients, channels]

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(frames * self.hann, n=self.fft_length))  # sqrt of the squared magnitude
        mel = np.maximum(spectrum @ self.filterbank, 1e-12)
        return (np.log(mel) @ self.dct.T).astype(np.float32)

    def _filterbank(self, bins: int) -> np.ndarray:
        c = self.config

        def mel(hz: np.ndarray | float) -> np.ndarray:
            return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)

        mel_low = mel(c.lower_hz)
        centres = mel_low + (mel(c.upper_hz) - mel_low) / (c.channels + 1) * np.arange(1, c.channels + 2)
        hz_per_bin = 0.5 * c.sample_rate / (bins - 1)
        first, last = int(1.5 + c.lower_hz / hz_per_bin), int(c.upper_hz / hz_per_bin)
        weights = np.zeros((bins, c.channels))
        for i in range(first, min(last, bins - 1) + 1):
            f = mel(i * hz_per_bin)
            channel = int(np.searchsorted(centres[: c.channels], f, side="left")) - 1  # centre just below f
            if channel >= 0:
                w = (centres[channel + 1] - f) / (centres[channel + 1] - centres[channel])
                weights[i, channel] += w
            else:
                w = (centres[0] - f) / (centres[0] - mel_low)
            if channel + 1 < c.channels:
                weights[i, channel + 1] += 1 - w
        return weights


def tf_frames(audio: np.ndarray, window: int, step: int) -> np.ndarray:
    """audio [S] -> the whole windows [n, window] starting at 0, step, 2 step, ... (n may be 0)."""
    n = 0 if len(audio) < window else 1 + (len(audio) - window) // step
    return (
        np.lib.stride_tricks.sliding_window_view(audio, window)[::step][:n]
        if n
        else np.zeros((0, window), audio.dtype)
    )


@dataclass(frozen=True)
class PsfMfccConfig:
    window: int = 400  # samples (25 ms)
    step: int = 160  # samples (10 ms)
    fft_length: int = 512
    filters: int = 26
    coefficients: int = 26
    preemphasis: float = 0.97
    lifter: int = 22
    sample_rate: int = SAMPLE_RATE


class PsfMfcc:
    """The whole signal [S] -> MFCC [n, coefficients] float32, n = 1 + ceil((S - window) / step)
    (1 when S <= window). Scale as python_speech_features saw it: int16 sample values."""

    def __init__(self, config: PsfMfccConfig = PsfMfccConfig()) -> None:
        self.config = config
        self.filterbank = self._filterbank()  # [filters, bins]
        n = np.arange(config.coefficients)
        self.lift = 1 + (config.lifter / 2.0) * np.sin(np.pi * n / config.lifter)

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        c = self.config
        x = np.asarray(signal, np.float64)
        x = np.append(x[:1], x[1:] - c.preemphasis * x[:-1])
        n = 1 if len(x) <= c.window else 1 + int(np.ceil((len(x) - c.window) / c.step))
        x = np.concatenate([x, np.zeros((n - 1) * c.step + c.window - len(x))])
        frames = np.lib.stride_tricks.sliding_window_view(x, c.window)[:: c.step][:n]
        power = np.abs(np.fft.rfft(frames, c.fft_length)) ** 2 / c.fft_length
        eps = np.finfo(float).eps
        energy = power.sum(axis=1)
        energy = np.where(energy == 0, eps, energy)
        mel = power @ self.filterbank.T
        mel = np.where(mel == 0, eps, mel)
        cepstra = scipy.fft.dct(np.log(mel), type=2, axis=1, norm="ortho")[:, : c.coefficients] * self.lift
        cepstra[:, 0] = np.log(energy)
        return cepstra.astype(np.float32)

    def _filterbank(self) -> np.ndarray:
        c = self.config
        high_mel = 2595 * np.log10(1 + (c.sample_rate / 2) / 700.0)
        hz = 700 * (10 ** (np.linspace(0, high_mel, c.filters + 2) / 2595.0) - 1)
        edge = np.floor((c.fft_length + 1) * hz / c.sample_rate)
        bank = np.zeros((c.filters, c.fft_length // 2 + 1))
        for j in range(c.filters):
            for i in range(int(edge[j]), int(edge[j + 1])):
                bank[j, i] = (i - edge[j]) / (edge[j + 1] - edge[j])
            for i in range(int(edge[j + 1]), int(edge[j + 2])):
                bank[j, i] = (edge[j + 2] - i) / (edge[j + 2] - edge[j + 1])
        return bank
