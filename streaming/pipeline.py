"""A session's speech chain: audio in -> face parameters on the session's frame grid, plus the
audio to play, both stamped on the session's one media clock.

    SpeechInput.push(pcm) -> [chunker] -AudioChunk-> [features] -FeatureFrame-> [animator] -> ParamsTimeline
                                 '--> ScheduledAudio (what the audio track plays)

Each stage is a Processor (streaming/stages.py) with one job: a task taking typed frames from a
bounded inbox, doing its CPU work in a worker thread (one job in flight per stage, even across
interruptions), pushing results to the next inbox (so a full stage slows the one before it, back
to the input: the websocket stops reading). Control frames travel in order with
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
utterance, and the margin grows to cover that lateness (up to `max_margin_ms`): the session's own
jitter buffer (streaming/jitter.py). A new utterance starts on the input's own schedule, later by
what the margin grew (at now + latency if even the widest margin does not cover it). It relaxes
again, halfway back to `margin_ms` at each new utterance that comes `relax_after_s` after the
last late input.
Input faster than real time is scheduled ahead, at most `max_ahead_s` (then the chain waits).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.types import SAMPLE_RATE, frame_pts
from streaming.clock import MediaClock
from streaming.jitter import JitterMargin
from streaming.speech import SpeechModel
from streaming.speech_audio import ScheduledAudio
from streaming.stages import (
    AnimatorStage,
    ChunkStage,
    FeatureStage,
    FromInput,
    InputBlock,
    InputStart,
    Processor,
    SpeechEnd,
)
from streaming.timeline import ParamsTimeline

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
