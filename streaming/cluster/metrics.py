"""The cluster's GET /metrics: the session hosts' Prometheus texts (streaming/metrics.py) merged
into one, as a single server would count them: sums, except the gauges that are a maximum."""

from __future__ import annotations

from streaming.metrics import PREFIX, Metric, exposition

MAXIMA = {"pipeline_latency_seconds"}  # the largest of the replicas', not their sum


def merge(texts: list[str]) -> str:
    """Prometheus texts of the same metrics (HELP, TYPE, one sample each) -> one text."""
    merged: dict[str, Metric] = {}
    for text in texts:
        helps, kinds = {}, {}
        for line in text.splitlines():
            if line.startswith("# HELP "):
                name, _, help = line[7:].partition(" ")
                helps[name] = help
            elif line.startswith("# TYPE "):
                name, _, kind = line[7:].partition(" ")
                kinds[name] = kind
            elif line and not line.startswith("#"):
                name, _, sample = line.partition(" ")
                short, value = name.removeprefix(PREFIX), float(sample)
                if short in merged:
                    old = merged[short].value
                    value = max(old, value) if short in MAXIMA else old + value
                merged[short] = Metric(short, kinds.get(name, "gauge"), helps.get(name, ""), value)
    return exposition(list(merged.values()))
