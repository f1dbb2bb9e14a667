"""The avatar in process, for a voice-agent framework's pipeline: speech PCM in at any rate, video
frames and the audio to play out, both paced on one media clock, with barge-in.

It is a server session without WebRTC: the same speech chain (streaming.pipeline), face timeline,
scheduled audio and renderer, and the same tracks pulled directly instead of by aiortc. So what
a framework gets is what a viewer of the server gets: frame i (pts = frame_pts(i) samples) shows
the face made from the audio at that pts, and the audio packet at pts p plays with the frame
shown at p; both come `latency` samples after the speech went in.

    avatar = LocalAvatar(engine_avatar("default"))
    speech = avatar.open_input(24_000)          # a new utterance (interrupts the avatar)
    await speech.push(pcm); await speech.end()
    async for frame in avatar.video(): ...      # VideoFrame(pts, rgb [size, size, 3] uint8)
    async for packet in avatar.audio(): ...     # AudioPacket(pts, pcm [320] float32 at 16 kHz)
    avatar.interrupt()
"""
from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from aiortc.mediastreams import VIDEO_CLOCK_RATE, MediaStreamError

from engine.pipeline.idle import IdleMotion
from engine.types import SAMPLE_RATE
from streaming.avatars import EngineOptions, LiveAvatar, engine_avatar_factory
from streaming.batching import RenderService
from streaming.clock import MediaClock
from streaming.metrics import TrackStats
from streaming.pipeline import Pipeline, PipelineConfig, SpeechInput
from streaming.session import SessionFrames
from streaming.speech_audio import ScheduledAudio
from streaming.timeline import ParamsTimeline
from streaming.tracks import AvatarVideoTrack, SpeechAudioTrack, frame_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoFrame:
    pts: int  # samples on the avatar's clock (SAMPLE_RATE): shown from then
    rgb: np.ndarray  # [size, size, 3] uint8


@dataclass(frozen=True)
class AudioPacket:
    pts: int  # samples on the avatar's clock: played from then
    pcm: np.ndarray  # [AUDIO_PACKET] (320: 20 ms) float32 at SAMPLE_RATE, -1..1 (silence when not speaking)


def engine_avatar(name: str = "default", options: EngineOptions | None = None) -> LiveAvatar:
    """An avatar bundle (a name under avatars/ or a path) with the engine's renderer and speech
    models, as the server loads it."""
    avatar = engine_avatar_factory(options or EngineOptions())(name)
    if avatar.speech is None:
        raise ValueError(avatar.speech_error)
    return avatar


class LocalAvatar:
    """One avatar's live output in process. Must be made and used on one running event loop."""

    def __init__(self, avatar: LiveAvatar, config: PipelineConfig | None = None) -> None:
        if avatar.speech is None:
            raise ValueError(avatar.speech_error)
        self.avatar = avatar
        self.clock = MediaClock()
        self.timeline = ParamsTimeline(IdleMotion(avatar.rest, avatar.motion, seed=secrets.randbits(32)))
        self.scheduled = ScheduledAudio()
        self.stats = TrackStats()
        self.error: BaseException | None = None
        config = config or PipelineConfig()
        self.pipeline = Pipeline(avatar.speech, self.clock, self.timeline, self.scheduled, config, self._fail)
        self._renders = RenderService()  # its one session's frames: each drawn at once
        self._frames = SessionFrames(avatar.renderer, self.timeline, self._renders, self.clock)
        self._video = AvatarVideoTrack(self._frames, self.clock, self.stats, self._fail)
        self._audio = SpeechAudioTrack(self.scheduled, self.clock, self.stats)
        self.size = avatar.renderer.size

    @property
    def latency(self) -> int:
        """Samples from speech in to its face and sound out."""
        return self.pipeline.latency

    def open_input(self, sample_rate: int) -> SpeechInput:
        """A new utterance of PCM at `sample_rate` ([S] or [S, channels], int16 or float);
        whatever the avatar was saying is interrupted."""
        return self.pipeline.open_input(sample_rate)

    def interrupt(self) -> None:
        """Barge-in: every queue is flushed (audio included); the face is back at rest within
        the timeline's fade (4 frames, 133 ms)."""
        self.pipeline.interrupt()

    def speaking(self) -> bool:
        """Speech is queued, or scheduled to be shown or played from now on."""
        now = self.clock.now_samples()
        queued = self.pipeline.queued() or self.scheduled.ahead(now)
        return bool(queued) or self.timeline.speech_until() >= frame_at(now)

    async def video(self) -> AsyncIterator[VideoFrame]:
        """Frames at 30 fps, each when its time comes, until close()."""
        try:
            while True:
                frame = await self._video.recv()
                pts = -(-(frame.pts or 0) * SAMPLE_RATE // VIDEO_CLOCK_RATE)  # the track's rounding undone
                yield VideoFrame(pts, frame.to_ndarray(format="rgb24"))
        except MediaStreamError:
            return

    async def audio(self) -> AsyncIterator[AudioPacket]:
        """20 ms packets of the avatar's voice, each when its time comes, until close(). They are
        handed over one packet ahead of their pts (what aiortc's encoder needs): use the pts."""
        try:
            while True:
                frame = await self._audio.recv()
                pcm = frame.to_ndarray()[0].astype(np.float32) / 32767
                yield AudioPacket(frame.pts or 0, pcm)
        except MediaStreamError:
            return

    async def close(self) -> None:
        await self.pipeline.close()
        self._video.stop()
        self._frames.close()
        self._renders.close()
        self._audio.stop()

    def _fail(self, error: BaseException) -> None:
        log.error("the avatar's media failed: %s", error)
        self.error = error
        self._video.stop()
        self._audio.stop()
