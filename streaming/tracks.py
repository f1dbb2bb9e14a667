"""WebRTC media tracks of a session, paced by the session's media clock.

Tracks are pulled: aiortc calls recv() for the next frame, and all pacing lives there.
"""
from __future__ import annotations

import asyncio
from typing import Protocol

import numpy as np
from aiortc import VideoStreamTrack
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError
from av import VideoFrame

from engine.types import FPS, SAMPLE_RATE, frame_pts
from streaming.clock import MediaClock


class FrameSource(Protocol):
    """Renders an avatar's video frames (engine.pipeline.idle.IdleAvatar is the real one).

    The server makes one source per avatar and every session of that avatar pulls from it, each
    from its own worker thread: frame() must be safe to call from several threads at once."""

    size: int  # frames are size x size pixels

    def frame(self, index: int) -> np.ndarray:
        """[size, size, 3] uint8 RGB of video frame `index`, shown from sample frame_pts(index)."""
        ...


def frame_at(samples: int) -> int:
    """The video frame on screen at `samples`: the last i with frame_pts(i) <= samples.

    The exact inverse of frame_pts, its rounding down included (samples * FPS // SAMPLE_RATE
    would be one frame short on some frame boundaries)."""
    return ((samples + 1) * FPS - 1) // SAMPLE_RATE


class AvatarVideoTrack(VideoStreamTrack):
    """The avatar's video at FPS: frame i goes out when the session clock reaches frame_pts(i),
    so a track that starts late starts at the live frame, and one that falls behind drops frames."""

    def __init__(self, source: FrameSource, clock: MediaClock) -> None:
        super().__init__()
        if clock.sample_rate != SAMPLE_RATE:
            raise ValueError(f"the session clock must count samples at {SAMPLE_RATE} Hz as frame_pts does")
        self.source = source
        self.clock = clock
        self._next_index = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        # The next frame, unless its time on screen is already over: then the frame on screen now.
        # A late track skips to the present rather than bursting out the past.
        index = max(self._next_index, frame_at(self.clock.now_samples()))
        self._next_index = index + 1
        pts_samples = frame_pts(index)

        # Render in a worker thread (blocking numpy/torch work) while waiting for the frame's time;
        # the sleep is to an absolute time on the clock, so its errors never accumulate.
        rendering = asyncio.get_running_loop().run_in_executor(None, self.source.frame, index)
        await asyncio.sleep(max(0.0, self.clock.delay_until(pts_samples)))
        frame = VideoFrame.from_ndarray(await rendering, format="rgb24")
        frame.pts = pts_samples * VIDEO_CLOCK_RATE // SAMPLE_RATE
        frame.time_base = VIDEO_TIME_BASE
        return frame
