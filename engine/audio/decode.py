"""Decoding any audio or video file's sound to mono float32 PCM at SAMPLE_RATE (PyAV)."""
from __future__ import annotations

import av
import numpy as np

from engine.types import SAMPLE_RATE


class AudioDecodeError(ValueError):
    """A file with no decodable audio."""


def load_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[S] float32 in [-1, 1], mono, resampled to `sample_rate`."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{path}: no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(audio=0)
                for out in resampler.resample(frame)
            ]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (av.error.FFmpegError, OSError) as e:
        raise AudioDecodeError(f"{path}: cannot decode audio ({e})") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
