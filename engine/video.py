"""Video files: writing MP4 (H.264 at FPS, optional AAC audio, atomically) and reading any common
container as RGB frames resampled to a constant FPS by timestamp, streamed."""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from math import ceil
from pathlib import Path

import av
import numpy as np

from engine.errors import EngineError
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
            container.mux(
                video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24"))
            )
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


class VideoReadError(EngineError):
    """A video file that cannot be read: missing, not a media file, or without a video stream."""


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    seconds: float
    frames: int  # frames at `fps` that read_frames yields (from the container's duration)
    has_audio: bool


def probe_video(path: str | os.PathLike, fps: int = FPS) -> VideoInfo:
    """The size (as displayed, after any rotation), length and streams of a video file; decodes
    only its first frame."""
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            first = next(container.decode(stream), None)
        except av.error.FFmpegError as e:
            raise VideoReadError(f"{path}: the video stream cannot be decoded ({e})") from None
        if first is None:
            raise VideoReadError(f"{path}: the video stream has no frames")
        width, height = (
            (first.height, first.width) if _quarter_turns(first) % 2 else (first.width, first.height)
        )
        if stream.duration is not None:
            seconds = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            seconds = container.duration / av.time_base
        else:
            seconds = 0.0
        frames = ceil(round(seconds * fps, 6))  # as read_frames counts: outputs i with i / fps < end
        return VideoInfo(width, height, seconds, frames, bool(container.streams.audio))


def read_frames(path: str | os.PathLike, fps: int = FPS, max_side: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames [H, W, 3] at a constant `fps`, one at a time: output frame i is the source
    frame on screen at time i / fps (from the first frame's timestamp), so variable-frame-rate and
    other-rate sources are duplicated or dropped as needed (a repeated frame may be the same array).
    Frames are turned upright as the file's display rotation says (phone videos). `max_side`
    downscales (area average) so that the longer side is at most that."""
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # The last frame stays on screen until the stream's end (its declared duration), else for
        # one frame period.
        period = Fraction(1, fps) if not stream.average_rate else 1 / Fraction(stream.average_rate)
        declared = None if stream.duration is None else Fraction(stream.duration) * stream.time_base
        start = shown = None
        image: np.ndarray | None = None
        index = 0
        try:
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                t = Fraction(frame.pts) * frame.time_base
                start = t if start is None else start
                while shown is not None and Fraction(index, fps) < t - start:  # `shown` is on screen until t
                    image = image if image is not None else _rgb(shown, max_side)
                    yield image
                    index += 1
                shown, shown_at, image = frame, t, None
        except av.error.FFmpegError as e:
            raise VideoReadError(f"{path}: the video stream is damaged ({e})") from None
        if shown is None:
            raise VideoReadError(f"{path}: the video stream has no frames")
        end = declared if declared is not None else shown_at - start + period
        while Fraction(index, fps) < end:
            image = image if image is not None else _rgb(shown, max_side)
            yield image
            index += 1


def _open(path: str | os.PathLike):
    if not Path(path).is_file():
        raise VideoReadError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise VideoReadError(f"{path}: not a readable video file ({e})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: the file has no video stream")
    return container


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show the frame as intended (its display matrix)."""
    return round(frame.rotation / 90) % 4


def _rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    scale = 1.0 if max_side is None else min(1.0, max_side / max(frame.width, frame.height))
    if scale == 1.0:
        image = frame.to_ndarray(format="rgb24")
    else:
        width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
        image = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    turns = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
