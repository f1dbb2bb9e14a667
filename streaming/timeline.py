"""A session's face parameters by video frame index: speech where the animator has made it, the
idle motion everywhere else, and smooth transitions between the two.

The speech chain writes rows ahead of time (`put`), and says which frames its audio will give rows
(`expect`), so the video track can tell whether a frame's face is final (`final`) before it draws
it; it reads the rows due at each frame (`params`) from its render thread. Transitions, over `fade_frames`:
- into speech: head pose and blink ramp from the idle motion to the animator's over the first
  frames of a run of rows; the mouth (rig weights) is the animator's from the first row, since
  its first rows are silence (a closed mouth, as idle) and a ramp would only delay real speech;
- out of speech (its end, a gap, or an interruption): the last row's offset from the idle motion
  is held and faded to zero, so the face settles back into idle within `fade_frames`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

from engine.pipeline.idle import IdleMotion
from engine.types import EXP_START, FPS, FaceParams

FADE_FRAMES = 4  # 133 ms at 30 fps: an interrupted avatar is back to idle well within 200 ms


class ParamsTimeline:
    """Face parameters of any frame index; thread-safe (written on the event loop, read by the
    render threads)."""

    def __init__(self, idle: IdleMotion, fade_frames: int = FADE_FRAMES) -> None:
        if not 1 <= fade_frames <= FPS:
            raise ValueError(f"fade_frames must be between 1 and {FPS}, got {fade_frames}")
        self.idle = idle
        self.fade_frames = fade_frames
        self._rows: dict[int, np.ndarray] = {}  # frame index -> [NUM_PARAMS] speech row
        self._lock = threading.Lock()
        self.last_read = -1  # the newest frame handed to the renderer
        self._expected = range(0)  # the frames the speech chain's audio will give rows
        self.late_frames = 0  # speech rows that came after their frame was drawn (never shown)

    def put(self, first: int, params: FaceParams) -> None:
        """Speech rows for frames first .. first + len(params) - 1."""
        with self._lock:
            for k, row in enumerate(params.array):
                self._rows[first + k] = row
            self.late_frames += max(0, min(len(params), self.last_read + 1 - first))

    def expect(self, frames: range) -> None:
        """Speech rows are coming for `frames` (their audio is in the chain): the frames of an
        utterance's audio, told chunk by chunk in order."""
        with self._lock:
            if frames.start > self._expected.stop:  # a new utterance, after a gap
                self._expected = frames
            else:
                self._expected = range(self._expected.start, max(self._expected.stop, frames.stop))

    def final(self, index: int) -> bool:
        """Frame `index` will not change any more: its speech row is in, or none is expected."""
        with self._lock:
            return index in self._rows or index not in self._expected

    def interrupt(self, frame: int) -> None:
        """Drops the speech of `frame` and later: from there the face fades back to idle."""
        with self._lock:
            for index in [i for i in self._rows if i >= frame]:
                del self._rows[index]
            self._expected = range(self._expected.start, min(self._expected.stop, frame))

    def speech_until(self) -> int:
        """The last frame with a speech row, -1 when there is none."""
        with self._lock:
            return max(self._rows, default=-1)

    def params(self, frames: Iterable[int]) -> FaceParams:
        """FaceParams [N] of the frame indices (ascending); marks them as drawn."""
        frames = np.asarray(list(frames), np.int64)
        idle = self.idle.params(frames).array
        with self._lock:
            self.last_read = max(self.last_read, int(frames.max()))
            out = np.stack([self._row(int(i), row) for i, row in zip(frames, idle, strict=True)])
        self.forget_before(int(frames.min()))
        return FaceParams(out)

    def forget_before(self, frame: int) -> None:
        """Drops the rows no frame from `frame` on needs (those it fades from included)."""
        with self._lock:
            for index in [i for i in self._rows if i < frame - self.fade_frames]:
                del self._rows[index]

    def _row(self, index: int, idle: np.ndarray) -> np.ndarray:
        if index in self._rows:
            run = next(
                (k for k in range(1, self.fade_frames + 1) if index - k not in self._rows),
                self.fade_frames + 1,
            )
            row = self._rows[index].copy()
            if run <= self.fade_frames:
                head = run / (self.fade_frames + 1)  # 1/(F+1) on a run's first frame, then up to 1
                row[:EXP_START] = idle[:EXP_START] + head * (row[:EXP_START] - idle[:EXP_START])
            return row
        last = next((index - k for k in range(1, self.fade_frames + 1) if index - k in self._rows), None)
        if last is None:
            return idle
        shown = self._row(last, self.idle.params(last).array[0])
        offset = shown - self.idle.params(last).array[0]
        return idle + (1 - (index - last) / (self.fade_frames + 1)) * offset
