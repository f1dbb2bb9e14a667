"""Rate limits on a fake clock."""

from __future__ import annotations

from streaming.limits import PerClientWindow, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now = 0.5  # one event's worth refilled
    assert [bucket.take() for _ in range(2)] == [True, False]


def test_a_window_counts_each_client_apart_and_forgets_quiet_ones() -> None:
    clock = Clock()
    window = PerClientWindow(limit=2, window_s=60, clock=clock)
    assert [window.take("a") for _ in range(3)] == [True, True, False]
    assert window.take("b")
    clock.now = 61
    assert window.take("a") and window._events.keys() == {"a"}
