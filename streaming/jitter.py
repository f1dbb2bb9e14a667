"""A session's jitter buffer policy: the margin its speech chain keeps for compute and for input
that arrives late. Pure arithmetic on sample counts (the caller reads the clock).

Input that falls behind by more than the margin widens it to cover that lateness plus one chunk,
up to `widest`; after `relax_after` samples with no late input, each new utterance takes it
halfway back to `base`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class JitterMargin:
    base: int  # samples: the configured margin
    widest: int  # samples: what late input can widen it to
    chunk: int  # samples: the chain's input granularity, added to each widening
    relax_after: int  # samples without late input before it narrows
    margin: int = -1  # samples, now (-1: base)
    late_inputs: int = 0  # times input arrived late
    _late_at: int = 0  # clock samples: the last late input

    def __post_init__(self) -> None:
        if not 0 <= self.base <= self.widest or self.chunk < 0 or self.relax_after < 0:
            raise ValueError(f"need 0 <= base <= widest and chunk, relax_after >= 0, got {self}")
        if self.margin < 0:
            self.margin = self.base

    def is_late(self, late: int) -> bool:
        """Input `late` samples behind its time is more than the margin covers."""
        return late > self.margin

    def widen(self, late: int, now: int) -> None:
        """Input arrived `late` samples behind its time at clock sample `now`."""
        self.late_inputs += 1
        self.margin = max(self.margin, min(self.widest, late + self.chunk))
        self._late_at = now

    def relax(self, now: int) -> None:
        """A new utterance at clock sample `now`: halfway back to base after a quiet spell."""
        if self.margin > self.base and now - self._late_at >= self.relax_after:
            self.margin = (self.margin + self.base) // 2
            self._late_at = now  # the next step after another quiet spell
