"""Rate limits: pure counters on a monotonic clock, no I/O (the server turns a refusal into a
429 or a websocket close)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class TokenBucket:
    """At most `rate` events a second on average, in bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be positive and burst at least 1, got {rate} and {burst}")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = burst, clock()

    def take(self) -> bool:
        """Counts one event; False when it is over the limit (and then it is not counted)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class PerClientWindow:
    """At most `limit` events per client in any `window_s` seconds (offers a minute by address)."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self._clock = limit, window_s, clock
        self._events: dict[str, deque[float]] = {}

    def take(self, client: str) -> bool:
        """Counts one event of `client`; False when it is over the limit (then not counted)."""
        now = self._clock()
        for key in [k for k, times in self._events.items() if times[-1] <= now - self.window_s]:
            del self._events[key]  # clients quiet for a window are forgotten: memory stays bounded
        times = self._events.setdefault(client, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            return False
        times.append(now)
        return True
