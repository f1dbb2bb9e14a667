"""`python -m engine train-gan`: FACIAL-GAN general training and personal fine-tuning.

    python -m engine train-gan --general [--features builtin] [--preset paper|cpu-small]
    python -m engine train-gan --avatar NAME --dataset TRACK.npz [--audio VIDEO]

General: builds (or reuses) the generated-speech data set (engine/train/gan/data.py) in --data,
trains with a resumable checkpoint in --checkpoint, and writes the inference weights to --ship
(default models/weights/facial_gan_KIND.pt). Personal: the avatar's tracked parameters (an .npz
as FaceParams.save writes it, plus the audio of the same video: an `audio` array in the .npz at
SAMPLE_RATE, or --audio) are taken relative to the avatar's rest, the general weights are
fine-tuned on them, and the result is stored in the avatar bundle as `facial_gan_KIND.pt`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from engine.errors import UsageError
from engine.types import FPS

REPO = Path(__file__).resolve().parents[3]
WEIGHTS = REPO / "models" / "weights"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from engine.train.gan.train import PRESETS

    p = subparsers.add_parser(
        "train-gan",
        help="train FACIAL-GAN (general) or fine-tune it for an avatar",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--general", action="store_true", help="train the general model on generated speech")
    mode.add_argument(
        "--avatar", help="fine-tune for this avatar (a name under avatars/ or a bundle directory)"
    )
    p.add_argument(
        "--dataset", type=Path, help="personal: .npz with the avatar video's tracked 'params' (and 'audio')"
    )
    p.add_argument("--audio", help="personal: the video or audio file the parameters were tracked from")
    p.add_argument("--features", help="feature kind (default: builtin; personal: the avatar's kind)")
    p.add_argument("--feature-model", help="the feature kind's model file (default: its shipped one)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper", help="network and training sizes")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's; personal: 11 epochs)")
    p.add_argument("--batch", type=int, help="windows per step (default: the preset's; personal: 16)")
    p.add_argument("--data", type=Path, help="general: data set cache (default out/gan_data/KIND.npz)")
    p.add_argument(
        "--rebuild-data", action="store_true", help="general: make the data set even if --data exists"
    )
    p.add_argument(
        "--data-scale", type=float, default=1.0, help="general: fraction of the default data set size"
    )
    p.add_argument("--aligner", type=Path, default=WEIGHTS / "phonetic_builtin.aligner.pt",
                   help="general: phonetic aligner for the real recordings (missing: synthetic speech only)")
    p.add_argument(
        "--checkpoint", type=Path, help="resumable checkpoint (default out/train-gan/NAME_KIND.ckpt)"
    )
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument(
        "--init",
        type=Path,
        help="personal: general weights to start from (default models/weights/facial_gan_KIND.pt)",
    )
    p.add_argument(
        "--ship", type=Path, help="general: inference weights (default models/weights/facial_gan_KIND.pt)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.general:
        _general(args)
    else:
        _personal(args)


def _extractor(args: argparse.Namespace, kind: str):  # noqa: ANN202
    from engine.audio.features import extractor

    return extractor(kind, args.feature_model)


def _general_data(args: argparse.Namespace, kind: str, features):  # noqa: ANN001, ANN202
    """The data set of `kind`: loaded from --data, else made (the speech itself is cached apart,
    in out/gan_data/sessions_SCALE.pkl, as it serves every feature kind)."""
    from engine.train.gan import data as gan_data
    from engine.train.gan.targets import TargetConfig
    from models.phonetic import load_phonetic

    data_path = args.data or REPO / "out" / "gan_data" / f"{kind}.npz"
    if data_path.exists() and not args.rebuild_data:
        print(f"data: {data_path}", file=sys.stderr)
        items = gan_data.load(data_path)
        if items[0].features.shape[1] != features.dim:
            raise UsageError(
                f"{data_path}: features of dimension {items[0].features.shape[1]}, the '{kind}' extractor "
                f"gives {features.dim}; use --rebuild-data"
            )
        return items, data_path
    base = gan_data.DataConfig()
    sizes = ("espeak_sessions", "festival_sessions", "held_out_sessions")
    scaled = dataclasses.replace(
        base, **{f: max(1, round(getattr(base, f) * args.data_scale)) for f in sizes}
    )
    sessions_path = data_path.with_name(f"sessions_{args.data_scale:g}.pkl")
    if sessions_path.exists() and not args.rebuild_data:
        sessions = gan_data.load_sessions(sessions_path)
    else:
        aligner = load_phonetic(str(args.aligner)) if args.aligner.is_file() else None
        if aligner is None:
            print(f"no aligner at {args.aligner}: no real recordings in the data", file=sys.stderr)
        print(f"making speech in {sessions_path}", file=sys.stderr)
        sessions = gan_data.training_sessions(
            scaled, aligner, lambda m: print(m, file=sys.stderr)
        ) + gan_data.held_out_sessions(scaled)
        gan_data.save_sessions(sessions_path, sessions)
    print(f"building {kind} features and targets in {data_path}", file=sys.stderr)
    target = TargetConfig()  # offsets from a rest with the lips together (engine/face/rest.py)
    items = gan_data.examples(sessions, features, target, scaled)
    gan_data.save(data_path, items)
    return items, data_path


def _general(args: argparse.Namespace) -> None:
    from engine.train.gan import train as gan

    kind = args.features or "builtin"
    features = _extractor(args, kind)
    network, config = gan.PRESETS[args.preset]
    config = dataclasses.replace(
        config, **{k: v for k, v in (("steps", args.steps), ("batch", args.batch)) if v}
    )
    network = dataclasses.replace(network, feature_dim=features.dim, window=config.window)
    items, data_path = _general_data(args, kind, features)
    train_items = [(e.features, e.params) for e in items if not e.held_out]
    held = [(e.features, e.params) for e in items if e.held_out]
    hours = sum(len(f) for f, _ in train_items) / FPS / 3600
    print(f"{len(train_items)} training sessions ({hours:.2f} h), {len(held)} held out", file=sys.stderr)
    data = gan.Windows(train_items, network, config.stride)
    held_out = gan.Windows(held, network, config.stride) if held else None
    ckpt = args.checkpoint or REPO / "out" / "train-gan" / f"general_{kind}.ckpt"
    resume = gan.load(ckpt) if args.resume and ckpt.exists() else None
    generator = gan.resumed_generator(resume) if resume else gan.fresh_generator(network, data)
    info = {
        **gan.meta(kind, gan.silence_features(features)),
        "preset": args.preset,
        "data": data_path.name,
        "hours": round(hours, 2),
    }
    state = gan.train(
        generator, data, config, ckpt, info, held_out, resume, lambda m: print(m, file=sys.stderr)
    )
    ship = args.ship or WEIGHTS / f"facial_gan_{kind}.pt"
    gan.save_atomic(gan.shipped(state), ship)
    print(f"wrote {ship} after {state['step']} steps, {state['seconds'] / 60:.1f} min", file=sys.stderr)


def _personal(args: argparse.Namespace) -> None:
    from engine.audio.decode import load_audio
    from engine.avatar.bundle import add_files
    from engine.avatar.bundle import load as load_avatar
    from engine.train.gan import train as gan
    from engine.types import FaceParams

    avatar = load_avatar(args.avatar)
    kind = args.features or avatar.feature_kind
    if args.dataset is None:
        raise UsageError(
            "personal fine-tuning needs --dataset (the tracked parameters of the avatar's video)"
        )
    params = FaceParams.load(str(args.dataset))
    if args.audio:
        audio = load_audio(args.audio)
    else:
        with np.load(args.dataset, allow_pickle=False) as f:
            if "audio" not in f:
                raise UsageError(f"{args.dataset}: no 'audio' array; give the video's sound with --audio")
            audio = np.asarray(f["audio"], np.float32)
    extractor = _extractor(args, kind)
    features = extractor.offline(audio)
    frames = min(len(features), len(params))
    offsets = params.array[:frames] - avatar.reference_params.array[0]  # the GAN predicts offsets from rest
    init = args.init or WEIGHTS / f"facial_gan_{kind}.pt"
    if not Path(init).is_file():
        raise UsageError(f"{init}: no general weights to fine-tune (train them with --general)")
    state = gan.load(init)
    ckpt = args.checkpoint or REPO / "out" / "train-gan" / f"{avatar.name}_{kind}.ckpt"
    info = {
        **state["meta"],
        **gan.meta(kind, gan.silence_features(extractor)),
        "avatar": avatar.name,
        "frames": frames,
    }
    result = gan.fine_tune(
        state,
        features[:frames],
        offsets,
        ckpt,
        info,
        args.steps,
        args.batch or gan.PERSONAL.batch,
        resume=args.resume,
        log=lambda m: print(m, file=sys.stderr),
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        torch.save(gan.shipped(result), path)
        add_files(avatar.path, {f"facial_gan_{kind}": path})
    print(
        f"fine-tuned {avatar.name} on {frames / FPS:.0f} s in {result['step']} steps: "
        f"{avatar.path}/facial_gan_{kind}.pt",
        file=sys.stderr,
    )
