"""What the server counts, and GET /metrics in the Prometheus text exposition format (0.0.4)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.types import SAMPLE_RATE

if TYPE_CHECKING:  # the sessions count with TrackStats: no import at run time, no cycle
    from streaming.batching import BatchStats
    from streaming.session import Session

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "avatar_"


@dataclass
class TrackStats:
    """Counted by a session's media tracks as they send."""

    frames_sent: int = 0
    frames_dropped: int = 0  # frames skipped because rendering fell behind the clock
    render_seconds: float = 0.0  # from asking for a frame to having it (its batch's wait included), summed
    audio_packets_sent: int = 0


@dataclass(frozen=True)
class Metric:
    name: str  # without PREFIX; counters end in _total
    kind: str  # "counter" or "gauge"
    help: str
    value: float


def server_metrics(
    live: Iterable[Session],
    totals: Counter[str],
    opened: int,
    rejected: int,
    errors: int,
    batches: BatchStats,
) -> list[Metric]:
    """The server's figures: gauges over its live sessions, counters summed over every session
    (`totals`, as SessionRegistry.totals makes them), the registry's own counts and what the
    renderer service drew (`batches`)."""
    live = list(live)
    latencies = [s.pipeline.latency / s.clock.sample_rate for s in live if s.pipeline]
    ahead = sum(s.audio.ahead(s.clock.now_samples()) for s in live) / SAMPLE_RATE
    return [
        Metric("sessions", "gauge", "Live sessions.", len(live)),
        Metric(
            "sessions_speaking",
            "gauge",
            "Live sessions whose avatar is speaking.",
            sum(s.speaking() for s in live),
        ),
        Metric(
            "pipeline_latency_seconds",
            "gauge",
            "Largest speech-to-output delay of the live sessions (audio and video alike).",
            max(latencies, default=0.0),
        ),
        Metric(
            "audio_queue_seconds",
            "gauge",
            "Speech audio scheduled ahead of the clock, summed over the live sessions.",
            ahead,
        ),
        Metric(
            "pipeline_queued_frames",
            "gauge",
            "Frames waiting in the speech stages' queues, summed over the live sessions.",
            sum(s.pipeline.queued() for s in live if s.pipeline),
        ),
        Metric("sessions_opened_total", "counter", "Sessions opened.", opened),
        Metric(
            "sessions_rejected_total",
            "counter",
            "Offers refused because the server, or the client's share of it, was full.",
            rejected,
        ),
        Metric("session_errors_total", "counter", "Sessions closed by an error in their media.", errors),
        Metric("frames_sent_total", "counter", "Video frames sent.", totals["frames_sent"]),
        Metric(
            "frames_dropped_total",
            "counter",
            "Video frames skipped because rendering fell behind the clock.",
            totals["frames_dropped"],
        ),
        Metric(
            "render_seconds_total",
            "counter",
            "Time from asking for each video frame sent to having it drawn (its batch's wait included).",
            totals["render_seconds"],
        ),
        Metric(
            "render_batches_total",
            "counter",
            "Renderer calls made by the renderer service, each drawing a batch of frames of one avatar.",
            batches.batches,
        ),
        Metric(
            "render_batch_frames_total",
            "counter",
            "Frames drawn in those calls (per call: the mean batch size).",
            batches.frames,
        ),
        Metric(
            "render_batch_seconds_total",
            "counter",
            "Time spent in the renderer service's calls.",
            batches.seconds,
        ),
        Metric(
            "audio_packets_sent_total", "counter", "20 ms audio packets sent.", totals["audio_packets_sent"]
        ),
        Metric(
            "speech_frames_late_total",
            "counter",
            "Speech frames made after their time on screen (never shown).",
            totals["speech_frames_late"],
        ),
        Metric(
            "audio_seconds_late_total",
            "counter",
            "Speech audio made after its time to play (never played).",
            totals["audio_seconds_late"],
        ),
        Metric(
            "interrupts_total",
            "counter",
            "Interruptions (barge-in), new utterances included.",
            totals["interrupts"],
        ),
        Metric(
            "speech_inputs_late_total",
            "counter",
            "Utterances restarted because their input arrived later than the margin "
            "(each widens its session's margin).",
            totals["speech_inputs_late"],
        ),
    ]


def exposition(metrics: list[Metric]) -> str:
    """The metrics as Prometheus text: HELP and TYPE lines, then the sample."""
    lines = []
    for metric in metrics:
        name = PREFIX + metric.name
        lines += [
            f"# HELP {name} {metric.help}",
            f"# TYPE {name} {metric.kind}",
            f"{name} {_number(metric.value)}",
        ]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))
