"""A talking-head video's frames as an avatar needs them: one square crop for the whole clip,
every frame cropped and resized into a memory-mapped array (bounded memory whatever the clip's
length), and the person's motion statistics from the tracked parameters.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from engine.avatar.bundle import MotionStats
from engine.face.topology import CHIN, FOREHEAD
from engine.face.video_track import blink_events
from engine.types import FPS, FaceParams
from engine.video import VideoReadError

CROP_FACE_HEIGHTS = 2.4  # crop side, in forehead-to-chin heights (as photo avatars)


@dataclass(frozen=True)
class Crop:
    """A square of the source frame: top-left (x0, y0) and side, in source pixels."""

    x0: int
    y0: int
    side: int

    def landmarks(self, landmarks: np.ndarray, resolution: int) -> np.ndarray:
        """Source-frame landmarks [..., 478, 3] -> the cropped, resized frame's (w scales with u, v)."""
        return (landmarks - np.array([self.x0, self.y0, 0.0])) * (resolution / self.side)


def stable_crop(landmarks: np.ndarray, valid: np.ndarray, width: int, height: int) -> Crop:
    """One crop for the whole clip: around where the face spends its time, shifted down to keep the
    neck, wide enough for the head's travel (the middle 90% of its positions)."""
    lm = landmarks[valid]
    face_height = np.median(np.linalg.norm(lm[:, CHIN, :2] - lm[:, FOREHEAD, :2], axis=-1))
    centres = lm[:, :, :2].mean(1) + np.array([0.0, 0.15 * face_height])
    low, high = np.percentile(centres, [5, 95], axis=0)
    side = int(min(CROP_FACE_HEIGHTS * face_height + (high - low).max(), width, height))
    cx, cy = (low + high) / 2
    x0 = int(np.clip(round(cx - side / 2), 0, width - side))
    y0 = int(np.clip(round(cy - side / 2), 0, height - side))
    return Crop(x0, y0, side)


def motion_stats(params: FaceParams, valid: np.ndarray) -> MotionStats:
    """The person's head-pose spread and blinking (rate, median length) over the tracked frames."""
    blinks = blink_events(params.blink, valid)
    minutes = valid.sum() / FPS / 60
    lengths = [(stop - start) / FPS for start, stop in blinks]
    defaults = MotionStats()
    return MotionStats(
        pose_std=tuple(float(v) for v in params.pose[valid].std(0)),
        blinks_per_minute=len(blinks) / minutes if minutes > 0 and blinks else defaults.blinks_per_minute,
        blink_seconds=float(np.median(lengths)) if lengths else defaults.blink_seconds,
    )


def crop_frames(
    video: str | os.PathLike,
    crop: Crop,
    count: int,
    resolution: int,
    out: Path,
    progress: Callable[[int, int], None],
) -> None:
    """The first `count` frames of `video` (at FPS), cropped and resized, into the .npy file `out`
    [count, R, R, 3] uint8, written through a memory map and renamed into place when complete."""
    from engine.video import read_frames

    partial = out.with_name(f".{out.name}.partial")
    frames = np.lib.format.open_memmap(partial, "w+", np.uint8, (count, resolution, resolution, 3))
    done = 0
    for done, frame in enumerate(read_frames(video), 1):
        square = Image.fromarray(frame[crop.y0 : crop.y0 + crop.side, crop.x0 : crop.x0 + crop.side])
        frames[done - 1] = np.asarray(square.resize((resolution, resolution), Image.Resampling.LANCZOS))
        progress(done, count)
        if done == count:
            break
    frames.flush()
    del frames
    if done < count:
        partial.unlink()
        raise VideoReadError(f"{video}: the video ended after {done} frames, its tracking saw {count}")
    os.replace(partial, out)


def write_npy(path: Path, array: np.ndarray) -> None:
    """np.save to exactly `path`, appearing only when complete."""
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "wb") as f:
        np.save(f, array)
    os.replace(partial, path)
