"""Debian festival voices: synthesis with segment (phone) end times, in one batch per voice.

Voices: `kal_diphone` (festvox-kallpc16k) and `cmu_us_slt_arctic_hts` (festvox-us-slt-hts).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.audio.decode import load_audio
from engine.audio.phones import festival_to_phone
from engine.errors import EngineError

VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts")


class FestivalError(EngineError):
    """festival is missing or failed."""


@dataclass(frozen=True)
class Utterance:
    """Audio [S] float32 at SAMPLE_RATE; phone i spans [ends_s[i-1], ends_s[i]) (the first from 0)."""

    audio: np.ndarray
    phones: list[str]
    ends_s: np.ndarray


def _quote(text: str) -> str:
    return '"' + text.replace("\\", " ").replace('"', " ") + '"'


def synthesize(texts: list[str], voice: str, stretch: float = 1.0) -> list[Utterance]:
    """Speak each text with `voice`, durations scaled by `stretch` (> 1 is slower)."""
    if shutil.which("festival") is None:
        raise FestivalError(
            "festival is not installed (Debian packages festival, festvox-kallpc16k, festvox-us-slt-hts)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        lines = [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {stretch})"]
        for i, text in enumerate(texts):
            lines += [
                f"(set! utt (SynthText {_quote(text)}))",
                f'(utt.save.wave utt "{tmp}/{i}.wav" \'riff)',
                f'(utt.save.segs utt "{tmp}/{i}.segs")',
            ]
        script = Path(tmp) / "batch.scm"
        script.write_text("\n".join(lines) + "\n")
        done = subprocess.run(["festival", "-b", str(script)], capture_output=True, text=True, timeout=3600)
        out = []
        for i in range(len(texts)):
            segs = Path(tmp) / f"{i}.segs"
            if not segs.exists():
                raise FestivalError(
                    f"festival voice {voice} wrote nothing for {texts[i]!r}: {done.stderr[-300:]}"
                )
            rows = [line.split() for line in segs.read_text().splitlines()[1:] if line.strip()]
            out.append(
                Utterance(
                    load_audio(str(Path(tmp) / f"{i}.wav")),
                    [festival_to_phone(r[2]) for r in rows],
                    np.array([float(r[0]) for r in rows]),
                )
            )
    return out
