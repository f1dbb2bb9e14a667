"""The Prometheus text exposition of the server's metrics."""
from __future__ import annotations

import math

from streaming.metrics import Metric, exposition


def test_each_metric_is_help_type_and_sample():
    text = exposition(
        [
            Metric("sessions", "gauge", "Live sessions.", 2),
            Metric("frames_sent_total", "counter", "Frames sent.", 1234.0),
        ]
    )
    assert text == (
        "# HELP avatar_sessions Live sessions.\n# TYPE avatar_sessions gauge\navatar_sessions 2\n"
        "# HELP avatar_frames_sent_total Frames sent.\n# TYPE avatar_frames_sent_total counter\n"
        "avatar_frames_sent_total 1234\n"
    )


def test_values_are_written_as_prometheus_numbers():
    samples = [
        line.split(" ")[1]
        for line in exposition(
            [
                Metric("a", "gauge", "a", 0.25),
                Metric("b", "gauge", "b", math.nan),
                Metric("c", "gauge", "c", math.inf),
                Metric("d", "gauge", "d", -math.inf),
            ]
        ).splitlines()
        if not line.startswith("#")
    ]
    assert samples == ["0.25", "NaN", "+Inf", "-Inf"]
