"""A session's speech chain: audio in -> face parameters on the session's frame grid, plus the
audio to play, both stamped on the session's one media clock.

    SpeechInput.push(pcm) -> [chunker] -AudioChunk-> [features] -FeatureFrame-> [animator] -> ParamsTimeline
                                 '--> ScheduledAudio (what the audio track plays)

Each stage is a Processor with one job: a task taking typed frames from a bounded inbox, doing its
CPU work in a worker thread, pushing results to the next inbox (so a full stage slows the one
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
(up to `max_margin_ms`): the session's own jitter buffer. It relaxes again, halfway back to
`margin_ms` at each new utterance that comes `relax_after_s` after the last late input.
Input faster than real time is scheduled ahead, at most `max_ahead_s` (then the chain waits).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from engine.audio.features import FeatureStream
from engine.audio.live import LiveChunker
from engine.types import SAMPLE_RATE, AudioChunk, FaceParams, FeatureFrame, frame_pts
from streaming.clock import MediaClock
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
        if not 0 <= self.margin_ms <= self.max_margin_ms or self.relax_after_s < 0 or self.max_ahead_s <= 0 or self.inbox_frames < 1:
            raise ValueError("pipeline margin must be between 0 ms and max_margin_ms, relax_after_s >= 0, max_ahead_s > 0 and inbox_frames >= 1")


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


# ---- stages -----------------------------------------------------------------------------------


class Processor:
    """One job of the chain: frames from a bounded inbox, results pushed to the next stage."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.inbox: asyncio.Queue = asyncio.Queue(pipeline.config.inbox_frames)
        self.next: Processor | None = None

    async def run(self) -> None:
        while True:
            await self.process(await self.inbox.get())

    async def process(self, frame: object) -> None:
        raise NotImplementedError

    async def push(self, frame: object) -> None:
        await self.next.inbox.put(frame)

    def reset(self) -> None:
        """Drops the queued frames and the current utterance's state."""
        while not self.inbox.empty():
            self.inbox.get_nowait()


class ChunkStage(Processor):
    """Input blocks -> AudioChunks at SAMPLE_RATE stamped on the session clock; audible ones are
    scheduled for the audio track."""

    def reset(self) -> None:
        super().reset()
        self.chunker: LiveChunker | None = None
        self.start: InputStart | None = None
        self.next_pts = 0

    async def process(self, item: tuple[int, object]) -> None:
        epoch, frame = item
        if epoch != self.pipeline.epoch:
            return  # from an input superseded since it queued this
        if isinstance(frame, InputStart):
            await self._end()
            self.start = frame
        elif isinstance(frame, InputBlock):
            p = self.pipeline
            late = p.clock.now_samples() + p.latency - self.next_pts  # behind its time of arrival
            if self.chunker is not None and late > p.margin:
                p.widen_margin(late)
                await self._end()  # the input fell behind real time: start over at now + latency
            if self.chunker is None:
                self.next_pts = p.clock.now_samples() + p.latency
                self.chunker = LiveChunker(self.start.sample_rate, p.config.chunk_ms, self.next_pts)
            for chunk in await asyncio.to_thread(self.chunker.push, frame.pcm):
                await self._emit(chunk)
        elif isinstance(frame, SpeechEnd):
            await self._end()

    async def _emit(self, chunk: AudioChunk) -> None:
        p = self.pipeline
        await p.clock.sleep_until(chunk.pts - p.latency - p.max_ahead)
        p.timeline.expect(range(frame_at(chunk.pts), frame_at(chunk.pts + len(chunk.pcm) - 1) + 1))
        if self.start.audible:
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


class FeatureStage(Processor):
    """AudioChunks -> FeatureFrames (lists, as the stream makes them final)."""

    def reset(self) -> None:
        super().reset()
        self.stream: FeatureStream | None = None

    async def process(self, frame: AudioChunk | SpeechEnd) -> None:
        if isinstance(frame, AudioChunk):
            if self.stream is None:
                self.stream = self.pipeline.speech.extractor.stream()
            features = await asyncio.to_thread(self.stream.push, frame)
        else:
            features = await asyncio.to_thread(self.stream.flush) if self.stream else []
            self.stream = None
        if features:
            await self.push(features)
        if isinstance(frame, SpeechEnd):
            await self.push(frame)


class AnimatorStage(Processor):
    """FeatureFrames -> FaceParams written to the timeline at their session frame indices."""

    def reset(self) -> None:
        super().reset()
        self.animator: Animator | None = None
        self.next_frame = 0  # session frame of the animator's next output row

    async def process(self, frame: list[FeatureFrame] | SpeechEnd) -> None:
        p = self.pipeline
        if isinstance(frame, list):
            if self.animator is None:
                # A feature stream's frames lie on the session's frame grid: pts = frame_pts(index).
                self.next_frame = frame_at(frame[0].pts)
                self.animator = p.speech.new_animator(self.next_frame, p.timeline.idle)
            params = await asyncio.to_thread(self.animator.push, np.stack([f.values for f in frame]))
        else:
            params = await asyncio.to_thread(self.animator.flush) if self.animator else FaceParams.neutral(0)
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
            await self._pipeline.inbox.put((self._epoch, InputBlock(pcm)))

    async def end(self) -> None:
        """The utterance is over: what the chain holds is finished and played."""
        if not self.superseded:
            await self._pipeline.inbox.put((self._epoch, SpeechEnd()))


class Pipeline:
    """The speech chain of one session. `on_error` is called (once) when a stage fails; the
    session then closes, and no other session is affected."""

    def __init__(
        self,
        speech: SpeechModel,
        clock: MediaClock,
        timeline: ParamsTimeline,
        audio: ScheduledAudio,
        config: PipelineConfig = PipelineConfig(),
        on_error: Callable[[BaseException], None] = lambda error: None,
    ) -> None:
        self.speech, self.clock, self.timeline, self.audio, self.config = speech, clock, timeline, audio, config
        self.base_margin = SAMPLE_RATE * config.margin_ms // 1000  # samples
        self.widest_margin = SAMPLE_RATE * config.max_margin_ms // 1000
        self.margin = self.base_margin  # widened by late input, relaxed after a quiet spell
        self.chunk = SAMPLE_RATE * config.chunk_ms // 1000
        self.late_inputs = 0  # utterances restarted because their input fell behind
        self._late_at = 0  # samples on the clock: the last late input
        self.max_ahead = int(config.max_ahead_s * SAMPLE_RATE)
        self.epoch = 0
        self.interrupts = 0
        self._on_error = on_error
        self._stages = [ChunkStage(self), FeatureStage(self), AnimatorStage(self)]
        for stage, after in zip(self._stages, self._stages[1:]):
            stage.next = after
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._start()

    @property
    def latency(self) -> int:
        """Samples from an utterance's arrival to its sound and face, audio and video alike."""
        return frame_pts(self.speech.wait_frames) + self.chunk + self.margin

    def widen_margin(self, late: int) -> None:
        """Input arrived `late` samples behind its time: later utterances get a margin that covers
        it (one chunk more, within max_margin_ms)."""
        self.late_inputs += 1
        self.margin = max(self.margin, min(self.widest_margin, late + self.chunk))
        self._late_at = self.clock.now_samples()
        log.info("speech input arrived %.0f ms late: the margin is now %.0f ms", 1000 * late / SAMPLE_RATE, 1000 * self.margin / SAMPLE_RATE)

    @property
    def inbox(self) -> asyncio.Queue:
        return self._stages[0].inbox

    def open_input(self, sample_rate: int, audible: bool = True) -> SpeechInput:
        """A new utterance: whatever the avatar is saying is interrupted first (barge-in)."""
        self.interrupt()
        self._relax_margin()
        self.inbox.put_nowait((self.epoch, InputStart(sample_rate, audible)))  # the inbox is empty now
        return SpeechInput(self, self.epoch)

    def _relax_margin(self) -> None:
        """Halfway back to the configured margin, once input has been on time for relax_after_s."""
        now = self.clock.now_samples()
        if self.margin > self.base_margin and now - self._late_at >= self.config.relax_after_s * SAMPLE_RATE:
            self.margin = (self.margin + self.base_margin) // 2
            self._late_at = now  # the next step after another quiet spell

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

    def _stage_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or self._closed:
            return
        error = task.exception()
        log.error("speech stage %s failed", task.get_name(), exc_info=error)
        self._closed = True
        for other in self._tasks:
            other.cancel()
        self._on_error(error)
