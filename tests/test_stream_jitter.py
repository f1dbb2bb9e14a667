"""The jitter-margin policy on its own: sample counts in, margins out (no clock, no asyncio)."""

from __future__ import annotations

import pytest

from streaming.jitter import JitterMargin


def margin(**kwargs: int) -> JitterMargin:
    return JitterMargin(**{"base": 160, "widest": 3200, "chunk": 320, "relax_after": 16_000, **kwargs})


def test_input_within_the_margin_is_not_late() -> None:
    jitter = margin()
    assert not jitter.is_late(160) and jitter.is_late(161)


def test_late_input_widens_the_margin_to_cover_it_plus_a_chunk() -> None:
    jitter = margin()
    jitter.widen(1000, now=5000)
    assert jitter.margin == 1320 and jitter.late_inputs == 1
    jitter.widen(500, now=6000)  # never narrower for smaller lateness
    assert jitter.margin == 1320 and jitter.late_inputs == 2


def test_the_margin_widens_no_further_than_widest() -> None:
    jitter = margin()
    jitter.widen(100_000, now=0)
    assert jitter.margin == 3200


def test_the_margin_relaxes_halfway_after_a_quiet_spell_only() -> None:
    jitter = margin()
    jitter.widen(2000, now=10_000)
    wide = jitter.margin
    jitter.relax(now=10_000 + 15_999)
    assert jitter.margin == wide
    jitter.relax(now=10_000 + 16_000)
    assert jitter.margin == (wide + 160) // 2
    jitter.relax(now=10_000 + 16_001)  # the next step waits for another quiet spell
    assert jitter.margin == (wide + 160) // 2


@pytest.mark.parametrize("kwargs", [{"base": -1}, {"base": 4000}, {"chunk": -1}, {"relax_after": -1}])
def test_bad_settings_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        margin(**kwargs)
