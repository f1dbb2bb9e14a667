"""The audio the avatar speaks, scheduled on the session clock.

The speech chain writes each AudioChunk at its pts as soon as it is made (ahead of time by the
pipeline's latency); the audio track reads the samples due as the clock reaches them. Where
nothing is scheduled, it reads silence. Everything runs on the event loop: no locks.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from engine.types import AudioChunk


class ScheduledAudio:
    def __init__(self) -> None:
        self._chunks: deque[AudioChunk] = deque()  # in pts order, not overlapping
        self.read_until = 0  # samples before this were played (or skipped): writing there is too late
        self.late_samples = 0  # samples written after their time had passed (never played)

    @property
    def end_pts(self) -> int:
        """One past the last scheduled sample (read_until when nothing is scheduled)."""
        return self._chunks[-1].pts + len(self._chunks[-1].pcm) if self._chunks else self.read_until

    def ahead(self, pts: int) -> int:
        """Samples scheduled from `pts` on: the depth of the audio queue."""
        return max(0, self.end_pts - pts) if self._chunks else 0

    def write(self, chunk: AudioChunk) -> None:
        """Schedules the chunk; a part that overlaps audio already scheduled or played is dropped."""
        start = max(chunk.pts, self.end_pts)
        self.late_samples += max(0, min(self.read_until, chunk.pts + len(chunk.pcm)) - chunk.pts)
        skip = start - chunk.pts
        if skip < len(chunk.pcm):
            self._chunks.append(AudioChunk(chunk.pcm[skip:], start))

    def read(self, pts: int, count: int) -> np.ndarray:
        """Samples [pts, pts + count) as [count] float32, silence where none are scheduled; what lies
        before pts + count is consumed."""
        out = np.zeros(count, np.float32)
        end = pts + count
        while self._chunks and self._chunks[0].pts < end:
            chunk = self._chunks[0]
            chunk_end = chunk.pts + len(chunk.pcm)
            lo, hi = max(pts, chunk.pts), min(end, chunk_end)
            if lo < hi:
                out[lo - pts : hi - pts] = chunk.pcm[lo - chunk.pts : hi - chunk.pts]
            if chunk_end > end:  # the rest of it is due later
                self._chunks[0] = AudioChunk(chunk.pcm[end - chunk.pts :], end)
                break
            self._chunks.popleft()
        self.read_until = max(self.read_until, end)
        return out

    def forget_before(self, pts: int) -> None:
        """Drops what was due before `pts`, played or not (a session without an audio track never
        reads: this keeps its queue to what is still ahead)."""
        while self._chunks and self._chunks[0].pts + len(self._chunks[0].pcm) <= pts:
            self._chunks.popleft()

    def clear(self) -> None:
        """Drops everything scheduled (an interruption)."""
        self._chunks.clear()
