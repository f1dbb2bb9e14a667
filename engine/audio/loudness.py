"""Loudness relative to the speaker's own running level: how loud a moment of speech is for this voice.

A microphone's gain and a speaker's distance shift every level by the same number of dB, and say
nothing about how wide a mouth opens; louder syllables against the same voice's others do (loud and
stressed syllables are spoken with a lower jaw: Schulman 1989, "Articulatory dynamics of loud and
normal speech"). So the reference is the speaker's level, tracked causally from voiced frames only:
it rises quickly to a louder voice (RISE of the way per frame) and sinks slowly (SINK_DB_PER_S per
second of voice), so it sits near the peaks of the voiced frames and follows a speaker who grows
quieter within seconds. Pauses leave it alone. Until the first voiced frame there is no reference.

Used by the built-in features (their loudness cue) and by FACIAL-GAN's targets (the jaw opening),
so the network sees the quantity its targets were made from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.types import FPS

RISE = 0.3  # share of the way to a louder voiced frame the reference moves, per frame
SINK_DB_PER_S = 3.0  # how fast the reference sinks while the voice is below it
NO_REFERENCE_DB = -200.0  # relative level before the first voiced frame: far below any speech


@dataclass
class RunningLevel:
    """Levels in dB (any fixed reference), one per video frame -> the same levels relative to the
    speaker's running level. Carries its reference from call to call (one per live input)."""

    reference_db: float | None = None

    def push(self, level_db: np.ndarray, voiced: np.ndarray) -> np.ndarray:
        """level_db [N], voiced [N] bool -> level_db - reference [N] (the reference after each frame)."""
        out = np.full(len(level_db), NO_REFERENCE_DB)
        sink = SINK_DB_PER_S / FPS
        for i, (level, voice) in enumerate(zip(level_db.tolist(), voiced.tolist(), strict=True)):
            if voice:
                ref = self.reference_db
                if ref is None:
                    ref = level
                elif level > ref:
                    ref += RISE * (level - ref)
                else:
                    ref = max(level, ref - sink)
                self.reference_db = ref
            if self.reference_db is not None:
                out[i] = level - self.reference_db
        return out
