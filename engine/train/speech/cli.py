"""Train the built-in phonetic model: data, forced alignment of the real recordings, final model.

    nice python -m engine.train.speech.cli --out models/weights/phonetic_builtin.pt
    (the same as `python -m engine train-features`)

1. Build the corpus (engine/train/speech/data.py) into --data (outside the repository).
2. Train an *aligner* (the same network with a long look-ahead) on the synthetic speech, align the
   real recordings' transcripts with it (Viterbi), retrain it on synthetic + real, realign.
3. Train the shipped model (short look-ahead) on synthetic + aligned real speech; save it with its
   config, normaliser statistics and held-out scores.
One torch thread throughout: the machine is shared.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--out", type=Path, default=REPO / "models" / "weights" / "phonetic_builtin.pt",
                        help="model file to write (the aligner goes beside it as NAME.aligner.pt)")
    parser.add_argument("--data", type=Path, default=REPO / "out" / "speech_data" / "corpus.pkl",
                        help="where the generated corpus is kept (outside the repository)")
    parser.add_argument(
        "--reuse-data", action="store_true", help="load --data if it exists instead of rebuilding"
    )
    parser.add_argument("--quick", action="store_true", help="tiny data and few batches: a smoke run")
    return parser


def add_parser(subparsers) -> None:  # noqa: ANN001
    """`python -m engine train-features ...`"""
    parser = subparsers.add_parser(
        "train-features",
        help="train the built-in phonetic feature model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _arguments(parser).set_defaults(run=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.train.speech.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return run(_arguments(parser).parse_args(argv))


def run(args: argparse.Namespace) -> int:
    import torch

    from engine.train.speech.train import train_model

    torch.set_num_threads(1)
    began = time.time()
    train_model(args.out, args.data, args.reuse_data, args.quick,
                lambda msg: print(f"[{time.time() - began:6.0f} s] {msg}", flush=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
