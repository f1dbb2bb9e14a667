"""`python -m engine train-r2v --avatar NAME [--variant full|lite]`: train an avatar's R2V and add
the weights to its bundle as r2v_<variant>.pt.

Photo avatars (one image, no video) are trained on the direct compositor under sampled face
parameters (engine/train/r2v/data.py). Runs resume from `--run-dir` when it holds a checkpoint.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from engine.train.r2v.train import VARIANT_DEFAULTS

    p = subparsers.add_parser("train-r2v", help="train an avatar's rendering-to-video network")
    p.add_argument("--avatar", default="default", help="a name under avatars/ or a bundle directory")
    p.add_argument("--variant", choices=list(VARIANT_DEFAULTS), default="lite")
    p.add_argument(
        "--live", action="store_true", help="live input stack: no future frames (what the server uses)"
    )
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, help="frames per step (default: lite 4, full 1)")
    p.add_argument("--size", type=int, help="frame size (default: lite 256, full 512)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (pix2pixHD: 2e-4)")
    p.add_argument("--gan-start", type=int, default=0, help="step from which the adversarial terms are on")
    p.add_argument("--val-every", type=int, default=500, help="steps between validation grids and metrics")
    p.add_argument(
        "--refresh-every",
        type=int,
        default=25,
        help="steps between rendering a new segment of training frames",
    )
    p.add_argument(
        "--run-dir", type=Path, help="checkpoints and validation images (default: out/r2v/AVATAR-VARIANT)"
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-install", action="store_true", help="leave the avatar bundle unchanged")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> None:
    import torch

    from engine.avatar.bundle import add_files, load
    from engine.errors import UsageError
    from engine.train.r2v.train import VARIANT_DEFAULTS, R2VTrainConfig, R2VTrainer
    from models.discriminators import PatchGANConfig
    from models.r2v import R2VConfig

    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.threads:
        torch.set_num_threads(args.threads)
    avatar = load(args.avatar)
    defaults = VARIANT_DEFAULTS[args.variant]
    width, layers, scales = defaults.discriminator
    model = R2VConfig(
        variant=args.variant, size=args.size or defaults.size, future=0 if args.live else R2VConfig.future
    )
    config = R2VTrainConfig(
        model=model,
        steps=args.steps,
        batch=args.batch or defaults.batch,
        lr=args.lr,
        gan_start=args.gan_start,
        discriminator=PatchGANConfig(in_channels=7, width=width, layers=layers, scales=scales),
        val_every=args.val_every,
        refresh_every=args.refresh_every,
        seed=args.seed,
    )
    run_dir = (
        args.run_dir or Path("out") / "r2v" / f"{avatar.name}-{args.variant}{'-live' if args.live else ''}"
    )
    start = time.monotonic()
    trainer = R2VTrainer(avatar, config, run_dir, args.device)
    if trainer.step:
        print(f"resuming {run_dir} at step {trainer.step} (with the run's own settings)", file=sys.stderr)
    last = trainer.train()
    weights = trainer.export(run_dir / f"r2v_{args.variant}.pt")
    print(
        f"trained to step {trainer.step} in {time.monotonic() - start:.0f} s; held-out quality: {last}",
        file=sys.stderr,
    )
    if not args.no_install:
        add_files(avatar.path, {f"r2v_{args.variant}": weights})
        print(f"added {weights.name} to avatar '{avatar.name}' ({avatar.path})", file=sys.stderr)
