"""Writing MP4 files: H.264 video at FPS, optional AAC audio, written atomically."""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from engine.types import FPS, SAMPLE_RATE

AUDIO_RATE = 48_000  # AAC in MP4 players expects a standard rate
AUDIO_PACKET = 1024


def check_writable(path: str | os.PathLike) -> Path:
    """Fails early, with a clear OSError, if `path` cannot be created."""
    path = Path(path)
    if not path.parent.is_dir():
        raise OSError(f"{path}: the folder {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise OSError(f"{path}: the folder {path.parent} is not writable")
    return path


def write_mp4(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    fps: int = FPS,
    crf: int = 20,
) -> Path:
    """frames: [H, W, 3] uint8 each; audio: [S] float32 mono, trimmed or padded to the video's
    length. The file appears only when complete (written beside it, then renamed)."""
    path = check_writable(path)
    tmp = path.with_name(f".{path.name}.partial.mp4")
    try:
        count = _encode(tmp, frames, audio, sample_rate, fps, crf)
        if count == 0:
            raise ValueError("no frames to write")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _encode(path: Path, frames: Iterable[np.ndarray], audio, sample_rate: int, fps: int, crf: int) -> int:
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return 0
    count = 0
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.height, video.width = first.shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        sound = None if audio is None else container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for image in itertools.chain([first], frames):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
            count += 1
        container.mux(video.encode())
        if sound is not None:
            _encode_audio(container, sound, audio, sample_rate, count / fps)
    return count


def _encode_audio(container, stream, audio: np.ndarray, sample_rate: int, seconds: float) -> None:
    pcm = np.zeros(int(round(seconds * sample_rate)), np.float32)
    pcm[: min(len(audio), len(pcm))] = audio[: len(pcm)]
    frame = av.AudioFrame.from_ndarray(pcm[None], format="flt", layout="mono")
    frame.sample_rate = sample_rate
    frame.time_base = Fraction(1, sample_rate)
    frame.pts = 0
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=AUDIO_RATE, frame_size=AUDIO_PACKET)
    for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
        container.mux(stream.encode(chunk))
    container.mux(stream.encode())
