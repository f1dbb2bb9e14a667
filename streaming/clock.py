"""The one media clock of a session, counted in audio samples, and the server's frame grid.

Every track of a session paces from the same start time, so audio and video cannot drift apart
however long the session runs (engine/types.py: video frame i starts at sample frame_pts(i)).
Session clocks start on the server's frame grid (`FrameGrid`), so the frames of every session fall
due at the same instants and the renderer service (streaming/batching.py) can draw them together.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field

from engine.types import FPS, SAMPLE_RATE


@dataclass(frozen=True)
class MediaClock:
    """Sample 0 is due at `start` (time.monotonic() seconds)."""

    start: float = field(default_factory=time.monotonic)
    sample_rate: int = SAMPLE_RATE

    def now_samples(self) -> int:
        """The sample due now; 0 until the clock starts (a session's starts on the next point of the
        server's frame grid)."""
        return max(0, int((time.monotonic() - self.start) * self.sample_rate))

    def time_of(self, samples: int) -> float:
        """When `samples` is due, in time.monotonic() seconds."""
        return self.start + samples / self.sample_rate

    def delay_until(self, samples: int) -> float:
        """Seconds from now until `samples` is due; negative when it is already past."""
        return self.start + samples / self.sample_rate - time.monotonic()

    async def sleep_until(self, samples: int) -> None:
        """Returns when `samples` is due (at once when it is past). The target is absolute, so
        timer errors never accumulate over a session."""
        delay = self.delay_until(samples)
        if delay > 0:
            await asyncio.sleep(delay)


@dataclass(frozen=True)
class FrameGrid:
    """The server's frame grid: a point every 1/fps s from `epoch` (time.monotonic() seconds,
    when the server started). A session clock started on a grid point has frame i due on a grid
    point too (frame_pts rounds down to whole samples: less than a sample off)."""

    epoch: float = field(default_factory=time.monotonic)
    fps: int = FPS

    def next_start(self, now: float | None = None) -> float:
        """The first grid point at or after `now` (default: now): where a new session's clock starts."""
        now = time.monotonic() if now is None else now
        return self.epoch + math.ceil((now - self.epoch) * self.fps) / self.fps
