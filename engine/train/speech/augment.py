"""Waveform augmentation for training speech: level, channel colour, telephone band and codec,
room echo, noise. Speaker variation (vocal-tract length) is done in the mel filterbank instead
(`models.phonetic.mel_filterbank(warp=...)`), and the level by the running normalisation."""
from __future__ import annotations

import numpy as np
from scipy import signal

from engine.types import SAMPLE_RATE

WARP_RANGE = (0.88, 1.12)  # vocal-tract-length perturbation factors


def random_warp(rng: np.random.Generator) -> float:
    return float(rng.uniform(*WARP_RANGE))


def telephone(audio: np.ndarray, mu_law: bool) -> np.ndarray:
    """Through an 8 kHz channel (and an 8-bit mu-law codec) and back to SAMPLE_RATE."""
    narrow = signal.resample_poly(audio, 1, SAMPLE_RATE // 8000)
    if mu_law:
        mu = 255.0
        coded = np.sign(narrow) * np.log1p(mu * np.minimum(np.abs(narrow), 1)) / np.log1p(mu)
        coded = np.round(coded * 127) / 127
        narrow = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu
    return signal.resample_poly(narrow, SAMPLE_RATE // 8000, 1)[: len(audio)]


def _coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink-ish or brown-ish noise, unit RMS."""
    noise = rng.standard_normal(n)
    pole = rng.choice([0.0, 0.7, 0.98])
    noise = signal.lfilter([1.0], [1.0, -pole], noise)
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-9)


def augment(audio: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """[S] float32 -> [S] float32, a random channel. strength 0..1 scales how often each effect is used."""
    x = audio.astype(np.float64)
    if rng.random() < 0.5 * strength:  # spectral tilt: cheap microphones, pre-emphasis, muffling
        x = signal.lfilter([1.0, -rng.uniform(-0.6, 0.9)], [1.0], x)
    if rng.random() < 0.3 * strength:  # small room: exponentially decaying noise impulse response
        length = int(rng.uniform(0.05, 0.3) * SAMPLE_RATE)
        response = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 6))
        response[0] = 1 / rng.uniform(0.1, 0.5)
        x = signal.fftconvolve(x, response)[: len(x)]
    x = x / (np.max(np.abs(x)) + 1e-9) * 10 ** (rng.uniform(-30, -1) / 20)
    if rng.random() < 0.7 * strength:
        rms = np.sqrt(np.mean(x**2)) + 1e-9
        snr_db = rng.uniform(5, 40)
        x = x + _coloured_noise(len(x), rng) * rms * 10 ** (-snr_db / 20)
    if rng.random() < 0.4 * strength:
        x = telephone(x, mu_law=rng.random() < 0.5)
    return np.clip(x, -1, 1).astype(np.float32)
