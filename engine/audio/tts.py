"""Text-to-speech: espeak-ng through ctypes: synthesis with phoneme timings, and text -> IPA phonemes.

Needs Debian's `libespeak-ng1` (and `espeak-ng-data`). One process-wide engine: espeak-ng keeps
global state (the voice, the callback's buffers), so every call that sets a voice and uses it holds
the engine's lock; any thread may call it. `text_to_speech` is the runtime's entry (`python -m
engine speak --text`, the server's `say`); the training data builders use `Espeak` for its phoneme
timings.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import re
import threading
from dataclasses import dataclass

import numpy as np

from engine.audio.pcm import to_sample_rate
from engine.errors import EngineError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_RATE, _PITCH, _RANGE = 1, 3, 4


class EspeakError(EngineError):
    """espeak-ng is missing or refused a request."""


class TtsError(EngineError):
    """Text that cannot be spoken: empty, or text-to-speech is unavailable."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class Voice:
    """`name` like 'en-us' or 'en-us+f3'; rate in words per minute; pitch and its range 0..100."""

    name: str = "en-us"
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


DEFAULT_VOICE = Voice()


@dataclass(frozen=True)
class Synthesis:
    """Audio [S] float32 at `sample_rate`; phoneme i (IPA) starts at `starts_s[i]` seconds."""

    audio: np.ndarray
    sample_rate: int
    phonemes: list[str]
    starts_s: np.ndarray


class Espeak:
    """The espeak-ng library, initialised once for synchronous synthesis with IPA phoneme events."""

    _instance: Espeak | None = None
    _creating = threading.Lock()

    @classmethod
    def get(cls) -> Espeak:
        """The process's one engine, initialised on first use."""
        with cls._creating:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        path = ctypes.util.find_library("espeak-ng")
        if path is None:
            raise EspeakError("libespeak-ng is not installed (Debian package libespeak-ng1)")
        self._lib = lib = ctypes.CDLL(path)
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, None, options)
        if self.sample_rate <= 0:
            raise EspeakError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
        self._audio: list[np.ndarray] = []
        self._events: list[tuple[int, str]] = []
        self._callback = _Callback(self._on_synth)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lock = threading.Lock()

    def _on_synth(self, wav, num_samples, events) -> int:  # noqa: ANN001 (ctypes pointers)
        if num_samples > 0:
            self._audio.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_PHONEME:
                name = events[i].id.string.decode("utf-8", "replace")
                self._events.append((events[i].audio_position, name))
            i += 1
        return 0

    def _set_voice(self, voice: Voice) -> None:
        if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise EspeakError(f"espeak-ng has no voice {voice.name!r}")
        for param, value in ((_RATE, voice.rate), (_PITCH, voice.pitch), (_RANGE, voice.pitch_range)):
            self._lib.espeak_SetParameter(param, value, 0)

    def synthesize(self, text: str, voice: Voice = DEFAULT_VOICE) -> Synthesis:
        """Speak `text` with `voice`."""
        with self._lock:
            self._set_voice(voice)
            self._audio, self._events = [], []
            data = text.encode() + b"\0"
            if self._lib.espeak_Synth(data, len(data), 0, 1, 0, _CHARS_UTF8, None, None) != 0:
                raise EspeakError(f"espeak-ng could not synthesise {text!r}")
            audio = (np.concatenate(self._audio).astype(np.float32) / 32768 if self._audio
                     else np.zeros(0, np.float32))
            starts = np.array([ms for ms, _ in self._events], np.float64) / 1000
            return Synthesis(audio, self.sample_rate, [name for _, name in self._events], starts)

    def phonemize(self, text: str, voice: str) -> list[list[str]]:
        """Text -> words -> IPA phonemes, with espeak-ng's own pronunciation rules for `voice`'s
        language."""
        separator = ord("_") << 8
        pointer = ctypes.c_char_p(text.encode() + b"\0")
        words: list[list[str]] = []
        with self._lock:
            self._set_voice(Voice(voice))
            while pointer.value:
                chunk = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, 0x02 | separator)
                text = re.sub(r"\([a-z-]+\)", " ", (chunk or b"").decode())  # "(en)": a language switch
                words += [[p for p in w.split("_") if p] for w in text.split()]
        return [w for w in words if w]


def text_to_speech(text: str, voice: str = "en-us") -> np.ndarray:
    """espeak-ng -> [S] float32 at SAMPLE_RATE; any thread may call it."""
    if not text.strip():
        raise TtsError("the text to speak is empty")
    try:
        synthesis = Espeak.get().synthesize(text, Voice(voice))
    except EspeakError as e:
        raise TtsError(f"text-to-speech failed: {e}") from None
    return to_sample_rate(synthesis.audio, synthesis.sample_rate)
