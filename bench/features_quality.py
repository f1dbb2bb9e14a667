"""Quality of the built-in speech features (`python -m bench quality-features`).

Scores the shipped extractor's 30 fps output (offline; streaming is identical, tested) on speech it
never trained on:
- real: the held-out Asterisk prompts of every installed language (engine/train/speech/asterisk.py; the
  same speakers as in training, other sentences). Frame references come from forced alignment of
  the transcript with the shipped *aligner* (phonetic_builtin.aligner.pt), which never saw them.
- synthetic: new sentences from espeak-ng variants never trained on, clean and through an 8 kHz
  mu-law telephone channel; references from espeak-ng's own phone timings.
Scores: phone error rate (best path of the frame argmax, silence dropped, against the transcript's
phones), lip-shape-group frame accuracy with its majority-class baseline, bilabial recall and
precision, the full viseme confusion tables, and the streaming real-time factor on one thread.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from matplotlib.figure import Figure

from bench.report import write_report
from engine.audio.builtin_features import DEFAULT_WEIGHTS, BuiltinExtractor
from engine.audio.decode import load_audio
from engine.audio.phones import PHONE_INDEX, VISEMES
from engine.audio.tts import Voice
from engine.train.speech import asterisk
from engine.train.speech.align import align
from engine.train.speech.augment import telephone
from engine.train.speech.data import HELD_OUT_VARIANTS, espeak_speech, step_labels
from engine.train.speech.evaluate import decode, edit_distance, summary, viseme_confusion
from engine.train.speech.sentences import sentences
from engine.train.speech.train import log_posteriors
from engine.types import FPS, SAMPLE_RATE, AudioChunk, frame_pts
from models.phonetic import LogMel, load_phonetic

ALIGNER = DEFAULT_WEIGHTS.with_name(DEFAULT_WEIGHTS.stem + ".aligner.pt")
TARGETS = (
    "targets on real speech: phone error rate <= 0.40, viseme accuracy >= 0.80, bilabial recall and "
    "precision >= 0.80, streaming RTF <= 0.05"
)


class Scorer:
    """Accumulates phone errors and the viseme confusion over utterances of one set."""

    def __init__(self) -> None:
        self.errors = self.phones = self.utterances = 0
        self.confusion = np.zeros((len(VISEMES), len(VISEMES)), np.int64)

    def add(self, features: np.ndarray, frame_phones: np.ndarray, words: list[list[str]]) -> None:
        probs = features[:, : len(PHONE_INDEX)]
        reference = [PHONE_INDEX[p] for w in words for p in w]
        self.errors += edit_distance(decode(probs.argmax(1)), reference)
        self.phones += len(reference)
        self.confusion += viseme_confusion(frame_phones, probs)
        self.utterances += 1

    def row(self, name: str) -> dict:
        return {
            "set": name,
            "utterances": self.utterances,
            **summary(self.confusion, self.errors, self.phones),
        }


def _frame_centres_s(count: int) -> np.ndarray:
    return (np.array([frame_pts(i) for i in range(count)]) + SAMPLE_RATE / FPS / 2) / SAMPLE_RATE


def score_real(extractor: BuiltinExtractor, quick: bool) -> dict[str, Scorer]:
    aligner = load_phonetic(str(ALIGNER))
    config = aligner.config
    scorers: dict[str, Scorer] = {}
    for language in asterisk.installed_languages():
        scorer = scorers[f"real:{language}"] = Scorer()
        prompts = [p for p in asterisk.prompts(language) if p.held_out][: 12 if quick else None]
        for prompt in prompts:
            audio = load_audio(str(prompt.path))
            words = asterisk.phone_words(prompt)
            mels = LogMel(config).push(audio)
            mels = aligner.cmvn().push(mels[: len(mels) // config.stride * config.stride])
            step_phones = align(log_posteriors(aligner, mels), words)
            if step_phones is None:
                continue
            features = extractor.offline(audio)
            steps = np.minimum(
                (_frame_centres_s(len(features)) * SAMPLE_RATE) // config.step_samples, len(step_phones) - 1
            )
            scorer.add(features, step_phones[steps.astype(int)], words)
    return scorers


def score_synthetic(extractor: BuiltinExtractor, quick: bool) -> dict[str, Scorer]:
    scorers = {"synthetic": Scorer(), "synthetic 8 kHz mu-law": Scorer()}
    rng = np.random.default_rng(7)
    for i, text in enumerate(sentences(12 if quick else 90, seed=12345)):
        name = ("en-us", "en", "en-gb-x-rp")[i % 3] + "+" + HELD_OUT_VARIANTS[i % len(HELD_OUT_VARIANTS)]
        voice = Voice(name, rate=int(rng.uniform(140, 200)), pitch=int(rng.uniform(30, 70)))
        audio, phones, starts = espeak_speech(text, voice)
        for name, signal in (("synthetic", audio), ("synthetic 8 kHz mu-law", telephone(audio, mu_law=True))):
            features = extractor.offline(signal)
            frame_phones = step_labels(phones, starts, len(features), 1 / FPS)
            words = [[p for p in phones if p != "SIL"]]
            scorers[name].add(features, frame_phones, words)
    return scorers


def streaming_rtf(extractor: BuiltinExtractor, seconds: float = 20.0, chunk_ms: int = 20) -> float:
    """Wall time / audio time for pushing `seconds` of speech-like noise in chunks, one thread."""
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 0.1).astype(np.float32)
    chunk = SAMPLE_RATE * chunk_ms // 1000
    stream = extractor.stream()
    start = time.perf_counter()
    for pos in range(0, len(audio), chunk):
        stream.push(AudioChunk(audio[pos : pos + chunk], pos))
    stream.flush()
    return (time.perf_counter() - start) / seconds


def confusion_markdown(name: str, confusion: np.ndarray) -> str:
    lines = [
        f"Viseme confusion, {name} (rows: reference, columns: predicted; frames)",
        "",
        "| reference \\ predicted | " + " | ".join(VISEMES) + " | recall |",
        "|---" * (len(VISEMES) + 2) + "|",
    ]
    for i, group in enumerate(VISEMES):
        recall = confusion[i, i] / max(confusion[i].sum(), 1)
        lines.append(f"| {group} | " + " | ".join(str(v) for v in confusion[i]) + f" | {recall:.2f} |")
    precision = [confusion[i, i] / max(confusion[:, i].sum(), 1) for i in range(len(VISEMES))]
    lines.append("| precision | " + " | ".join(f"{p:.2f}" for p in precision) + " | |")
    return "\n".join(lines)


def run(args) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    extractor = BuiltinExtractor()
    scorers = score_real(extractor, args.quick)
    real_all = Scorer()
    for s in scorers.values():
        real_all.errors += s.errors
        real_all.phones += s.phones
        real_all.utterances += s.utterances
        real_all.confusion += s.confusion
    scorers = {"real: all languages": real_all, **scorers, **score_synthetic(extractor, args.quick)}
    rows = [s.row(name) for name, s in scorers.items()]
    for row in rows:
        print(
            "  " + "  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
            flush=True,
        )
    rtf = streaming_rtf(extractor)
    print(f"  streaming real-time factor (1 thread, 20 ms chunks): {rtf:.4f}", flush=True)
    notes = "\n\n".join(
        [
            __doc__.split("\n\n")[1],
            TARGETS,
            f"Streaming real-time factor, one CPU thread, 20 ms chunks: **{rtf:.4f}**; declared look-ahead "
            f"{extractor.lookahead_frames} frames "
            f"({1000 * frame_pts(extractor.lookahead_frames) / SAMPLE_RATE:.0f} ms).",
            *(
                confusion_markdown(name, scorers[name].confusion)
                for name in ("real: all languages", "real:en", "synthetic")
                if name in scorers
            ),
        ]
    )

    def plot(fig: Figure) -> None:
        shown = [n for n in ("real: all languages", "synthetic") if scorers[n].utterances]
        for k, name in enumerate(shown):
            ax = fig.add_subplot(1, len(shown), k + 1)
            confusion = scorers[name].confusion
            rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
            ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
            for (i, j), v in np.ndenumerate(rates):
                ax.text(
                    j,
                    i,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > 0.5 else "black",
                )
            ax.set_xticks(range(len(VISEMES)), VISEMES, rotation=45, fontsize=7)
            ax.set_yticks(range(len(VISEMES)), VISEMES, fontsize=7)
            ax.set_xlabel("predicted")
            ax.set_ylabel("reference")
            ax.set_title(f"{name}: accuracy {np.trace(confusion) / max(confusion.sum(), 1):.2f}", fontsize=9)

    write_report("quality-features", rows, title="Built-in speech features: held-out quality", notes=notes,
                 plot=plot, results_dir=args.results_dir)
