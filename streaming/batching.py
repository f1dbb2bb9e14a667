"""The renderer service: every session's video frames, drawn in batches across sessions.

Session clocks sit on the server's frame grid (streaming/clock.py), so the frames of all sessions
fall due at the same instants. A session asks for frame `index` with its parameter window
(`render`); the service collects the frames asked of each renderer (one per avatar) and draws
them together, as one batch, when the first of these comes:
- the batch holds `max_batch` frames;
- it holds a frame of every session drawing with that renderer (a session asks for one frame at
  a time, so no other frame can join);
- `max_wait_s` have passed since its first frame;
- one of its frames must start drawing (`start_by`): a frame that is late already never waits,
  so batching costs nothing when the server falls behind.
A batch is drawn in the loop's worker threads as `calls` renderer calls side by side: on a GPU
one call (`FaceRenderer.render_batch`), on a CPU one per worker thread, since a batch drawn by one
thread would leave the other cores idle (a batch costs a CPU as much per frame as single frames
do). A lone frame is drawn by `FaceRenderer.render`. A failing call fails the frames in it only;
a session that stops waiting (it closed) just does not get its frame.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from engine.types import FaceParams
from streaming.avatars import FaceRenderer


@dataclass(frozen=True)
class BatchConfig:
    max_batch: int = 8  # frames in a batch at most; 1: every frame drawn alone, at once (no batching)
    max_wait_s: float = 0.010  # a batch goes this long after its first frame at the latest
    calls: int = 1  # renderer calls a batch is split into, drawn side by side in worker threads

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.calls < 1 or not self.max_wait_s >= 0:
            raise ValueError(
                f"max_batch and calls must be at least 1 and max_wait_s >= 0, got {self.max_batch}, "
                f"{self.calls} and {self.max_wait_s}"
            )


@dataclass
class BatchStats:
    """Counted by the service as it draws."""

    batches: int = 0  # renderer calls made
    frames: int = 0  # frames drawn in them (frames / batches: the mean batch size)
    seconds: float = 0.0  # time spent in them


@dataclass
class _Request:
    index: int
    window: FaceParams  # frames index - past .. index
    drawn: asyncio.Future[np.ndarray]


@dataclass
class _Batch:
    renderer: FaceRenderer
    send_at: float  # time.monotonic() seconds
    requests: list[_Request] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class RenderService:
    """Draws the frames sessions ask for, in batches per renderer. Made and used on one running
    event loop; `executor` runs the renderer calls (None: the loop's default executor)."""

    def __init__(self, config: BatchConfig | None = None, executor: Executor | None = None) -> None:
        self.config = config or BatchConfig()
        self.stats = BatchStats()
        self._executor = executor
        self._open: dict[FaceRenderer, _Batch] = {}  # the batch collecting each renderer's frames
        self._sessions: Counter[FaceRenderer] = Counter()  # sessions drawing with each renderer
        self._drawing: set[asyncio.Task] = set()

    def join(self, renderer: FaceRenderer) -> None:
        """A session draws its frames with `renderer` from now on (until `leave`)."""
        self._sessions[renderer] += 1

    def leave(self, renderer: FaceRenderer) -> None:
        self._sessions[renderer] -= 1
        if self._sessions[renderer] <= 0:
            del self._sessions[renderer]
        batch = self._open.get(renderer)
        if batch and self._full(batch):  # the batch waited for the session that left
            self._send(batch)

    async def render(
        self, renderer: FaceRenderer, index: int, window: FaceParams, start_by: float = math.inf
    ) -> np.ndarray:
        """window: params of frames index - renderer.past .. index -> [size, size, 3] uint8 RGB
        of frame `index`, drawn in a batch with other sessions' frames; its drawing starts by
        `start_by` (time.monotonic() seconds) at the latest."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        batch = self._open.get(renderer)
        if batch is None:
            batch = self._open[renderer] = _Batch(renderer, now + self.config.max_wait_s)
        request = _Request(index, window, loop.create_future())
        batch.requests.append(request)
        if self._full(batch) or start_by <= now:
            self._send(batch)
        elif batch.timer is None or start_by < batch.send_at:
            batch.send_at = min(batch.send_at, start_by)
            if batch.timer:
                batch.timer.cancel()
            batch.timer = loop.call_later(batch.send_at - now, self._send, batch)
        return await request.drawn

    def close(self) -> None:
        """Stops drawing: the batches collecting and being drawn are dropped."""
        for batch in list(self._open.values()):
            if batch.timer:
                batch.timer.cancel()
            for request in batch.requests:
                request.drawn.cancel()
        self._open.clear()
        for task in list(self._drawing):
            task.cancel()

    def _full(self, batch: _Batch) -> bool:
        sessions = max(1, self._sessions[batch.renderer])
        return len(batch.requests) >= min(self.config.max_batch, sessions)

    def _send(self, batch: _Batch) -> None:
        """The batch goes: split into `calls` parts, each drawn in a worker thread."""
        if self._open.get(batch.renderer) is not batch:
            return  # already sent
        del self._open[batch.renderer]
        if batch.timer:
            batch.timer.cancel()
        requests = [r for r in batch.requests if not r.drawn.done()]  # a closed session's frame is dropped
        parts = min(self.config.calls, len(requests))
        for k in range(parts):
            part = requests[k * len(requests) // parts : (k + 1) * len(requests) // parts]
            task = asyncio.get_running_loop().create_task(self._draw(batch.renderer, part))
            self._drawing.add(task)
            task.add_done_callback(self._drawing.discard)

    async def _draw(self, renderer: FaceRenderer, requests: list[_Request]) -> None:
        loop = asyncio.get_running_loop()
        try:
            frames, seconds = await loop.run_in_executor(self._executor, _call, renderer, requests)
        except Exception as error:  # this batch's frames fail, and only they
            for request in requests:
                if not request.drawn.done():
                    request.drawn.set_exception(error)
            return
        self.stats.batches += 1
        self.stats.frames += len(requests)
        self.stats.seconds += seconds
        for request, rgb in zip(requests, frames, strict=True):
            if not request.drawn.done():
                request.drawn.set_result(rgb)


def _call(renderer: FaceRenderer, requests: list[_Request]) -> tuple[np.ndarray, float]:
    """One renderer call (in a worker thread) -> frames [B, size, size, 3] uint8, seconds it took."""
    start = time.perf_counter()
    if len(requests) == 1:
        frames = renderer.render(requests[0].index, requests[0].window)[None]
    else:
        frames = renderer.render_batch(FaceParams(np.concatenate([r.window.array for r in requests])))
    if frames.shape[0] != len(requests):
        raise ValueError(f"the renderer drew {frames.shape[0]} frames for a batch of {len(requests)}")
    return frames, time.perf_counter() - start
