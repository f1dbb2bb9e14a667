"""A session's speech chain: audio in -> face parameters on the session's frame grid, plus the
audio to play, both stamped on the session's one media clock.

    SpeechInput.push(pcm) -> [chunker] -AudioChunk-> [features] -FeatureFrame-> [animator] -> ParamsTimeline
                                 '--> ScheduledAudio (what the audio track plays)

Each stage is a Processor with one job: a task taking typed frames from a bounded inbox, doing its
CPU work in a worker thread (one job in flight per stage, even across interruptions), pushing
results to the next inbox (so a full stage slows the one
before it, back to the input: the websocket stops reading). Control frames travel in order with
the data: `InputStart` (a new utterance and its sample rate), `SpeechEnd` (the utterance is over:
every stage flushes). Interruption is not a frame in the queues but one call, `interrupt()`,
that cancels every stage's task, empties every inbox, drops the scheduled audio and the
timeline's future rows, and starts the stages afresh (an input opened before it is superseded).

Clock. An utterance's first sample is stamped pts = now + latency, and its samples count on from
there, so the face made from the audio at pts p is drawn at frame pts p and the audio is played
at p: lips and sound leave together, delayed by exactly `latency`. The latency covers what the
models must wait for (the feature look-ahead, the animator's, one frame), one input chunk, and a
margin for compute and for input that arrives late (network jitter). Input that falls behind by
more than the margin (its next chunk would be due in less than latency - margin) ends the
utterance and starts a new one at now + latency, and the margin grows to cover that lateness
(up to `max_margin_ms`): the session's own jitter buffer (streaming/jitter.py). It relaxes
again, halfway back to `margin_ms` at each new utterance that comes `relax_after_s` after the
last late input.
Input faster than real time is scheduled ahead, at most `max_ahead_s` (then the chain waits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from engine.audio.features import FeatureStream
from engine.audio.live import LiveChunker
from engine.types import SAMPLE_RATE, AudioChunk, FaceParams, FeatureFrame, frame_pts
from streaming.clock import MediaClock
from streaming.jitter import JitterMargin
from streaming.speech import Animator, SpeechModel
from streaming.speech_audio import ScheduledAudio
from streaming.timeline import ParamsTimeline
from streaming.tracks import frame_at

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    margin_ms: int = 10  # the starting margin for compute and late input, beyond what the models wait for
    max_margin_ms: int = 200  # what late input can widen the margin to
    relax_after_s: float = 30.0  # without late input this long, a new utterance narrows a widened margin
    chunk_ms: int = 20  # audio chunk of the chain (and of the input's time granularity)
    max_ahead_s: float = 10.0  # audio scheduled ahead of the clock at most; the input waits beyond
    inbox_frames: int = 64  # per stage

    def __post_init__(self) -> None:
        if (
            not 0 <= self.margin_ms <= self.max_margin_ms
            or self.relax_after_s < 0
            or self.max_ahead_s <= 0
            or self.inbox_frames < 1
        ):
            raise ValueError(
                "pipeline margin must be between 0 ms and max_margin_ms, relax_after_s >= 0, "
                "max_ahead_s > 0 and inbox_frames >= 1"
            )


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
            if self.chunker is not None and p.jitter.is_late(late):
                p.widen_margin(late)
                await self._end()  # the input fell behind real time: start over at now + latency
            if self.chunker is None:
                assert self.start is not None, "the input's InputStart comes first"
                self.next_pts = p.clock.now_samples() + p.latency
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


# ---- the chain --------------------------------------------------------------------------------


class SpeechInput:
    """One utterance's way in. `push` waits while the chain is full; after an interruption or
    a newer input, the input is superseded and its audio is dropped."""

    def __init__(self, pipeline: Pipeline, epoch: int) -> None:
        self._pipeline, self._epoch = pipeline, epoch

    @property
    def superseded(self) -> bool:
        return self._epoch != self._pipeline.epoch

    async def push(self, pcm: np.ndarray) -> None:
        if not self.superseded and len(pcm):
            await self._pipeline.inbox.put(FromInput(self._epoch, InputBlock(pcm)))

    async def end(self) -> None:
        """The utterance is over: what the chain holds is finished and played."""
        if not self.superseded:
            await self._pipeline.inbox.put(FromInput(self._epoch, SpeechEnd()))


class Pipeline:
    """The speech chain of one session. `on_error` is called (once) when a stage fails; the
    session then closes, and no other session is affected."""

    def __init__(
        self,
        speech: SpeechModel,
        clock: MediaClock,
        timeline: ParamsTimeline,
        audio: ScheduledAudio,
        config: PipelineConfig | None = None,
        on_error: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        config = config or PipelineConfig()
        self.speech, self.clock, self.timeline, self.audio, self.config = (
            speech,
            clock,
            timeline,
            audio,
            config,
        )
        self.chunk = SAMPLE_RATE * config.chunk_ms // 1000
        self.jitter = JitterMargin(
            base=SAMPLE_RATE * config.margin_ms // 1000,
            widest=SAMPLE_RATE * config.max_margin_ms // 1000,
            chunk=self.chunk,
            relax_after=int(config.relax_after_s * SAMPLE_RATE),
        )
        self.max_ahead = int(config.max_ahead_s * SAMPLE_RATE)
        self.epoch = 0
        self.interrupts = 0
        self._on_error = on_error
        self._chunks = ChunkStage(self)
        self._stages: list[Processor[Any]] = [self._chunks, FeatureStage(self), AnimatorStage(self)]
        for stage, after in zip(self._stages, self._stages[1:], strict=False):
            stage.next = after
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._start()

    @property
    def latency(self) -> int:
        """Samples from an utterance's arrival to its sound and face, audio and video alike."""
        return frame_pts(self.speech.wait_frames) + self.chunk + self.margin

    @property
    def margin(self) -> int:
        """Samples of the latency kept for compute and late input (widened by late input)."""
        return self.jitter.margin

    @property
    def late_inputs(self) -> int:
        """Utterances restarted because their input fell behind."""
        return self.jitter.late_inputs

    def widen_margin(self, late: int) -> None:
        """Input arrived `late` samples behind its time: later utterances get a margin that covers it."""
        self.jitter.widen(late, self.clock.now_samples())
        log.info(
            "speech input arrived %.0f ms late: the margin is now %.0f ms",
            1000 * late / SAMPLE_RATE,
            1000 * self.margin / SAMPLE_RATE,
        )

    @property
    def inbox(self) -> asyncio.Queue[FromInput]:
        return self._chunks.inbox

    def open_input(self, sample_rate: int, audible: bool = True) -> SpeechInput:
        """A new utterance: whatever the avatar is saying is interrupted first (barge-in)."""
        self.interrupt()
        self.jitter.relax(self.clock.now_samples())
        self.inbox.put_nowait(
            FromInput(self.epoch, InputStart(sample_rate, audible))
        )  # the inbox is empty now
        return SpeechInput(self, self.epoch)

    def interrupt(self) -> None:
        """Barge-in: flushes every stage's queue and state, the scheduled audio and the speech
        of every frame not yet drawn; the face fades back to idle from the next frame."""
        self.epoch += 1
        self.interrupts += 1
        for task in self._tasks:
            task.cancel()  # in-flight worker-thread results are dropped with their task
        self.audio.clear()
        self.timeline.interrupt(self.timeline.last_read + 1)
        self._start()

    def queued(self) -> int:
        """Frames waiting in the stages' inboxes."""
        return sum(stage.inbox.qsize() for stage in self._stages)

    async def close(self) -> None:
        """Stops the stages; inputs still pushing are superseded, and none stays blocked."""
        self._closed = True
        self.epoch += 1
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for stage in self._stages:
            stage.reset()

    def _start(self) -> None:
        if self._closed:
            return
        for stage in self._stages:
            stage.reset()
        self._tasks = [asyncio.create_task(stage.run(), name=type(stage).__name__) for stage in self._stages]
        for task in self._tasks:
            task.add_done_callback(self._stage_done)

    def _stage_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closed:
            return
        error = task.exception()
        assert error is not None, "a stage runs until cancelled or failed"
        log.error("speech stage %s failed", task.get_name(), exc_info=error)
        self._closed = True
        for other in self._tasks:
            other.cancel()
        self._on_error(error)
