"""Real recorded speech: the Asterisk PBX prompts in Debian (one professional speaker per language,
8 kHz, CC-BY-SA-3.0), their transcripts, phone sequences from espeak-ng, and a fixed held-out split.

Packages: asterisk-core-sounds-{en,es,fr,it,ru}-wav (recordings) and asterisk-core-sounds-{..}
(transcripts). Nothing is copied: recordings are read where Debian installs them.

Held-out split: a prompt is held out when the first byte of sha1("LANG/NAME") is < 26 (about 10%),
so the split never changes with the file list or the machine.
"""
from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from engine.audio.phones import SILENCE, ipa_to_phones
from engine.errors import EngineError

SOUNDS = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")
# language -> (sound directory, espeak-ng voice)
LANGUAGES = {
    "en": ("en_US_f_Allison", "en-us"),
    "es": ("es_MX_f_Allison", "es-419"),
    "fr": ("fr_CA_f_June", "fr"),
    "it": ("it_IT_m_Carlo", "it"),
    "ru": ("ru_RU_f_IvrvoiceRU", "ru"),
}
HELD_OUT_BELOW = 26  # of 256: ~10 %


class AsteriskError(EngineError):
    """The Asterisk prompt recordings are not installed."""


@dataclass(frozen=True)
class Prompt:
    language: str
    name: str  # e.g. "digits/7"
    path: Path
    text: str

    @property
    def held_out(self) -> bool:
        return hashlib.sha1(f"{self.language}/{self.name}".encode()).digest()[0] < HELD_OUT_BELOW


def installed_languages() -> list[str]:
    return [
        lang
        for lang, (folder, _) in LANGUAGES.items()
        if _transcripts(lang).exists() and (SOUNDS / folder).is_dir()
    ]


def _transcripts(language: str) -> Path:
    return DOCS / f"asterisk-core-sounds-{language}" / f"core-sounds-{language}.txt.gz"


def prompts(language: str) -> list[Prompt]:
    """Every recording of `language` that has a spoken transcript (tones and symbol names skipped)."""
    folder = SOUNDS / LANGUAGES[language][0]
    out = []
    with gzip.open(_transcripts(language), "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            name, sep, text = line.partition(":")
            if line.startswith(";") or not sep:
                continue
            text = re.sub(r"\[[^\]]*\]", " ", text).strip()  # "[beep tone]", "dash [-]"
            path = folder / f"{name.strip()}.wav"
            if re.search(r"\w", text) and path.exists():
                out.append(Prompt(language, name.strip(), path, text))
    return out


def phone_words(prompt: Prompt) -> list[list[str]]:
    """The transcript as words of phones (espeak-ng's pronunciation for the language)."""
    from engine.audio.tts import Espeak

    words = Espeak.get().phonemize(prompt.text, LANGUAGES[prompt.language][1])
    phones = [[p for symbol in word for p in ipa_to_phones(symbol) if p != SILENCE] for word in words]
    return [w for w in phones if w]
