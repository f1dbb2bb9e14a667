"""FACIAL-GAN's general training data: speech with phone timings -> features + target curves.

Speech (engine/train's synthesisers, sentence generator and recordings, shared with the
speech-features model): generated sentences spoken by espeak-ng voices and variants at random rates
and pitches, and by festival's Debian voices at three speaking rates, with the synthesisers' phone
timings; and real recorded speech (the Asterisk prompts, five speakers and languages), its
transcripts' phones placed by forced alignment with the phonetic aligner. A *session* joins several
sentences of one voice with pauses between them (0.2-1.0 s) and silence around, like a person talking for half
a minute; training windows are cut from sessions. Held out for the quality benchmark: the voice
variants speech_data.HELD_OUT_VARIANTS, spoken sentences from their own seed (never in training).

Each session -> features (the feature extractor of the kind being trained, on the audio through
the same random channel augmentation as the feature model's training) and targets (gan_targets,
from the clean audio and the phone timings, around the neutral rest pose).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from engine.audio.decode import load_audio
from engine.audio.features import FeatureExtractor
from engine.audio.pcm import to_sample_rate
from engine.audio.phones import PHONES, SILENCE, ipa_to_phones
from engine.audio.tts import Espeak, Synthesis, Voice
from engine.train.gan.targets import Segment, TargetConfig, targets
from engine.train.speech import asterisk, festival
from engine.train.speech import data as speech_data
from engine.train.speech.align import align
from engine.train.speech.augment import augment
from engine.train.speech.sentences import sentences
from engine.train.speech.train import log_posteriors
from engine.types import SAMPLE_RATE
from models.phonetic import LogMel, PhoneticNet

HELD_OUT_SEED = 987_654  # sentence seed of the held-out set
PAUSE_S = (0.2, 1.0)
EDGE_SILENCE_S = (0.2, 0.8)


@dataclass
class Session:
    voice: str  # "espeak:en-us+f3", "festival:kal_diphone"
    held_out: bool
    audio: np.ndarray  # [S] float32 at SAMPLE_RATE, clean
    segments: list[Segment]
    texts: list[str]


@dataclass(frozen=True)
class DataConfig:
    espeak_sessions: int = 300
    festival_sessions: int = 40  # per voice
    held_out_sessions: int = 24
    sentences_per_session: tuple[int, int] = (4, 9)
    augment_fraction: float = 0.5  # of sessions whose feature audio goes through channel augmentation
    seed: int = 0


def espeak_segments(synthesis: Synthesis) -> list[Segment]:
    """espeak-ng's phoneme events -> phone segments (a multi-phone symbol shares its time evenly;
    a blank event is a pause)."""
    bounds = [*synthesis.starts_s, len(synthesis.audio) / synthesis.sample_rate]
    out: list[Segment] = [(SILENCE, 0.0, bounds[0])] if bounds[0] > 0 else []
    for name, start, end in zip(synthesis.phonemes, bounds[:-1], bounds[1:], strict=False):
        parts = [SILENCE] if name.strip() == "" else ipa_to_phones(name)
        for k, phone in enumerate(parts):
            out.append(
                (phone, start + (end - start) * k / len(parts), start + (end - start) * (k + 1) / len(parts))
            )
    return out


def _join(
    voice: str,
    held_out: bool,
    pieces: list[tuple[np.ndarray, list[Segment]]],
    texts: list[str],
    rng: np.random.Generator,
) -> Session:
    """Utterances -> one session with silence before, between and after them."""
    audio: list[np.ndarray] = []
    segments: list[Segment] = []
    t = 0.0
    for k, (pcm, segs) in enumerate(pieces):
        gap = rng.uniform(*(EDGE_SILENCE_S if k == 0 else PAUSE_S))
        audio += [np.zeros(round(gap * SAMPLE_RATE), np.float32), pcm.astype(np.float32)]
        segments.append((SILENCE, t, t + gap))
        t += gap
        segments += [(p, t + s, t + e) for p, s, e in segs]
        t += len(pcm) / SAMPLE_RATE
    tail = rng.uniform(*EDGE_SILENCE_S)
    audio.append(np.zeros(round(tail * SAMPLE_RATE), np.float32))
    segments.append((SILENCE, t, t + tail))
    return Session(voice, held_out, np.concatenate(audio), segments, texts)


def espeak_sessions(
    count: int,
    texts: list[str],
    variants: tuple[str, ...],
    held_out: bool,
    per_session: tuple[int, int],
    rng: np.random.Generator,
) -> list[Session]:
    espeak = Espeak.get()
    voices = speech_data.ESPEAK_VOICES
    out = []
    for i in range(count):
        variant = variants[i % len(variants)]
        name = voices[rng.integers(len(voices))] + (f"+{variant}" if variant else "")
        voice = Voice(name, rate=int(rng.uniform(130, 210)), pitch=int(rng.uniform(25, 75)),
                      pitch_range=int(rng.uniform(30, 90)))
        pieces = []
        chosen = [texts.pop() for _ in range(rng.integers(*per_session))]
        for text in chosen:
            synthesis = espeak.synthesize(text, voice)
            pieces.append(
                (to_sample_rate(synthesis.audio, synthesis.sample_rate), espeak_segments(synthesis))
            )
        out.append(_join(f"espeak:{name}", held_out, pieces, chosen, rng))
    return out


def festival_sessions(
    count: int, texts: list[str], per_session: tuple[int, int], rng: np.random.Generator
) -> list[Session]:
    out = []
    for voice in festival.VOICES:
        for i in range(count):
            chosen = [texts.pop() for _ in range(rng.integers(*per_session))]
            stretch = (0.85, 1.0, 1.2)[i % 3]
            pieces = []
            for utt in festival.synthesize(chosen, voice, stretch):
                starts = np.concatenate([[0.0], utt.ends_s[:-1]])
                pieces.append(
                    (utt.audio, list(zip(utt.phones, starts.tolist(), utt.ends_s.tolist(), strict=True)))
                )
            out.append(_join(f"festival:{voice}", False, pieces, chosen, rng))
    return out


def aligned_segments(aligner: PhoneticNet, audio: np.ndarray, words: list[list[str]]) -> list[Segment] | None:
    """A recording's known phones placed in time by forced alignment (engine/train/speech/align.py) on
    the phonetic aligner's posteriors; None when it does not fit."""
    config = aligner.config
    mels = LogMel(config).push(audio)
    mels = aligner.cmvn().push(mels[: len(mels) // config.stride * config.stride])
    labels = align(log_posteriors(aligner, mels), words)
    if labels is None:
        return None
    step = config.step_samples / SAMPLE_RATE
    edges = np.flatnonzero(np.diff(labels)) + 1
    starts, ends = np.concatenate([[0], edges]), np.concatenate([edges, [len(labels)]])
    return [(PHONES[labels[a]], a * step, b * step) for a, b in zip(starts, ends, strict=True)]


def real_sessions(
    aligner: PhoneticNet, per_session: tuple[int, int], rng: np.random.Generator, log=print
) -> list[Session]:  # noqa: ANN001
    """The Asterisk recordings (engine/train/speech/asterisk.py, one speaker per language), training
    prompts only, aligned and joined into sessions per language."""
    out = []
    for language in asterisk.installed_languages():
        prompts = [p for p in asterisk.prompts(language) if not p.held_out]
        # Generator.shuffle takes any mutable sequence; numpy's stub accepts array-likes only.
        rng.shuffle(prompts)  # type: ignore[arg-type]
        failed = 0
        while prompts:
            group = [prompts.pop() for _ in range(min(len(prompts), rng.integers(*per_session)))]
            pieces, texts = [], []
            for prompt in group:
                audio = load_audio(str(prompt.path))
                segments = aligned_segments(aligner, audio, asterisk.phone_words(prompt))
                if segments is None:
                    failed += 1
                    continue
                pieces.append((audio, segments))
                texts.append(prompt.text)
            if pieces:
                out.append(_join(f"real:{language}", False, pieces, texts, rng))
        log(f"  real {language}: {failed} prompts could not be aligned")
    return out


def held_out_sessions(config: DataConfig) -> list[Session]:
    """The held-out set (held-out voices, held-out sentences): the same for every caller."""
    rng = np.random.default_rng(HELD_OUT_SEED)
    texts = sentences(config.held_out_sessions * config.sentences_per_session[1], HELD_OUT_SEED)
    return espeak_sessions(
        config.held_out_sessions,
        texts,
        speech_data.HELD_OUT_VARIANTS,
        True,
        config.sentences_per_session,
        rng,
    )


def training_sessions(config: DataConfig, aligner: PhoneticNet | None, log=print) -> list[Session]:  # noqa: ANN001
    """Training voices speaking sentences that are never in the held-out set, and (with an
    aligner) the real recordings."""
    rng = np.random.default_rng(config.seed)
    most = config.sentences_per_session[1]
    banned = set(sentences(config.held_out_sessions * most, HELD_OUT_SEED))
    pool = [
        t
        for t in sentences((config.espeak_sessions + 2 * config.festival_sessions) * most, config.seed)
        if t not in banned
    ]
    voices = tuple(v for v in speech_data.ESPEAK_VARIANTS if v not in speech_data.HELD_OUT_VARIANTS)
    log(f"  espeak-ng: {config.espeak_sessions} sessions")
    out = espeak_sessions(config.espeak_sessions, pool, voices, False, config.sentences_per_session, rng)
    log(f"  festival: {config.festival_sessions} sessions per voice")
    out += festival_sessions(config.festival_sessions, pool, config.sentences_per_session, rng)
    return out + (
        real_sessions(aligner, config.sentences_per_session, rng, log) if aligner is not None else []
    )


@dataclass
class Example:
    """One session as the GAN sees it."""

    voice: str
    held_out: bool
    features: np.ndarray  # [N, F] float32
    params: np.ndarray  # [N, NUM_PARAMS] float32 target curves around the neutral rest


def example(
    session: Session, extractor: FeatureExtractor, target: TargetConfig, seed: int, augmented: bool
) -> Example:
    """Features of the (augmented) audio, targets from the clean audio with a speaker's own
    articulation strength (0.85-1.15) and motion (seeded)."""
    rng = np.random.default_rng(seed)
    audio = augment(session.audio, rng) if augmented else session.audio
    style = replace(target, articulation=float(rng.uniform(0.85, 1.15)), seed=seed)
    curves = targets(session.segments, session.audio, style)
    return Example(session.voice, session.held_out, extractor.offline(audio), curves.array)


def examples(
    items: list[Session], extractor: FeatureExtractor, target: TargetConfig, config: DataConfig
) -> list[Example]:
    rng = np.random.default_rng(config.seed + 1)
    return [
        example(
            s,
            extractor,
            target,
            config.seed + 1000 * k,
            not s.held_out and rng.random() < config.augment_fraction,
        )
        for k, s in enumerate(tqdm(items, desc="features + targets", unit="session", disable=None))
    ]


def save_sessions(path: Path, items: list[Session]) -> None:
    """Sessions do not depend on the feature kind: one cache serves every kind (a pickle in out/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        pickle.dump(items, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)


def load_sessions(path: Path) -> list[Session]:
    with open(path, "rb") as f:
        return pickle.load(f)


def save(path: Path, items: list[Example]) -> None:
    """One .npz: arrays concatenated, with per-example offsets; written aside, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(
        tmp,
        voices=np.array([ex.voice for ex in items]),
        held_out=np.array([ex.held_out for ex in items]),
        frames=np.cumsum([0] + [len(ex.features) for ex in items]),
        features=np.concatenate([ex.features for ex in items]),
        params=np.concatenate([ex.params for ex in items]),
    )
    tmp.replace(path)


def load(path: Path) -> list[Example]:
    with np.load(path, allow_pickle=False) as f:
        frames, features, params = f["frames"], f["features"], f["params"]
        return [
            Example(str(voice), bool(held), features[a:b], params[a:b])
            for voice, held, a, b in zip(f["voices"], f["held_out"], frames[:-1], frames[1:], strict=False)
        ]
