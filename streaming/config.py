"""The live server's settings, checked once when made."""
from __future__ import annotations

from dataclasses import dataclass

from engine.pipeline.animator import StreamConfig
from streaming.avatars import EngineOptions
from streaming.pipeline import PipelineConfig


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # this machine only, unless told otherwise
    port: int = 8080  # 0 picks a free port
    avatar: str = "default"  # served when an offer names none; a name under avatars/ or a bundle path
    device: str = "cpu"
    size: int = 256  # video frames are size x size pixels
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

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
        if self.size <= 0 or self.size % 2:
            raise ValueError(f"size must be a positive even number of pixels (4:2:0 video needs even sizes), got {self.size}")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if self.lookahead < 0 or self.stride < 1:
            raise ValueError(f"lookahead must be >= 0 and stride >= 1, got {self.lookahead} and {self.stride}")
        if self.connect_timeout_s <= 0 or self.max_message_bytes < 2 or self.max_text_chars < 1 or self.workers < 0:
            raise ValueError("connect_timeout_s, max_message_bytes and max_text_chars must be positive, workers >= 0")
        self.pipeline  # checks the margin

    @property
    def engine(self) -> EngineOptions:
        return EngineOptions(
            size=self.size, device=self.device, renderer=self.renderer, backend=self.backend,
            lookahead=self.lookahead, stride=self.stride,
        )

    @property
    def pipeline(self) -> PipelineConfig:
        return PipelineConfig(margin_ms=self.margin_ms, max_margin_ms=max(self.margin_ms, PipelineConfig.max_margin_ms))
