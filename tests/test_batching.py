"""streaming/batching.py, the renderer service, and the server's frame grid (streaming/clock.py):
frames asked for together are drawn in one call (at most max_batch, after max_wait_s at the
latest), a failing call fails its own frames only, a batch draws what single frames draw (the
engine's renderer, to a grey level); session clocks start on the grid; four speaking viewers of a
real server get their frames batched, in order and at the frame rate."""

from __future__ import annotations

import asyncio
import threading
import time

import aiohttp
import numpy as np
import pytest
from live_server import BATCHED, GradientRenderer, live_app, read_jaw
from viewers import RECEIVE_TIMEOUT_S, Viewer, open_session, tone_with_pauses

from engine.pipeline.frames import FrameSource
from engine.pipeline.idle import IdleMotion
from engine.types import FPS, SAMPLE_RATE, FaceParams, frame_pts
from streaming.access import SESSIONS
from streaming.app import GRID, ServerConfig
from streaming.avatars import EngineRenderer, FaceRenderer
from streaming.batching import BatchConfig, RenderService
from streaming.clock import FrameGrid

SIZE = 32
SLACK_S = 0.25  # timers on a loaded machine wake this late at most, in these tests
LONG_S = 2.0  # a wait no batch here should need


class LevelRenderer:
    """Draws each frame as one grey level, its window's blink * 100 (so a frame says which request
    it answers), and notes its calls: ("one", index) or ("batch", frames)."""

    past = 0
    size = SIZE

    def __init__(self, fail_level: int | None = None, together: int = 1) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_level = fail_level  # a call drawing this level raises
        self._together = threading.Barrier(together) if together > 1 else None  # calls that must overlap

    def render(self, index: int, window: FaceParams) -> np.ndarray:
        self.calls.append(("one", index))
        return self._draw(window)[0]

    def render_batch(self, windows: FaceParams) -> np.ndarray:
        self.calls.append(("batch", len(windows)))
        return self._draw(windows)

    def _draw(self, windows: FaceParams) -> np.ndarray:
        if self._together:
            self._together.wait(LONG_S)  # raises BrokenBarrierError unless the calls run side by side
        levels = np.round(windows.blink * 100).astype(np.uint8)
        if self.fail_level in levels:
            raise RuntimeError("the renderer failed")
        return np.broadcast_to(levels[:, None, None, None], (len(levels), SIZE, SIZE, 3)).copy()


def level(k: int) -> FaceParams:
    """A one-frame window that LevelRenderer draws at grey level k."""
    params = FaceParams.neutral()
    params.array[0, 6] = k / 100  # blink
    return params


def sessions_of(service: RenderService, renderer: FaceRenderer, n: int) -> None:
    for _ in range(n):
        service.join(renderer)


async def test_frames_asked_together_are_drawn_in_one_call() -> None:
    renderer = LevelRenderer()
    service = RenderService(BatchConfig(max_batch=8, max_wait_s=LONG_S))
    sessions_of(service, renderer, 4)
    start = time.monotonic()
    frames = await asyncio.gather(*(service.render(renderer, k, level(k)) for k in range(4)))
    # Every session's frame is in: the batch goes at once, without waiting for max_wait_s.
    assert time.monotonic() - start < LONG_S / 2
    assert renderer.calls == [("batch", 4)]
    assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 2, 3]  # each its own frame
    assert (service.stats.batches, service.stats.frames) == (1, 4)


async def test_a_batch_holds_max_batch_frames_at_most() -> None:
    renderer = LevelRenderer()
    service = RenderService(BatchConfig(max_batch=2, max_wait_s=0.1))
    sessions_of(service, renderer, 5)
    frames = await asyncio.gather(*(service.render(renderer, k, level(k)) for k in range(5)))
    assert renderer.calls == [("batch", 2), ("batch", 2), ("one", 4)]  # the last after max_wait_s
    assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("max_wait_s", [0.0, 0.05, 0.2])
async def test_a_batch_waits_for_the_others_max_wait_s_at_most(max_wait_s: float) -> None:
    renderer = LevelRenderer()
    service = RenderService(BatchConfig(max_wait_s=max_wait_s))
    sessions_of(service, renderer, 3)  # two of them never ask
    start = time.monotonic()
    frame = await service.render(renderer, 7, level(7))
    waited = time.monotonic() - start
    assert max_wait_s <= waited + 0.002 and waited < max_wait_s + SLACK_S  # timers may round down 1 ms
    assert renderer.calls == [("one", 7)] and frame[0, 0, 0] == 7


async def test_a_batch_goes_when_one_of_its_frames_must_start() -> None:
    renderer = LevelRenderer()
    service = RenderService(BatchConfig(max_wait_s=LONG_S))
    sessions_of(service, renderer, 3)
    start = time.monotonic()
    await service.render(renderer, 1, level(1), start_by=start - 0.01)  # late already: no wait
    assert time.monotonic() - start < LONG_S / 2
    start = time.monotonic()
    first = asyncio.ensure_future(service.render(renderer, 2, level(2)))
    await asyncio.sleep(0)
    await service.render(renderer, 3, level(3), start_by=start + 0.1)  # the earliest start sets the wait
    waited = time.monotonic() - start
    assert 0.1 <= waited + 0.002 and waited < 0.1 + SLACK_S
    assert (await first)[0, 0, 0] == 2 and renderer.calls == [("one", 1), ("batch", 2)]


async def test_a_lone_session_and_max_batch_1_never_wait() -> None:
    renderer = LevelRenderer()
    for service, sessions in ((RenderService(BatchConfig(max_wait_s=LONG_S)), 1),
                              (RenderService(BatchConfig(max_batch=1, max_wait_s=LONG_S)), 3)):
        sessions_of(service, renderer, sessions)
        start = time.monotonic()
        await asyncio.gather(*(service.render(renderer, k, level(k)) for k in range(sessions)))
        assert time.monotonic() - start < LONG_S / 2
    assert renderer.calls == [("one", 0), ("one", 0), ("one", 1), ("one", 2)]


async def test_a_session_leaving_sends_the_batch_that_waited_for_it() -> None:
    renderer = LevelRenderer()
    service = RenderService(BatchConfig(max_wait_s=LONG_S))
    sessions_of(service, renderer, 2)
    start = time.monotonic()
    drawing = asyncio.ensure_future(service.render(renderer, 1, level(1)))
    await asyncio.sleep(0.01)
    service.leave(renderer)
    assert (await drawing)[0, 0, 0] == 1 and time.monotonic() - start < LONG_S / 2


async def test_a_batch_is_split_into_calls_drawn_side_by_side() -> None:
    renderer = LevelRenderer(together=2)  # each call waits until the other runs too
    service = RenderService(BatchConfig(calls=2))
    sessions_of(service, renderer, 5)
    frames = await asyncio.gather(*(service.render(renderer, k, level(k)) for k in range(5)))
    assert sorted(renderer.calls) == [("batch", 2), ("batch", 3)]
    assert [int(f[0, 0, 0]) for f in frames] == [0, 1, 2, 3, 4]


async def test_a_failing_call_fails_only_its_own_frames() -> None:
    failing, other = LevelRenderer(fail_level=1), LevelRenderer()  # two avatars
    service = RenderService(BatchConfig(max_wait_s=LONG_S, calls=2))
    sessions_of(service, failing, 4)
    sessions_of(service, other, 2)
    results = await asyncio.gather(
        *(service.render(failing, k, level(k)) for k in range(4)),
        *(service.render(other, k, level(k)) for k in (1, 2)),
        return_exceptions=True,
    )
    # failing's batch [0, 1, 2, 3] is drawn as the calls [0, 1] (it fails) and [2, 3]
    assert [type(r) for r in results[:2]] == [RuntimeError, RuntimeError]
    assert [int(r[0, 0, 0]) for r in results[2:]] == [2, 3, 1, 2]
    frame = await service.render(failing, 5, level(5))  # the service goes on
    assert frame[0, 0, 0] == 5


async def test_a_session_that_stops_waiting_does_not_break_the_batch() -> None:
    renderer = LevelRenderer()
    service = RenderService(BatchConfig(max_wait_s=0.05))
    sessions_of(service, renderer, 4)
    waiting = [asyncio.ensure_future(service.render(renderer, k, level(k))) for k in range(3)]
    await asyncio.sleep(0)
    waiting[1].cancel()  # its session closed while its frame waited in the batch
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert renderer.calls == [("batch", 2)] and [int(results[k][0, 0, 0]) for k in (0, 2)] == [0, 2]

    # ... or while it was being drawn: the others get theirs.
    renderer.calls.clear()
    drawing = [asyncio.ensure_future(service.render(renderer, k, level(k))) for k in range(4)]
    await asyncio.sleep(0)  # the batch was sent: all four sessions asked
    drawing[0].cancel()
    results = await asyncio.gather(*drawing, return_exceptions=True)
    assert renderer.calls == [("batch", 4)] and [int(r[0, 0, 0]) for r in results[1:]] == [1, 2, 3]


@pytest.mark.parametrize("kind", ["composite", "r2v"])
async def test_a_batch_draws_what_single_frames_draw(avatar, one_torch_thread, kind: str) -> None:
    """The engine's renderer for the built-in avatar (R2V with its past frames, or the compositor):
    frames drawn in a batch through the service equal the frames drawn one by one."""
    renderer = EngineRenderer(FrameSource(avatar, renderer=kind, size=64, live=True))
    idle = IdleMotion(avatar.rest_params, avatar.motion, seed=5)
    indices = [3, 17, 40, 41]
    windows = [idle.params(np.arange(i - renderer.past, i + 1)) for i in indices]
    single = [renderer.render(i, w) for i, w in zip(indices, windows, strict=True)]
    service = RenderService(BatchConfig(max_wait_s=LONG_S))
    sessions_of(service, renderer, len(indices))
    batched = await asyncio.gather(
        *(service.render(renderer, i, w) for i, w in zip(indices, windows, strict=True))
    )
    assert service.stats.batches == 1 and service.stats.frames == len(indices)
    for one, many in zip(single, batched, strict=True):
        assert one.shape == many.shape == (64, 64, 3) and many.dtype == np.uint8
        assert np.abs(one.astype(int) - many.astype(int)).max() <= 1


# ---- the frame grid ----------------------------------------------------------------------------


def test_the_grid_starts_clocks_on_its_next_point() -> None:
    grid = FrameGrid(epoch=100.0)
    for now in (100.0, 100.001, 100.5, 101.0333, 250.98):
        start = grid.next_start(now)
        periods = (start - grid.epoch) * FPS
        assert abs(periods - round(periods)) < 1e-6 and now <= start + 1e-9 < now + 1 / FPS


@pytest.mark.usefixtures("loopback_ice")
async def test_sessions_opened_at_different_times_have_their_frames_on_one_grid(
    http: aiohttp.ClientSession,
) -> None:
    async with live_app(ServerConfig(port=0, size=SIZE)) as (url, app):
        for pause_s in (0.0, 0.013, 0.051):
            await asyncio.sleep(pause_s)
            await open_session(http, url)
        grid = app[GRID]
        starts = [session.clock.start for session in app[SESSIONS]]
    assert len(starts) == 3
    for start in starts:
        periods = (start - grid.epoch) * FPS
        assert abs(periods - round(periods)) < 1e-6  # whole frame periods from the epoch
    # frame i of one session and frame j of another fall due less than a sample apart when the
    # grid says they are the same instant
    a, b = sorted(starts)[0], sorted(starts)[-1]
    offset = round((b - a) * FPS)
    for j in range(0, 3 * FPS, 7):
        due_a, due_b = a + frame_pts(j + offset) / SAMPLE_RATE, b + frame_pts(j) / SAMPLE_RATE
        assert abs(due_a - due_b) < 1 / SAMPLE_RATE


# ---- the live server --------------------------------------------------------------------------


VIEWERS = 4
RECORD_S = 3.0
MIN_FPS = 0.6 * FPS  # loose: the 2-core test machine is shared; this checks correctness, not speed


@pytest.mark.usefixtures("loopback_ice")
async def test_four_speaking_viewers_get_batched_frames_in_order_and_on_time(
    http: aiohttp.ClientSession,
) -> None:
    # One worker thread: a batch is drawn as one call, so the calls show every batch (with two,
    # a batch of two frames would be drawn as two calls of one, side by side).
    config = ServerConfig(port=0, size=SIZE * 2, workers=1, max_sessions=VIEWERS)
    async with live_app(config) as (url, app):
        viewers = [Viewer() for _ in range(VIEWERS)]
        try:
            for viewer in viewers:
                await viewer.connect(http, url)
            sockets = [await v.speak(http, url, tone_with_pauses(0.2, RECORD_S)) for v in viewers]
            received = await asyncio.gather(*(frames_of(viewer, RECORD_S) for viewer in viewers))
            async with http.get(f"{url}/metrics") as response:
                metrics = dict(
                    line.split(" ") for line in (await response.text()).splitlines() if line[0] != "#"
                )
            for ws in sockets:
                await ws.close()
        finally:
            for viewer in viewers:
                await viewer.pc.close()
    batches = float(metrics["avatar_render_batches_total"])
    frames = float(metrics["avatar_render_batch_frames_total"])
    print(f"{frames:.0f} frames in {batches:.0f} batches; fps {[len(v) / RECORD_S for v in received]}")
    # frames drawn with others (on a busy machine late frames go alone: they never wait)
    assert frames - batches >= 10, (batches, frames)
    for video in received:
        pts = [p for p, _ in video]
        assert all(a < b for a, b in zip(pts, pts[1:], strict=False)), pts  # in order
        assert len(video) / RECORD_S >= MIN_FPS, len(video)  # on time
        assert max(jaw for _, jaw in video) > 0.5  # its own speech moved its lips


async def frames_of(viewer: Viewer, seconds: float) -> list[tuple[int, float]]:
    """(pts, jawOpen) of the video frames a viewer receives in `seconds`."""
    track = await asyncio.wait_for(viewer.tracks["video"], RECEIVE_TIMEOUT_S)
    frames = []
    deadline = time.monotonic() + seconds
    async with asyncio.timeout(seconds + RECEIVE_TIMEOUT_S):
        while time.monotonic() < deadline:
            frame = await track.recv()
            frames.append((frame.pts, read_jaw(frame.to_ndarray(format="rgb24"))))
    return frames


def test_gradient_renderer_batches_draw_what_it_draws_alone() -> None:
    """The live tests' renderer: a batch's frames are its single frames, bar code aside."""
    renderer = GradientRenderer(SIZE * 2)
    windows = FaceParams(np.stack([level(k).array[0] for k in range(3)]))
    batch = renderer.render_batch(windows)
    for k in range(3):
        assert np.array_equal(batch[k], renderer.render(BATCHED, windows[k]))
