"""What the server counts, and GET /metrics in the Prometheus text exposition format (0.0.4)."""
from __future__ import annotations

import math
from dataclasses import dataclass

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "avatar_"


@dataclass
class TrackStats:
    """Counted by a session's media tracks as they send."""

    frames_sent: int = 0
    frames_dropped: int = 0  # frames skipped because rendering fell behind the clock
    render_seconds: float = 0.0  # summed over the frames sent
    audio_packets_sent: int = 0


@dataclass(frozen=True)
class Metric:
    name: str  # without PREFIX; counters end in _total
    kind: str  # "counter" or "gauge"
    help: str
    value: float


def exposition(metrics: list[Metric]) -> str:
    """The metrics as Prometheus text: HELP and TYPE lines, then the sample."""
    lines = []
    for metric in metrics:
        name = PREFIX + metric.name
        lines += [f"# HELP {name} {metric.help}", f"# TYPE {name} {metric.kind}", f"{name} {_number(metric.value)}"]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))
