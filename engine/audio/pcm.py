"""Checks on PCM arrays entering the engine: one clear error instead of NaNs further down."""
from __future__ import annotations

from math import gcd

import numpy as np
from scipy import signal

from engine.errors import EngineError
from engine.types import SAMPLE_RATE

SILENCE_PEAK = 10 ** (-80 / 20)  # -80 dBFS: below one step of 16-bit audio, nothing audible


class BadAudioError(EngineError):
    """PCM that cannot be used: wrong shape, NaN or infinite samples, nothing in it."""


def check_pcm(pcm: np.ndarray, source: str = "audio", start: int = 0) -> np.ndarray:
    """[S] mono samples -> the same as contiguous float32. Raises BadAudioError for anything not
    1-D, not numbers, or holding NaN / infinity (named by its time; `start` = the first sample's
    index on the clock the message should use, at SAMPLE_RATE)."""
    pcm = np.asarray(pcm)
    if pcm.ndim != 1:
        raise BadAudioError(f"{source}: expected mono samples [S], got an array of shape {list(pcm.shape)}")
    if pcm.dtype.kind not in "fiu":
        raise BadAudioError(f"{source}: samples must be numbers, got dtype {pcm.dtype}")
    pcm = np.ascontiguousarray(pcm, dtype=np.float32)
    finite = np.isfinite(pcm)
    if not finite.all():
        first = start + int(np.argmin(finite))
        raise BadAudioError(f"{source}: NaN or infinite sample at {first / SAMPLE_RATE:.3f} s")
    return pcm


def check_speech_input(pcm: np.ndarray, source: str = "audio") -> np.ndarray:
    """check_pcm, and also refuse input with no samples or nothing louder than SILENCE_PEAK:
    a whole recording meant to drive a face must have some sound in it."""
    pcm = check_pcm(pcm, source)
    check_level(len(pcm), float(np.abs(pcm).max()) if len(pcm) else 0.0, source)
    return pcm


def check_level(num_samples: int, peak: float, source: str = "audio") -> None:
    """Raise BadAudioError for a recording of `num_samples` samples whose peak absolute value is
    `peak` if it is empty or silent (for callers that see the audio chunk by chunk)."""
    if num_samples == 0:
        raise BadAudioError(f"{source}: the audio is empty (no samples)")
    if peak < SILENCE_PEAK:
        level = "digital silence" if peak == 0 else f"peak {20 * np.log10(peak):.0f} dBFS"
        raise BadAudioError(f"{source}: the audio is silent ({level})")


def to_sample_rate(pcm: np.ndarray, rate: int) -> np.ndarray:
    """[S] samples at `rate` Hz -> [S * SAMPLE_RATE / rate] float32 at SAMPLE_RATE (polyphase
    resampling: for a synthesiser's whole output; live input goes through engine/audio/live.py)."""
    step = gcd(SAMPLE_RATE, rate)
    return signal.resample_poly(pcm, SAMPLE_RATE // step, rate // step).astype(np.float32)
