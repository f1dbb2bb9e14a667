"""The speech chain's stages and the frames they pass (streaming/pipeline.py wires them into a
session's chain and owns its clock, latency and interruption).

    [ChunkStage] -AudioChunk-> [FeatureStage] -Features-> [AnimatorStage] -> the session's ParamsTimeline

A Processor has one job: it takes typed frames from a bounded inbox, does its CPU work in a
worker thread (one job in flight per stage, even across interruptions) and pushes its results to
the next stage's inbox, so a full stage slows the one before it. Control frames (InputStart,
SpeechEnd) travel in order with the data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from engine.audio.features import FeatureStream
from engine.audio.live import LiveChunker
from engine.types import AudioChunk, FaceParams, FeatureFrame
from streaming.speech import Animator
from streaming.tracks import frame_at

if TYPE_CHECKING:
    from streaming.pipeline import Pipeline  # the chain a stage belongs to (it imports this module)


# ---- frames -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InputStart:
    """Control: a new utterance; its blocks come at `sample_rate`."""

    sample_rate: int
    audible: bool  # its audio is played to the viewer (not for a microphone without echo)


@dataclass(frozen=True)
class InputBlock:
    """Data: PCM as it arrived, [S] or [S, channels], int16 or float (engine.audio.live)."""

    pcm: np.ndarray


@dataclass(frozen=True)
class SpeechEnd:
    """Control: the utterance is over; every stage flushes what it holds."""


@dataclass(frozen=True)
class FromInput:
    """What an input queued, and the epoch it was opened in (stale once the epoch moves on)."""

    epoch: int
    frame: InputStart | InputBlock | SpeechEnd


@dataclass(frozen=True)
class Features:
    """Data: feature frames as the stream made them final, in order."""

    frames: list[FeatureFrame]


In = TypeVar("In")
Result = TypeVar("Result")


# ---- stages -----------------------------------------------------------------------------------


class Processor(Generic[In]):
    """One job of the chain: frames from a bounded inbox, results pushed to the next stage."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.inbox: asyncio.Queue[In] = asyncio.Queue(pipeline.config.inbox_frames)
        self.next: Processor[Any] | None = None
        self._job: asyncio.Future[Any] | None = None  # its worker-thread job, until done

    async def run(self) -> None:
        while True:
            await self.process(await self.inbox.get())

    async def process(self, frame: In) -> None:
        raise NotImplementedError

    async def push(self, frame: object) -> None:
        assert self.next is not None, "the last stage pushes nowhere"
        await self.next.inbox.put(frame)

    async def in_thread(self, work: Callable[..., Result], *args: object) -> Result:
        """work(*args) in a worker thread. One job at a time per stage: an interruption cancels
        the stage's task but not a thread already running its job, so the next job waits for it
        (interrupt loops cannot pile work up on the sessions' shared threads)."""
        if self._job is not None and not self._job.done():
            await asyncio.wait([self._job])
        self._job = job = asyncio.get_running_loop().run_in_executor(None, work, *args)
        job.add_done_callback(_retrieve)  # an abandoned job's error is not an unhandled one
        return await asyncio.shield(job)

    def reset(self) -> None:
        """Drops the queued frames and the current utterance's state."""
        while not self.inbox.empty():
            self.inbox.get_nowait()


def _retrieve(job: asyncio.Future[Any]) -> None:
    if not job.cancelled():
        job.exception()


class ChunkStage(Processor[FromInput]):
    """Input blocks -> AudioChunks at SAMPLE_RATE stamped on the session clock; audible ones are
    scheduled for the audio track."""

    def reset(self) -> None:
        super().reset()
        self.chunker: LiveChunker | None = None
        self.start: InputStart | None = None
        self.next_pts = 0

    async def process(self, item: FromInput) -> None:
        if item.epoch != self.pipeline.epoch:
            return  # from an input superseded since it queued this
        frame = item.frame
        if isinstance(frame, InputStart):
            await self._end()
            self.start = frame
        elif isinstance(frame, InputBlock):
            p = self.pipeline
            late = p.clock.now_samples() + p.latency - self.next_pts  # behind its time of arrival
            resume_at = None
            if self.chunker is not None and p.jitter.is_late(late):
                margin = p.margin
                p.widen_margin(late)
                await self._end()  # the input fell behind real time: start over
                if not p.jitter.is_late(late):
                    # On the input's own schedule, later only by what the margin grew: starting at
                    # now + latency would add this lateness again on top of the margin that covers it.
                    resume_at = self.next_pts + p.margin - margin
            if self.chunker is None:
                assert self.start is not None, "the input's InputStart comes first"
                self.next_pts = p.clock.now_samples() + p.latency if resume_at is None else resume_at
                self.chunker = LiveChunker(self.start.sample_rate, p.config.chunk_ms, self.next_pts)
            for chunk in await self.in_thread(self.chunker.push, frame.pcm):
                await self._emit(chunk)
        elif isinstance(frame, SpeechEnd):
            await self._end()

    async def _emit(self, chunk: AudioChunk) -> None:
        p = self.pipeline
        await p.clock.sleep_until(chunk.pts - p.latency - p.max_ahead)
        p.timeline.expect(range(frame_at(chunk.pts), frame_at(chunk.pts + len(chunk.pcm) - 1) + 1))
        if self.start is not None and self.start.audible:
            p.audio.forget_before(p.clock.now_samples())  # in case no audio track reads it
            p.audio.write(chunk)
        self.next_pts = chunk.pts + len(chunk.pcm)
        await self.push(chunk)

    async def _end(self) -> None:
        if self.chunker is None:
            return
        for chunk in self.chunker.flush():
            await self._emit(chunk)
        self.chunker = None
        await self.push(SpeechEnd())


class FeatureStage(Processor[AudioChunk | SpeechEnd]):
    """AudioChunks -> FeatureFrames (lists, as the stream makes them final)."""

    def reset(self) -> None:
        super().reset()
        self.stream: FeatureStream | None = None

    async def process(self, frame: AudioChunk | SpeechEnd) -> None:
        if isinstance(frame, AudioChunk):
            if self.stream is None:
                self.stream = self.pipeline.speech.extractor.stream()
            features = await self.in_thread(self.stream.push, frame)
        else:
            features = await self.in_thread(self.stream.flush) if self.stream else []
            self.stream = None
        if features:
            await self.push(Features(features))
        if isinstance(frame, SpeechEnd):
            await self.push(frame)


class AnimatorStage(Processor[Features | SpeechEnd]):
    """FeatureFrames -> FaceParams written to the timeline at their session frame indices."""

    def reset(self) -> None:
        super().reset()
        self.animator: Animator | None = None
        self.next_frame = 0  # session frame of the animator's next output row

    async def process(self, frame: Features | SpeechEnd) -> None:
        p = self.pipeline
        if isinstance(frame, Features):
            if self.animator is None:
                # A feature stream's frames lie on the session's frame grid: pts = frame_pts(index).
                self.next_frame = frame_at(frame.frames[0].pts)
                self.animator = p.speech.new_animator(self.next_frame, p.timeline.idle)
            params = await self.in_thread(self.animator.push, np.stack([f.values for f in frame.frames]))
        else:
            params = await self.in_thread(self.animator.flush) if self.animator else FaceParams.neutral(0)
            self.animator = None
        if len(params):
            p.timeline.forget_before(frame_at(p.clock.now_samples()))  # in case no video track reads it
            p.timeline.put(self.next_frame, params)
            self.next_frame += len(params)
