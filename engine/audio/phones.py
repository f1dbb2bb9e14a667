"""One phone set for every speech source, and the lip-shape (viseme) groups the face is driven by.

PHONES is ARPAbet's 39 phones plus silence (index 0). Each synthesiser and phonemiser speaks its
own symbols: `ipa_to_phones` maps espeak-ng's IPA (any language, approximated by the nearest English
phone), `festival_to_phones` maps festival's radio phone set. VISEME_GROUPS is the single definition
of lip shapes that the feature benchmark scores and FACIAL-GAN's target generator reuses.
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np

from engine.errors import EngineError

SILENCE = "SIL"
PHONES = (
    SILENCE,
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH",
    "T", "TH", "V", "W", "Y", "Z", "ZH",
)
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
NUM_PHONES = len(PHONES)

# Lip-shape groups, in the order of their indices. Every phone is in exactly one group.
VISEME_GROUPS: dict[str, tuple[str, ...]] = {
    "silence": (SILENCE,),
    "bilabial": ("P", "B", "M"),  # lips closed
    "labiodental": ("F", "V"),  # lower lip to upper teeth
    "rounded": ("UW", "UH", "OW", "OY", "AO", "W", "R", "ER", "SH", "ZH", "CH", "JH"),  # lips protruded
    "open": ("AA", "AE", "AH", "AW", "AY", "EH", "EY"),  # jaw open
    "other": ("IH", "IY", "T", "D", "K", "G", "N", "NG", "L", "S", "Z", "TH", "DH", "HH", "Y"),
}
VISEMES = tuple(VISEME_GROUPS)
VISEME_OF_PHONE = np.array(
    [next(VISEMES.index(g) for g, members in VISEME_GROUPS.items() if p in members) for p in PHONES],
    np.int64,
)  # [NUM_PHONES] phone index -> viseme index

# espeak-ng IPA (after stripping stress, length and other diacritics) -> phones. Multi-symbol
# entries first; anything else is split into single symbols. Non-English sounds take the nearest
# English phone by place and lip shape, which is what the face needs.
_IPA = {
    "aɪ": "AY",
    "aʊ": "AW",
    "eɪ": "EY",
    "oʊ": "OW",
    "əʊ": "OW",
    "ɔɪ": "OY",
    "ɪə": "IH AH",
    "eə": "EH AH",
    "ʊə": "UH AH",
    "tʃ": "CH",
    "dʒ": "JH",
    "ts": "T S",
    "dz": "D Z",
    "ɑɪ": "AY",
    "ɑ": "AA",
    "a": "AA",
    "ɒ": "AA",
    "æ": "AE",
    "ʌ": "AH",
    "ə": "AH",
    "ɐ": "AH",
    "ɜ": "ER",
    "ɚ": "ER",
    "ɝ": "ER",
    "ɔ": "AO",
    "o": "OW",
    "ɛ": "EH",
    "e": "EY",
    "œ": "ER",
    "ø": "ER",
    "ɪ": "IH",
    "ᵻ": "IH",
    "ɨ": "IH",
    "i": "IY",
    "y": "UW",
    "ʏ": "UH",
    "ʊ": "UH",
    "u": "UW",
    "ɯ": "UW",
    "ɤ": "AH",
    "b": "B",
    "β": "V",
    "d": "D",
    "ð": "DH",
    "f": "F",
    "g": "G",
    "ɡ": "G",
    "ɣ": "G",
    "h": "HH",
    "x": "HH",
    "ç": "HH",
    "χ": "HH",
    "j": "Y",
    "ʝ": "Y",
    "k": "K",
    "c": "K",
    "l": "L",
    "ɫ": "L",
    "ʎ": "L Y",
    "m": "M",
    "ɱ": "M",
    "n": "N",
    "ɲ": "N Y",
    "ŋ": "NG",
    "p": "P",
    "r": "R",
    "ɹ": "R",
    "ʁ": "R",
    "ɾ": "D",
    "ʀ": "R",
    "s": "S",
    "ɕ": "SH",
    "ʃ": "SH",
    "ʂ": "SH",
    "t": "T",
    "θ": "TH",
    "v": "V",
    "ʋ": "V",
    "w": "W",
    "ɥ": "W",
    "z": "Z",
    "ʑ": "ZH",
    "ʒ": "ZH",
    "ʐ": "ZH",
    "ʔ": SILENCE,
    "ɭ": "L",
    "ɵ": "UH",
    "ʉ": "UW",
    "ʍ": "W",
    "ɬ": "L",
    "ɦ": "HH",
    "ɻ": "R",
    "ɽ": "D",
    "ʈ": "T",
    "ɖ": "D",
    "ɟ": "JH",
    "q": "K",
    "ɒ̃": "AA",
    "ɘ": "AH",
    "ɞ": "AH",
    "ɜ˞": "ER",
}
# Marks that carry no lip shape: stress, length, ties, nasalisation, palatalisation, syllabicity.
_IPA_IGNORED = set("ˈˌːˑ͡‿-̯̃ʲˠ̩̪̥̬ʰʷ̝̞̠̟̈^\":\ufffd ")

_FESTIVAL = {
    "pau": SILENCE, "h#": SILENCE, "brth": SILENCE, "ax": "AH", "axr": "ER", "dx": "D", "el": "L",
    "em": "M", "en": "N", "ix": "IH", "nx": "N", "hv": "HH",
}


class PhoneError(EngineError):
    """A phone symbol with no mapping."""


def ipa_to_phones(symbol: str) -> list[str]:
    """One espeak-ng IPA phoneme (e.g. 'ˈeɪ', 'tʃ', 'ɑ̃') -> phones (usually one, [] for a bare mark)."""
    text = re.sub(r"\([a-z-]+\)", "", unicodedata.normalize("NFD", symbol))  # "(en)": a language switch
    text = "".join(c for c in text if c not in _IPA_IGNORED)
    phones: list[str] = []
    while text:
        for size in (2, 1):
            if text[:size] in _IPA and len(text) >= size:
                phones += _IPA[text[:size]].split()
                text = text[size:]
                break
        else:
            raise PhoneError(f"no phone for IPA symbol {text[0]!r} in {symbol!r}")
    return phones


def festival_to_phone(symbol: str) -> str:
    """One festival radio-phoneset symbol ('ax', 'pau', 'k') -> phone."""
    phone = _FESTIVAL.get(symbol, symbol.upper())
    if phone not in PHONE_INDEX:
        raise PhoneError(f"no phone for festival symbol {symbol!r}")
    return phone


def phone_ids(phones: list[str]) -> np.ndarray:
    """[len] int64 indices into PHONES."""
    return np.array([PHONE_INDEX[p] for p in phones], np.int64)

# Phones with vocal-fold vibration (the voicing cue's training target).
VOICED = frozenset(VISEME_GROUPS["open"] + ("IH", "IY", "UW", "UH", "OW", "OY", "AO", "ER")) | frozenset(
    "B D G V DH Z ZH JH M N NG L R W Y".split()
)
IS_VOICED = np.array([p in VOICED for p in PHONES], np.float32)  # [NUM_PHONES]
