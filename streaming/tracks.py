"""WebRTC media tracks of a session, paced by the session's media clock.

Tracks are pulled: aiortc calls recv() for the next frame, and all pacing lives there. Both tracks
of a session count on the same clock: a video frame with pts p (in samples) and the audio packet
starting at p go out at the same moment, and their RTP timestamps are p on each track's clock.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np
from aiortc import MediaStreamTrack, VideoStreamTrack
from aiortc.mediastreams import VIDEO_CLOCK_RATE, VIDEO_TIME_BASE, MediaStreamError
from av import AudioFrame, VideoFrame

from engine.types import FPS, SAMPLE_RATE, frame_pts
from streaming.clock import MediaClock
from streaming.metrics import TrackStats
from streaming.speech_audio import ScheduledAudio

log = logging.getLogger(__name__)

AUDIO_PACKET = SAMPLE_RATE // 50  # 20 ms, WebRTC's usual audio packet
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
ENCODER_DELAY = AUDIO_PACKET  # samples
# A frame is drawn as soon as its face is final, but no later than this before its time: when the
# speech chain runs late, the renderer still gets this long (a streamed frame takes 5-19 ms on CPU).
RENDER_LEAD = SAMPLE_RATE // 50  # samples (20 ms)
FINAL_POLL_S = 0.002  # how often a frame waiting for its speech looks again


class FrameSource(Protocol):
    """Renders a session's video frames (streaming.session.SessionFrames is the real one: it
    asks the renderer service, whose worker threads draw)."""

    size: int  # frames are size x size pixels

    def final(self, index: int) -> bool:
        """Frame `index` will look the same whenever it is drawn from now on (its speech is in)."""
        ...

    async def frame(self, index: int) -> np.ndarray:
        """[size, size, 3] uint8 RGB of video frame `index`, shown from sample frame_pts(index);
        its drawing must not hold up the event loop."""
        ...


def frame_at(samples: int) -> int:
    """The video frame on screen at `samples`: the last i with frame_pts(i) <= samples.

    The exact inverse of frame_pts, its rounding down included (samples * FPS // SAMPLE_RATE
    would be one frame short on some frame boundaries)."""
    return ((samples + 1) * FPS - 1) // SAMPLE_RATE


class AvatarVideoTrack(VideoStreamTrack):
    """The avatar's video at FPS: frame i goes out when the session clock reaches frame_pts(i),
    so a track that starts late starts at the live frame, and one that falls behind drops frames.
    Frame i is drawn once its face is final, at the latest RENDER_LEAD before its time, so the
    speech chain has until then to make it. A failing source ends the track and calls `on_error`."""

    def __init__(
        self,
        source: FrameSource,
        clock: MediaClock,
        stats: TrackStats | None = None,
        on_error: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        super().__init__()
        if clock.sample_rate != SAMPLE_RATE:
            raise ValueError(f"the session clock must count samples at {SAMPLE_RATE} Hz as frame_pts does")
        self.source = source
        self.clock = clock
        self.stats = stats or TrackStats()
        self._on_error = on_error
        self._next_index = 0

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        # The next frame, unless its time on screen is already over: then the frame on screen now.
        # A late track skips to the present rather than bursting out the past.
        index = max(self._next_index, frame_at(self.clock.now_samples()))
        if self._next_index:
            self.stats.frames_dropped += index - self._next_index
        self._next_index = index + 1
        pts_samples = frame_pts(index)

        # Render (in worker threads) while waiting for the frame's time; the sleeps are to absolute
        # times on the clock, so their errors never accumulate.
        # (a poll: the timeline is written from the speech chain, with no event to wait on)
        while not self.source.final(index) and self.clock.delay_until(pts_samples - RENDER_LEAD) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(FINAL_POLL_S, self.clock.delay_until(pts_samples - RENDER_LEAD)))
        rendering = asyncio.ensure_future(self._render(index))
        try:
            await self.clock.sleep_until(pts_samples)
            rgb = await rendering
        except Exception as error:  # the session's problem, not aiortc's: end this track cleanly
            log.exception("rendering frame %d failed", index)
            self.stop()
            self._on_error(error)
            raise MediaStreamError from error
        finally:
            rendering.cancel()  # a no-op once drawn; a track stopped meanwhile wants it no more
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = pts_samples * VIDEO_CLOCK_RATE // SAMPLE_RATE
        frame.time_base = VIDEO_TIME_BASE
        self.stats.frames_sent += 1
        return frame

    async def _render(self, index: int) -> np.ndarray:
        start = time.perf_counter()
        rgb = await self.source.frame(index)
        self.stats.render_seconds += time.perf_counter() - start
        return rgb


class SpeechAudioTrack(MediaStreamTrack):
    """The audio the avatar speaks: 20 ms packets of the session's ScheduledAudio, packet k (pts
    k * AUDIO_PACKET samples) leaves when the clock reaches it; silence when nothing is scheduled."""

    kind = "audio"

    def __init__(self, audio: ScheduledAudio, clock: MediaClock, stats: TrackStats | None = None) -> None:
        super().__init__()
        self.audio = audio
        self.clock = clock
        self.stats = stats or TrackStats()
        self._next_packet = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        packet = max(self._next_packet, self.clock.now_samples() // AUDIO_PACKET + 1)  # late: skip to now
        self._next_packet = packet + 1
        pts = packet * AUDIO_PACKET
        # aiortc's Opus encoder sends each packet one packet late (its resampler holds the first
        # one back), so packets are handed over one packet early to leave at their pts, with video.
        await self.clock.sleep_until(pts - ENCODER_DELAY)
        pcm = self.audio.read(pts, AUDIO_PACKET)
        pcm16 = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
        frame = AudioFrame.from_ndarray(pcm16[None, :], format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = pts
        frame.time_base = AUDIO_TIME_BASE
        self.stats.audio_packets_sent += 1
        return frame
