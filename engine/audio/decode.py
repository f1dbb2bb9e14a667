"""Decoding any audio or video file's sound to mono float32 PCM at SAMPLE_RATE (PyAV).

`stream_audio` yields the sound in chunks and never holds the whole file; `load_audio` returns it
at once. Both resample with FFmpeg (swresample) and downmix to mono as the channels' mean (FFmpeg's
own downmix adds the channels at -3 dB, which makes dual-mono stereo 3 dB louder), whatever the
sample format (8/16/24/32-bit integer, float) or rate. A bad file raises one error naming its
problem: missing, not a media file, no audio stream, truncated, NaN or infinite samples
(BadAudioError from engine.audio.pcm).
"""
from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from engine.audio.pcm import check_pcm
from engine.errors import EngineError
from engine.types import SAMPLE_RATE

CHUNK_SAMPLES = SAMPLE_RATE  # stream_audio's default chunk: 1 s
# A file whose sound ends before this share of its declared duration (less a little slack for
# codec padding) was cut off; FFmpeg itself decodes what is there without complaint.
TRUNCATED_SHARE = 0.9
TRUNCATED_SLACK_S = 0.05


class AudioDecodeError(EngineError):
    """A file with no decodable audio."""


def stream_audio(
    path: str | Path, chunk_samples: int = CHUNK_SAMPLES, sample_rate: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """Chunks [chunk_samples] float32 in [-1, 1], mono, at `sample_rate`; the last may be shorter.
    Memory stays bounded by one chunk plus one decoded packet, whatever the file's length."""
    if chunk_samples < 1:
        raise ValueError(f"chunk_samples must be positive, got {chunk_samples}")
    declared_wav = _wav_declared_seconds(path)
    pending: list[np.ndarray] = []
    pending_len = 0
    done = 0  # samples yielded so far
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioDecodeError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            declared = declared_wav if declared_wav is not None else _declared_seconds(stream, container)
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)  # keeps the channels
            for out in _resampled(container.decode(stream), resampler):
                pending.append(out.to_ndarray().mean(axis=0))  # [C, S] -> mono: the channels' mean
                pending_len += len(pending[-1])
                while pending_len >= chunk_samples:
                    joined = np.concatenate(pending)
                    yield check_pcm(joined[:chunk_samples], str(path), done * SAMPLE_RATE // sample_rate)
                    done += chunk_samples
                    pending, pending_len = [joined[chunk_samples:]], pending_len - chunk_samples
    except (av.error.FFmpegError, OSError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise AudioDecodeError(f"{path}: cannot decode audio ({reason})") from None
    if pending_len:
        yield check_pcm(np.concatenate(pending), str(path), done * SAMPLE_RATE // sample_rate)
        done += pending_len
    decoded_s = done / sample_rate
    if declared is not None and decoded_s < TRUNCATED_SHARE * declared - TRUNCATED_SLACK_S:
        raise AudioDecodeError(
            f"{path}: the file is truncated (it declares {declared:.2f} s of audio, only {decoded_s:.2f} s "
            "could be decoded)"
        )


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[S] float32 in [-1, 1], mono, resampled to `sample_rate` (S may be 0 for an empty file)."""
    chunks = list(stream_audio(path, sample_rate=sample_rate))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _resampled(frames: Iterator[av.AudioFrame], resampler: av.AudioResampler) -> Iterator[av.AudioFrame]:
    """The frames resampled, then what the resampler still holds at the end of input."""
    for frame in frames:
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def _declared_seconds(
    stream: av.audio.stream.AudioStream, container: av.container.InputContainer
) -> float | None:
    """The duration the file's header states, if any."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _wav_declared_seconds(path: str | Path) -> float | None:
    """For a RIFF/WAVE file, the duration its data chunk header declares (FFmpeg reports the
    duration of the bytes present instead, which hides truncation); None for other files."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            byte_rate = None
            while chunk := f.read(8):
                if len(chunk) < 8:
                    return None
                kind, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if kind == b"fmt ":
                    fmt = f.read(size)
                    byte_rate = struct.unpack("<I", fmt[8:12])[0] if len(fmt) >= 12 else None
                    f.seek(size % 2, 1)
                elif kind == b"data":
                    # 0 and 0xFFFFFFFF mark a WAV written as a stream, whose length is unknown.
                    unknown = size in (0, 0xFFFFFFFF) or not byte_rate
                    return None if unknown else size / byte_rate
                else:
                    f.seek(size + size % 2, 1)
    except OSError:
        return None  # av.open reports it
    return None
