"""The live server's settings, checked once when made. docs/SECURITY.md says what each limit
protects against."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from engine.pipeline.animator import StreamConfig
from engine.pipeline.frames import DEFAULT_SIZE
from streaming.avatars import EngineOptions
from streaming.batching import BatchConfig
from streaming.pipeline import PipelineConfig


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity; a container's CPU set included)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # this machine only, unless told otherwise
    port: int = 8080  # 0 picks a free port
    avatar: str = "default"  # served when an offer names none; a name under avatars/ or a bundle path
    device: str = "cpu"
    size: int = DEFAULT_SIZE  # video frames are size x size pixels: a head-and-shoulders portrait
    max_sessions: int = 4
    backend: str = "eager"  # R2V inference backend (engine/backends)
    renderer: str = "auto"  # "auto" (R2V when the avatar has weights), "r2v" or "composite"
    # FACIAL-GAN streaming (engine/pipeline/animator.py), its defaults: a frame more look-ahead
    # smooths the lips and adds 33 ms; a frame more stride makes fewer, costlier updates and adds 33 ms.
    lookahead: int = StreamConfig.lookahead
    stride: int = StreamConfig.stride
    margin_ms: int = PipelineConfig.margin_ms
    connect_timeout_s: float = 30.0  # a session whose viewer has not connected by then is closed
    max_message_bytes: int = 1 << 20  # websocket messages (32 s of 16 kHz PCM16)
    max_text_chars: int = 2000  # text of one `say`
    # Threads for the sessions' CPU work (rendering, models, codecs); 0: one per CPU core. More
    # threads than cores only fight over Python's GIL: on 2 cores, 3 speaking sessions held 30 fps
    # with 2 threads, 26 with 4, 12-14 with Python's default of 6 (bench sessions' measurement,
    # the thread count varied).
    workers: int = 0
    # The renderer service (streaming/batching.py) draws the frames due together as one batch of
    # at most batch_max (1: no batching), waiting at most batch_wait_ms for them; the cluster's
    # batcher deployment takes the same.
    batch_max: int = 8
    batch_wait_ms: float = 10.0

    # ---- limits against hostile or broken clients (docs/SECURITY.md) ----
    max_body_bytes: int = 64 * 1024  # an HTTP request body (offers and says)
    max_sdp_bytes: int = 32 * 1024  # an offer's SDP; a browser's is 4-8 KiB
    max_candidates: int = 32  # ICE candidates in an offer (each one is a connectivity check)
    max_sessions_per_client: int = 4  # live sessions of one client address
    offers_per_minute: int = 60  # offers one client address may make in a minute
    max_session_s: float = 3600.0  # a session's longest life; its viewer may open another
    # The sites whose pages may use the server (exact origins, e.g. "https://app.example"); the
    # server's own page always may. Requests without an Origin (apps, curl) are not browsers' pages.
    allowed_origins: tuple[str, ...] = ()
    # Host header names the server answers to; empty: on a loopback address, loopback names only
    # (against DNS rebinding), elsewhere any.
    allowed_hosts: tuple[str, ...] = ()
    max_messages_per_s: int = 200  # websocket messages a second (bursts of 5 s allowed)
    max_controls_per_s: int = 20  # start/end/interrupt/say a second per session (bursts of 5 s)
    max_buffered_audio_s: float = 30.0  # websocket audio waiting for the speech chain (which holds 10 s more)
    max_say_s: float = 120.0  # speech one `say` may make
    ws_heartbeat_s: float = 20.0  # websocket ping interval; a peer that stops answering is closed
    close_timeout_s: float = 5.0  # each step of closing a session (websocket, peer connection)
    avatar_retry_s: float = 30.0  # an avatar that failed to load is not tried again for this long
    # STUN server for public addresses (host:port; "" for none), resolved once at startup; a
    # loopback server uses none.
    stun_server: str = "stun.l.google.com:19302"

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.size <= 0 or self.size % 2:
            raise ValueError(
                f"size must be a positive even number of pixels (4:2:0 video needs even sizes), "
                f"got {self.size}"
            )
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if self.lookahead < 0 or self.stride < 1:
            raise ValueError(
                f"lookahead must be >= 0 and stride >= 1, got {self.lookahead} and {self.stride}"
            )
        if self.max_message_bytes < 2 or self.workers < 0 or self.batch_wait_ms < 0:
            raise ValueError("max_message_bytes must be at least 2, workers and batch_wait_ms >= 0")
        positive = [
            f.name
            for f in fields(self)
            if f.type in ("int", "float")
            and f.name not in ("port", "workers", "lookahead", "margin_ms", "batch_wait_ms")
        ]
        if bad := [name for name in positive if getattr(self, name) <= 0]:
            raise ValueError(f"{', '.join(bad)} must be positive")
        self.pipeline  # checks the margin  # noqa: B018

    @property
    def engine(self) -> EngineOptions:
        return EngineOptions(
            size=self.size, device=self.device, renderer=self.renderer, backend=self.backend,
            lookahead=self.lookahead, stride=self.stride,
        )

    @property
    def batching(self) -> BatchConfig:
        """On a CPU a batch is drawn as one call per worker thread, so it uses every core."""
        calls = (self.workers or cpu_cores()) if self.device == "cpu" else 1
        return BatchConfig(self.batch_max, self.batch_wait_ms / 1000, calls)

    @property
    def pipeline(self) -> PipelineConfig:
        return PipelineConfig(
            margin_ms=self.margin_ms, max_margin_ms=max(self.margin_ms, PipelineConfig.max_margin_ms)
        )
