"""`python -m engine features --audio IN --kind builtin|deepspeech [--model FILE] --out F.npy`:
speech features of a recording, one float32 row per video frame ([N, F], N = ceil(seconds * FPS)).

Extractors that stream (a declared look-ahead) read the file chunk by chunk, so a long recording is
never held whole; their streaming output equals their offline output (tests/test_features.py).
DeepSpeech 0.1.0 needs the whole utterance and gets it. The .npy appears whole or not at all.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from engine.audio.decode import load_audio, stream_audio
from engine.audio.features import FeatureExtractor, extractor, kinds
from engine.audio.pcm import check_level, check_speech_input
from engine.types import FPS, AudioChunk
from engine.video import check_writable


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "features", help="speech features of an audio file, one row per video frame (.npy)"
    )
    p.add_argument("--audio", required=True, help="audio or video file (any format PyAV reads)")
    p.add_argument("--kind", required=True, choices=kinds(), help="feature extractor")
    p.add_argument(
        "--model",
        help="model file; deepspeech: the official output_graph.pb (0.1.0) or output_graph.pbmm (0.9.3); "
        "builtin: default shipped weights",
    )
    p.add_argument(
        "--out", required=True, help=f"output .npy: float32 [N, F], one row per {FPS} fps video frame"
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> None:
    out = check_writable(args.out)
    features_of = extractor(args.kind, args.model)
    features = (
        _streamed(features_of, args.audio)
        if features_of.lookahead_frames is not None
        else _whole(features_of, args.audio)
    )
    tmp = out.with_name(out.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, features)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    print(
        f"wrote {out}: {len(features)} frames x {features.shape[1]} {args.kind} features at {FPS} fps",
        file=sys.stderr,
    )


def _whole(features_of: FeatureExtractor, path: str | Path) -> np.ndarray:
    return features_of.offline(check_speech_input(load_audio(path), str(path)))


def _streamed(features_of: FeatureExtractor, path: str | Path) -> np.ndarray:
    stream = features_of.stream()
    frames, samples, peak = [], 0, 0.0
    for pcm in stream_audio(path):
        frames += stream.push(AudioChunk(pcm, samples))
        samples += len(pcm)
        peak = max(peak, float(np.abs(pcm).max()))
    check_level(samples, peak, str(path))
    frames += stream.flush()
    return np.stack([frame.values for frame in frames]).astype(np.float32)
