"""Training and evaluation speech for the built-in phonetic model, as log-mel frames + phone labels.

Sources (each utterance is one `Utterance`):
- `espeak:VOICE`: generated English sentences spoken by espeak-ng voices/variants at random rates
  and pitches; labels from its phoneme events. The variants in HELD_OUT_VARIANTS are held out.
- `festival:VOICE`: the same kind of sentences from festival's two Debian voices; labels from segs.
- `espeak-LANG`: the training transcripts of the Asterisk prompts of LANG spoken by espeak-ng, so
  the first aligner has seen every language's sounds.
- `real:LANG`: the Asterisk recordings (see engine/train/speech/asterisk.py for the split). They have no
  timings: `labels` is None until `engine.train.speech.align` fills it from a model. Training prompts come
  in several copies: one clean, the others through `augment` with a random vocal-tract warp.

Synthetic audio goes through `augment` and a random warp. Frames are raw log-mels (normalised
later, as the model does); labels are per network step (stride mel frames).
"""
from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.audio.decode import load_audio
from engine.audio.pcm import to_sample_rate
from engine.audio.phones import PHONE_INDEX, SILENCE, ipa_to_phones
from engine.audio.tts import Espeak, Voice
from engine.train.speech import asterisk, festival
from engine.train.speech.augment import augment, random_warp
from engine.train.speech.sentences import sentences
from engine.types import SAMPLE_RATE
from models.phonetic import LogMel, PhoneticConfig

ESPEAK_VOICES = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
ESPEAK_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4", "klatt", "klatt2", "klatt3",
    "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "belinda", "benjamin", "edward", "john",
    "linda", "max", "michel", "norbert", "paul", "rob", "steph", "travis", "zac", "m7", "f5", "iven",
)
HELD_OUT_VARIANTS = ("m7", "f5", "iven")  # synthetic voices never trained on
# What building the data needs (installed at data-building time, never copied into the repository).
DEBIAN_PACKAGES = ("espeak-ng", "festival", "festvox-kallpc16k", "festvox-us-slt-hts") + tuple(
    f"asterisk-core-sounds-{lang}{suffix}" for lang in asterisk.LANGUAGES for suffix in ("", "-wav")
)


@dataclass
class Utterance:
    source: str  # "espeak:en-us+f3", "festival:kal_diphone", "espeak-fr", "real:en"
    name: str
    held_out: bool
    mels: np.ndarray  # [2 * T, n_mels] float16 raw log-mel
    labels: np.ndarray | None  # [T] phone index per network step, None until aligned
    words: list[list[str]] = field(default_factory=list)  # the spoken phones by word (reference)

    @property
    def real(self) -> bool:
        return self.source.startswith("real:")


@dataclass(frozen=True)
class DataConfig:
    espeak_sentences: int = 3000
    festival_sentences: int = 500  # per voice
    real_copies: int = 3  # clean + 2 augmented, for training prompts
    seed: int = 0


def step_labels(phones: list[str], starts_s: np.ndarray, num_steps: int, step_s: float) -> np.ndarray:
    """Phone of each step (at its centre) from phone start times; before the first: silence."""
    ids = np.array([PHONE_INDEX[SILENCE]] + [PHONE_INDEX[p] for p in phones])
    centres = (np.arange(num_steps) + 0.5) * step_s
    return ids[np.searchsorted(starts_s, centres, side="right")]


def _words_of(labels: np.ndarray) -> list[list[str]]:
    """Label runs without silences, as one word (the reference for phone error rate)."""
    from engine.audio.phones import PHONES

    runs = [int(p) for i, p in enumerate(labels) if i == 0 or p != labels[i - 1]]
    return [[PHONES[p] for p in runs if p != PHONE_INDEX[SILENCE]]]


def _features(audio: np.ndarray, config: PhoneticConfig, warp: float) -> np.ndarray:
    mels = LogMel(config, warp).push(audio)
    return mels[: len(mels) // config.stride * config.stride].astype(np.float16)


def espeak_speech(text: str, voice: Voice) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Speak `text` with `voice` -> audio [S] at SAMPLE_RATE, phones, their starts (s)."""
    synthesis = Espeak.get().synthesize(text, voice)
    audio = to_sample_rate(synthesis.audio, synthesis.sample_rate)
    phones, starts = [], []
    bounds = list(synthesis.starts_s) + [len(synthesis.audio) / synthesis.sample_rate]
    for name, start, end in zip(synthesis.phonemes, bounds[:-1], bounds[1:], strict=False):
        parts = [SILENCE] if name.strip() == "" else ipa_to_phones(name)
        for k, p in enumerate(parts):  # a two-phone symbol ('ts') shares its time evenly
            phones.append(p)
            starts.append(start + (end - start) * k / len(parts))
    return audio, phones, np.array(starts)


def _espeak_utterance(text: str, voice: Voice, config: PhoneticConfig, rng: np.random.Generator,
                      source: str, held_out: bool) -> Utterance:
    audio, phones, starts = espeak_speech(text, voice)
    clean = held_out and rng.random() < 0.5
    mels = _features(audio if clean else augment(audio, rng), config, 1.0 if clean else random_warp(rng))
    labels = step_labels(phones, starts, len(mels) // config.stride, config.step_samples / SAMPLE_RATE)
    return Utterance(source, text, held_out, mels, labels, _words_of(labels))


def espeak_english(config: PhoneticConfig, data: DataConfig) -> list[Utterance]:
    rng = np.random.default_rng(data.seed)
    out = []
    for i, text in enumerate(sentences(data.espeak_sentences, data.seed)):
        variant = ESPEAK_VARIANTS[i % len(ESPEAK_VARIANTS)]
        name = ESPEAK_VOICES[rng.integers(len(ESPEAK_VOICES))] + (f"+{variant}" if variant else "")
        voice = Voice(name, rate=int(rng.uniform(120, 230)), pitch=int(rng.uniform(20, 80)),
                      pitch_range=int(rng.uniform(20, 90)))
        out.append(
            _espeak_utterance(text, voice, config, rng, f"espeak:{name}", variant in HELD_OUT_VARIANTS)
        )
    return out


def espeak_prompts(config: PhoneticConfig, data: DataConfig, language: str) -> list[Utterance]:
    """The training prompts' transcripts of `language`, spoken by espeak-ng (two variants each)."""
    rng = np.random.default_rng(data.seed + 1)
    out = []
    for prompt in (p for p in asterisk.prompts(language) if not p.held_out):
        for variant in ("", ESPEAK_VARIANTS[rng.integers(1, len(ESPEAK_VARIANTS) - len(HELD_OUT_VARIANTS))]):
            name = asterisk.LANGUAGES[language][1] + (f"+{variant}" if variant else "")
            voice = Voice(name, rate=int(rng.uniform(130, 200)), pitch=int(rng.uniform(30, 70)))
            out.append(_espeak_utterance(prompt.text, voice, config, rng, f"espeak-{language}", False))
    return out


def festival_english(config: PhoneticConfig, data: DataConfig) -> list[Utterance]:
    rng = np.random.default_rng(data.seed + 2)
    out = []
    for v, voice in enumerate(festival.VOICES):
        texts = sentences(data.festival_sentences, data.seed + 100 + v)
        for k, stretch in enumerate((0.85, 1.0, 1.2)):  # durations: fast, normal, slow
            part = texts[k::3]
            for text, utt in zip(part, festival.synthesize(part, voice, stretch), strict=True):
                mels = _features(augment(utt.audio, rng), config, random_warp(rng))
                starts = np.concatenate([[0.0], utt.ends_s[:-1]])
                labels = step_labels(
                    utt.phones, starts, len(mels) // config.stride, config.step_samples / SAMPLE_RATE
                )
                out.append(Utterance(f"festival:{voice}", text, False, mels, labels, _words_of(labels)))
    return out


def real_prompts(config: PhoneticConfig, data: DataConfig, language: str) -> list[Utterance]:
    rng = np.random.default_rng(data.seed + 3)
    out = []
    for prompt in asterisk.prompts(language):
        audio = load_audio(str(prompt.path))
        words = asterisk.phone_words(prompt)
        copies = 1 if prompt.held_out else data.real_copies
        for copy in range(copies):
            noisy = augment(audio, rng, strength=0.5) if copy else audio
            mels = _features(noisy, config, random_warp(rng) if copy else 1.0)
            out.append(Utterance(f"real:{language}", prompt.name, prompt.held_out, mels, None, words))
    return out


def build(path: Path, config: PhoneticConfig, data: DataConfig, log=print) -> list[Utterance]:  # noqa: ANN001
    """Make every source and save them to `path` (a pickle of the list, outside the repository)."""
    utterances: list[Utterance] = []
    languages = asterisk.installed_languages()
    if not languages:
        raise asterisk.AsteriskError(
            f"no Asterisk recordings installed: apt-get install {' '.join(DEBIAN_PACKAGES)}"
        )
    steps: list[tuple[str, Callable[[], list[Utterance]]]] = [
        ("espeak English", lambda: espeak_english(config, data)),
        ("festival", lambda: festival_english(config, data)),
    ]
    for lang in languages:
        steps.append((f"espeak {lang} prompts", functools.partial(espeak_prompts, config, data, lang)))
        steps.append((f"real {lang}", functools.partial(real_prompts, config, data, lang)))
    for name, make in steps:
        part = make()
        hours = sum(len(u.mels) for u in part) * config.hop / SAMPLE_RATE / 3600
        log(f"  {name}: {len(part)} utterances, {hours:.2f} h")
        utterances += part
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(utterances, f, protocol=pickle.HIGHEST_PROTOCOL)
    return utterances


def load(path: Path) -> list[Utterance]:
    with open(path, "rb") as f:
        return pickle.load(f)
