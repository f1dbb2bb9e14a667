"""The one media clock of a session, counted in audio samples.

Every track of a session paces from the same start time, so audio and video cannot drift apart
however long the session runs (engine/types.py: video frame i starts at sample frame_pts(i)).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from engine.types import SAMPLE_RATE


@dataclass(frozen=True)
class MediaClock:
    """Sample 0 is due at `start` (time.monotonic() seconds)."""

    start: float = field(default_factory=time.monotonic)
    sample_rate: int = SAMPLE_RATE

    def now_samples(self) -> int:
        """The sample due now."""
        return int((time.monotonic() - self.start) * self.sample_rate)

    def delay_until(self, samples: int) -> float:
        """Seconds from now until `samples` is due; negative when it is already past."""
        return self.start + samples / self.sample_rate - time.monotonic()

    async def sleep_until(self, samples: int) -> None:
        """Returns when `samples` is due (at once when it is past). The target is absolute, so
        timer errors never accumulate over a session."""
        delay = self.delay_until(samples)
        if delay > 0:
            await asyncio.sleep(delay)
