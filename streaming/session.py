"""Live sessions: one viewer's peer connection, the media clock all its tracks share, its face
timeline and scheduled audio, and its speech chain (when the avatar can speak)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator

import numpy as np
from aiohttp import WSCloseCode, web
from aiortc import RTCPeerConnection

from engine.pipeline.idle import IdleMotion
from engine.types import SAMPLE_RATE, frame_pts
from streaming.avatars import FaceRenderer, LiveAvatar
from streaming.batching import RenderService
from streaming.clock import FrameGrid, MediaClock
from streaming.limits import TokenBucket
from streaming.metrics import TrackStats
from streaming.pipeline import Pipeline, PipelineConfig
from streaming.speech_audio import ScheduledAudio
from streaming.timeline import ParamsTimeline
from streaming.tracks import RENDER_LEAD, AvatarVideoTrack, SpeechAudioTrack, frame_at

log = logging.getLogger(__name__)

INPUTS = ("websocket", "mic")
BURST_S = 5  # rate limits allow bursts of this many seconds' worth


def token_matches(given: str, token: str) -> bool:
    """In constant time; a string that is not ASCII never matches (compare_digest refuses it)."""
    return given.isascii() and secrets.compare_digest(given, token)


class SessionFrames:
    """A session's video frames: the timeline's parameters, drawn by the avatar's renderer through
    the server's renderer service (with other sessions' frames), each started by RENDER_LEAD
    before its time on `clock` at the latest, as the track draws it."""

    def __init__(
        self, renderer: FaceRenderer, timeline: ParamsTimeline, renders: RenderService, clock: MediaClock
    ) -> None:
        self.renderer, self.timeline, self.renders, self.clock = renderer, timeline, renders, clock
        self.size = renderer.size
        self._joined = False  # counted among the renderer's sessions: from its first frame
        self._closed = False  # to its close

    def final(self, index: int) -> bool:
        return self.timeline.final(index)

    async def frame(self, index: int) -> np.ndarray:
        if not (self._joined or self._closed):
            self.renders.join(self.renderer)
            self._joined = True
        window = self.timeline.params(range(index - self.renderer.past, index + 1))
        start_by = self.clock.time_of(frame_pts(index) - RENDER_LEAD)
        return await self.renders.render(self.renderer, index, window, start_by)

    def close(self) -> None:
        """No more frames: the service stops counting on this session's."""
        if self._joined and not self._closed:
            self.renders.leave(self.renderer)
        self._closed = True


class Session:
    """Its clock starts on the server's frame `grid`, and `renders` draws its frames.
    `on_error` is called when the session's media fails; the server then closes it.
    `controls_per_s` limits its speech controls (start, end, interrupt, say); `close_timeout_s`
    bounds each step of closing it."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        avatar: LiveAvatar,
        grid: FrameGrid,
        renders: RenderService,
        input: str = "websocket",
        echo: bool = False,
        pipeline: PipelineConfig | None = None,
        on_error: Callable[[BaseException], None] = lambda error: None,
        client: str = "",
        controls_per_s: float = 20,
        close_timeout_s: float = 5.0,
    ) -> None:
        if input not in INPUTS:
            raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
        self.id = uuid.uuid4().hex
        self.token = secrets.token_urlsafe()  # the bearer token that lets its viewer feed or close it
        self.pc = pc
        self.avatar = avatar
        self.input = input
        self.echo = echo  # microphone input is played back to the viewer
        self.client = client  # the address that opened it
        self.created = time.time()  # wall-clock seconds
        self.clock = MediaClock(grid.next_start())  # its frames fall due with every other session's
        self.timeline = ParamsTimeline(IdleMotion(avatar.rest, avatar.motion, seed=secrets.randbits(32)))
        self.audio = ScheduledAudio()
        self.stats = TrackStats()
        self.pipeline = (
            Pipeline(
                avatar.speech, self.clock, self.timeline, self.audio, pipeline or PipelineConfig(), on_error
            )
            if avatar.speech
            else None
        )
        self.frames = SessionFrames(avatar.renderer, self.timeline, renders, self.clock)
        self.video = AvatarVideoTrack(self.frames, self.clock, self.stats, on_error)
        self.audio_track = SpeechAudioTrack(self.audio, self.clock, self.stats)
        self.tasks: set[asyncio.Task] = set()  # its own background work, cancelled when it closes
        self.websocket: web.WebSocketResponse | None = None  # its websocket input: one at a time
        self.controls = TokenBucket(controls_per_s, controls_per_s * BURST_S)
        self.saying = False  # a `say` is being synthesised: one at a time
        self.close_timeout_s = close_timeout_s
        self.failed = False

    def authorizes(self, token: str) -> bool:
        return token_matches(token, self.token)

    def run(self, work: Coroutine[object, object, None]) -> None:
        """Runs a coroutine as the session's background work."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def interrupt(self) -> None:
        if self.pipeline:
            self.pipeline.interrupt()

    def speaking(self) -> bool:
        """Speech is queued, or drawn or played from now on."""
        now = self.clock.now_samples()
        queued = self.pipeline.queued() if self.pipeline else 0
        return bool(queued) or self.timeline.speech_until() >= frame_at(now) or self.audio.ahead(now) > 0

    def counters(self) -> dict[str, float]:
        """What this session has counted so far (the server sums them over its sessions)."""
        return {
            "frames_sent": self.stats.frames_sent,
            "frames_dropped": self.stats.frames_dropped,
            "render_seconds": self.stats.render_seconds,
            "audio_packets_sent": self.stats.audio_packets_sent,
            "speech_frames_late": self.timeline.late_frames,
            "audio_seconds_late": self.audio.late_samples / SAMPLE_RATE,
            "interrupts": self.pipeline.interrupts if self.pipeline else 0,
            "speech_inputs_late": self.pipeline.late_inputs if self.pipeline else 0,
        }

    def status(self) -> dict:
        """The session's figures for its viewer."""
        latency = self.pipeline.latency if self.pipeline else 0
        return {
            "session_id": self.id,
            "avatar": self.avatar.name,
            "input": self.input,
            "connection": self.pc.connectionState,
            "speech": self.avatar.speech is not None,
            "speaking": self.speaking(),
            "latency_ms": 1000 * latency / SAMPLE_RATE,
            "audio_queue_ms": 1000 * self.audio.ahead(self.clock.now_samples()) / SAMPLE_RATE,
            **self.counters(),
        }

    async def close(self) -> None:
        """Stops its media first (tracks, peer connection), then its inputs; every step that
        waits on a peer is bounded by close_timeout_s, so a peer that stops answering cannot keep
        a closed session rendering."""
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:  # a task closing its own session must not cancel itself
                task.cancel()
        self.video.stop()
        self.frames.close()
        self.audio_track.stop()
        await self._bounded(self.pc.close(), "its peer connection")
        if self.pipeline:
            await self.pipeline.close()
        if self.websocket is not None:
            await self._bounded(
                self.websocket.close(code=WSCloseCode.GOING_AWAY, message=b"the session closed"),
                "its websocket",
            )

    async def _bounded(self, closing: Coroutine[object, object, object], what: str) -> None:
        try:
            await asyncio.wait_for(closing, self.close_timeout_s)
        except TimeoutError:
            log.warning(
                "session %s: closing %s took over %.1f s; abandoned", self.id, what, self.close_timeout_s
            )
        except Exception:  # aiortc can fail to close a connection whose negotiation broke half way
            log.exception("session %s: closing %s", self.id, what)


class SessionRegistry:
    """The server's live sessions by id. Closing is idempotent: a session closes once, whether
    its viewer, its connection state, an error or the server's shutdown gets there first."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self.closed_counters: Counter[str] = Counter()  # summed over the sessions that closed
        self.opened = 0
        self.rejected = 0  # offers refused: the server was full
        self.errors = 0  # sessions closed by an error in their media
        self._closing: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._sessions)

    def of_client(self, client: str) -> int:
        """Live sessions opened from the address `client`."""
        return sum(session.client == client for session in self._sessions.values())

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def add(self, session: Session) -> None:
        self._sessions[session.id] = session
        self.opened += 1

    def totals(self) -> Counter[str]:
        """Every counter summed over the sessions that closed and those still open."""
        totals = Counter(self.closed_counters)
        for session in self._sessions.values():
            totals.update(session.counters())
        return totals

    def fail(self, session_id: str) -> None:
        """A session's media failed: it closes (soon, from its own task); the others go on."""
        session = self._sessions.get(session_id)
        if session and not session.failed:
            session.failed = True
            self.errors += 1
            task = asyncio.get_running_loop().create_task(self.close(session_id))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None:
            return
        self.closed_counters.update(session.counters())
        await session.close()
        log.info("session %s closed after %.1f s", session_id, time.time() - session.created)

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close(session_id) for session_id in list(self._sessions)))
