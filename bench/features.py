"""Speech-feature benchmark: real-time factor (compute time / audio duration) of every available
extractor, offline (whole recording) and streaming (20 ms chunks pushed one by one, as live input
arrives), on one CPU thread; and DeepSpeech 0.9.3 offline on CUDA for 60 s of audio when a GPU is
present (report features_cuda). Audio: synthetic speech-like signal (a gliding harmonic vowel
with pauses and noise).

DeepSpeech rows use randomly initialised networks of the official full size (n_hidden 2048: 47 M
parameters for 0.9.3, 122 M for 0.1.0), since no official model file can be downloaded here; the
cost does not depend on the weights' values. 0.1.0 has no streaming row: its stream only answers at
the end of input (bidirectional LSTM, utterance-wide normalisation), so it costs the same as offline.

The next link of the live chain is timed too: FACIAL-GAN's streaming update (the default avatar's
weights, look-ahead 1 + stride 1 = the last 2 frames of a 128-frame window, one update per video
frame) through ONNX Runtime, as CPU sessions run it, and through eager torch; its real-time factor
is the update's time over a frame's 33.3 ms.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from bench.report import time_case, write_report
from engine.audio.deepspeech import DeepSpeechExtractor
from engine.audio.deepspeech_import import ImportedDeepSpeech
from engine.audio.features import FeatureError, FeatureExtractor, extractor
from engine.audio.mfcc import TfMfccConfig
from engine.avatar.bundle import load
from engine.pipeline.animator import Gan, StreamConfig
from engine.types import FPS, SAMPLE_RATE, AudioChunk
from models.deepspeech import DeepSpeech, DeepSpeechConfig

SECONDS = 10.0
CUDA_SECONDS = 60.0
CHUNK = SAMPLE_RATE // 50  # 20 ms
REAL_TIME_TARGET = 0.05  # issue 4: the built-in extractor, streaming, one thread


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(110 + 50 * np.sin(2 * np.pi * 0.7 * t)) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (np.sin(2 * np.pi * 1.9 * t) > -0.3)
    return (0.2 * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


def random_deepspeech(version: str, device: str = "cpu") -> DeepSpeechExtractor:
    torch.manual_seed(0)
    network = DeepSpeech(DeepSpeechConfig(version=version)).eval()
    return DeepSpeechExtractor(
        ImportedDeepSpeech(network, TfMfccConfig() if version == "0.9.3" else None), device=device
    )


def extractors() -> dict[str, Callable[[], FeatureExtractor]]:
    return {
        "builtin": lambda: extractor("builtin"),
        "deepspeech 0.9.3 (random, full size)": lambda: random_deepspeech("0.9.3"),
        "deepspeech 0.1.0 (random, full size)": lambda: random_deepspeech("0.1.0"),
    }


def streaming(ex: FeatureExtractor, audio: np.ndarray) -> Callable[[], object]:
    def run() -> object:
        stream = ex.stream()
        frames = [
            f
            for start in range(0, len(audio), CHUNK)
            for f in stream.push(AudioChunk(audio[start : start + CHUNK], start))
        ]
        return frames + stream.flush()

    return run


def animator_rows(repeats: int) -> list[dict]:
    """FACIAL-GAN's streaming update, ONNX Runtime and eager torch, per video frame."""
    avatar = load("default")
    gan = Gan.for_avatar(avatar, avatar.feature_kind)
    c, config = gan.model.config, StreamConfig()
    last = config.update_frames
    rng = np.random.default_rng(0)
    padded = rng.random((c.window + c.local_window - 1, c.feature_dim), np.float32)
    initial = np.zeros(c.num_params, np.float32)
    updates = {
        "onnxruntime": partial(gan.tail(last), padded, initial),
        "torch eager": partial(gan.window, padded, initial, last),
    }
    rows = []
    for name, update in updates.items():
        row = time_case(
            f"FACIAL-GAN streaming update, {name}",
            update,
            threads=1,
            repeats=100 * repeats,
            kind="facial-gan",
            mode="streaming",
            lookahead_ms=round(1000 * config.latency_frames / FPS),
        )
        row["rtf"] = row["median_ms"] * FPS / 1000
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> None:
    repeats = 1 if args.quick else 3
    audio = speech_like(SECONDS)
    rows, skipped = [], []
    for name, make in extractors().items():
        try:
            ex = make()
        except FeatureError as e:
            skipped.append(f"{name}: {e}")
            continue
        lookahead_ms = None if ex.lookahead_frames is None else round(1000 * ex.lookahead_frames / FPS)
        modes = {"offline": partial(ex.offline, audio)}
        if ex.lookahead_frames is not None:
            modes["streaming"] = streaming(ex, audio)
        for mode, fn in modes.items():
            row = time_case(
                f"{name} {mode}",
                fn,
                threads=1,
                warmup=1,
                repeats=repeats,
                kind=ex.kind,
                mode=mode,
                audio_s=SECONDS,
                lookahead_ms=lookahead_ms,
            )
            row["rtf"] = row["median_ms"] / 1000 / SECONDS
            rows.append(row)
    rows += animator_rows(repeats)
    notes = (
        f"Real-time factor = median compute time / audio duration ({SECONDS:g} s of synthetic speech-like "
        "audio), "
        f"one torch thread. Streaming: {1000 * CHUNK // SAMPLE_RATE} ms chunks pushed one by one. "
        "DeepSpeech rows: randomly initialised full-size networks (no official model file is available here; "
        "the cost does not depend on the weights). DeepSpeech 0.1.0 streams only at end of input, so it has "
        "no streaming row. "
        "FACIAL-GAN rows: one streaming update (the default avatar's weights, the last 2 frames of a window) "
        "per video frame; real-time factor = its time / 33.3 ms. "
        f"Target (issue 4): built-in streaming <= {REAL_TIME_TARGET}. Command: python -m bench features"
    )
    if skipped:
        notes += ". Not measured: " + "; ".join(skipped)
    _report("features", rows, "Speech features on CPU: real-time factor", notes, args.results_dir)
    if torch.cuda.is_available():
        run_cuda(args.results_dir, repeats)


def run_cuda(results_dir: Path, repeats: int = 3) -> None:
    """The device check: DeepSpeech on CUDA for CUDA_SECONDS of audio, and how far its logits are
    from the CPU's (float32 both; cuDNN may use TF32)."""
    audio = speech_like(CUDA_SECONDS)
    rows, differences = [], []
    for version in ("0.9.3", "0.1.0"):
        cpu, cuda = random_deepspeech(version), random_deepspeech(version, device="cuda")
        modes = {"offline": partial(cuda.offline, audio)}
        if cuda.lookahead_frames is not None:
            modes["streaming"] = streaming(cuda, audio)
        for mode, fn in modes.items():
            row = time_case(
                f"deepspeech {version} (random, full size) {mode}",
                fn,
                device="cuda",
                warmup=1,
                repeats=repeats,
                kind="deepspeech",
                mode=mode,
                audio_s=CUDA_SECONDS,
            )
            row["rtf"] = row["median_ms"] / 1000 / CUDA_SECONDS
            row["audio_s_per_s"] = 1 / row["rtf"]
            rows.append(row)
        difference = np.abs(cpu.offline(audio) - cuda.offline(audio)).max()
        differences.append(f"{version}: {difference:.2e}")
    notes = (
        f"DeepSpeech port on CUDA, {CUDA_SECONDS:g} s of synthetic speech-like audio; randomly initialised "
        "full-size networks "
        "(no official model file is available here). Offline = MFCC on CPU + the network on the GPU for the "
        "whole recording; "
        f"streaming = {1000 * CHUNK // SAMPLE_RATE} ms chunks pushed one by one. Largest |CPU - CUDA| logit "
        "difference: "
        + ", ".join(differences)
        + ". Command: python -m bench features (on a machine with CUDA)"
    )
    _report("features_cuda", rows, "Speech features on CUDA: DeepSpeech throughput", notes, results_dir)


def _report(name: str, rows: list[dict], title: str, notes: str, results_dir: Path) -> None:
    for row in rows:
        print(f"  {row['case']} ({row['device']}): real-time factor {row['rtf']:.4f}", flush=True)

    def plot(fig: Figure) -> None:
        ax = fig.add_subplot()
        y = np.arange(len(rows))
        ax.barh(y, [row["rtf"] for row in rows], height=0.5)
        ax.axvline(1.0, color="tab:red", linestyle="--", linewidth=1, label="real time")
        ax.axvline(
            REAL_TIME_TARGET,
            color="tab:green",
            linestyle=":",
            linewidth=1,
            label=f"built-in streaming target {REAL_TIME_TARGET}",
        )
        ax.set_yticks(
            y, [f"{row['case']} ({row['device']})\nRTF {row['rtf']:.3g}" for row in rows], fontsize=7
        )
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("real-time factor (compute / audio duration), lower is faster")
        ax.legend(fontsize=8, loc="lower right")

    write_report(name, rows, title=title, notes=notes, plot=plot, results_dir=results_dir)
