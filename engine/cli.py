"""`python -m engine ...`: the offline commands. Bad input: one line on stderr, exit status 2."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import numpy as np

from engine.errors import EngineError, UsageError
from engine.types import FaceParamsError

BATCH = 8  # frames rendered per call: amortises per-call overhead, bounded memory


def _frames(source, params, progress: str) -> Iterator[np.ndarray]:
    """uint8 frames of a whole sequence from an engine.pipeline.frames.FrameSource, in batches;
    each batch also hands over the frames after it that R2V's input stack looks ahead to."""
    from tqdm import tqdm

    with tqdm(total=len(params), desc=progress, unit="frame", disable=None, file=sys.stderr) as bar:
        for start in range(0, len(params), BATCH):
            end = start + BATCH
            batch = source.render(params[start:end], lookahead=params[end : end + source.future])
            yield from batch
            bar.update(len(batch))


def animate(args: argparse.Namespace) -> None:
    from engine.audio.decode import load_audio
    from engine.avatar.bundle import load
    from engine.pipeline.demo import demo_sequence
    from engine.pipeline.frames import FrameSource
    from engine.types import FaceParams
    from engine.video import check_writable, write_mp4

    check_writable(args.out)
    avatar = load(args.avatar)
    params = demo_sequence(avatar.rest_params) if args.demo else FaceParams.load(args.params)
    if len(params) == 0:
        raise FaceParamsError(f"{args.params}: the sequence has no frames")
    audio = load_audio(args.audio) if args.audio else None
    source = FrameSource(
        avatar, renderer=args.renderer, backend=args.backend, size=args.size, device=args.device
    )
    write_mp4(args.out, _frames(source, params, "animate"), audio)
    how = f"R2V lite ({args.backend})" if source.uses_r2v else "the direct compositor"
    print(
        f"wrote {args.out}: {len(params)} frames at {source.size}x{source.size} through {how}",
        file=sys.stderr,
    )


def build_avatar(args: argparse.Namespace) -> None:
    from pathlib import Path

    from engine.avatar import video_build

    name = args.name or Path(args.out).name
    if args.video:
        options = video_build.BuildOptions(
            video=Path(args.video), out=Path(args.out), name=name, preset=args.preset, device=args.device,
            force=args.force, work=args.work, features=args.features,
        )
        video_build.build(options)
        return
    if (Path(args.out) / "avatar.json").exists() and not args.force:
        raise UsageError(f"{args.out} already holds an avatar; pass --force to replace it")
    from PIL import Image, UnidentifiedImageError

    from engine.avatar import build

    if args.builtin:
        avatar = build.builtin(args.out)
    else:
        try:
            image = np.asarray(Image.open(args.image).convert("RGB"))
        except (OSError, UnidentifiedImageError) as e:
            raise video_build.BuildError(f"{args.image}: not a readable image ({e})") from None
        avatar = build.from_image(
            image, args.out, name=name, resolution=args.resolution, source=str(args.image)
        )
    print(f"wrote avatar '{avatar.name}' to {args.out}", file=sys.stderr)
    if args.image and args.preset != "none":
        video_build.train_photo_r2v(avatar, args.preset, args.device, args.work)


def parser() -> argparse.ArgumentParser:
    from engine.backends import BACKENDS
    from engine.pipeline.frames import RENDERERS

    p = argparse.ArgumentParser(
        prog="python -m engine", description="FACIAL talking-avatar engine: offline commands."
    )
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("animate", help="render a FaceParams sequence (or the demo) to an MP4")
    a.add_argument("--avatar", default="default", help="a name under avatars/ or a bundle directory")
    source = a.add_mutually_exclusive_group(required=True)
    source.add_argument("--params", help=".npz with 'params' [N, 7+K] in engine/types.py's column order")
    source.add_argument(
        "--demo", action="store_true", help="a scripted sequence: every rig shape, blinks, head motion"
    )
    a.add_argument("--out", required=True, help="output .mp4")
    a.add_argument("--audio", help="audio (any format PyAV reads) to mux in, trimmed to the video")
    a.add_argument("--size", type=int, help="frame size in pixels, even (default 512: head and shoulders)")
    a.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    a.add_argument(
        "--renderer",
        choices=RENDERERS,
        default="auto",
        help="auto: R2V when the avatar has lite weights for this size, else the direct compositor",
    )
    a.add_argument("--backend", choices=list(BACKENDS), default="eager", help="R2V inference backend")
    a.set_defaults(run=animate)

    b = sub.add_parser("build-avatar", help="build an avatar bundle from a talking-head video or a photo")
    origin = b.add_mutually_exclusive_group(required=True)
    origin.add_argument("--video", help="2-3 minutes of one person talking (any common container)")
    origin.add_argument("--image", help="a photo with one face")
    origin.add_argument(
        "--builtin", action="store_true", help="the built-in avatar from a public-domain portrait"
    )
    b.add_argument("--out", required=True, help="bundle directory, e.g. avatars/NAME")
    b.add_argument("--name", help="avatar name (default: the folder's name)")
    b.add_argument(
        "--preset",
        default="quick",
        choices=["quick", "full", "tiny", "none"],
        help="training sizes: quick (CPU), full (GPU), tiny (smoke tests); none: a photo avatar without R2V",
    )
    b.add_argument("--device", default="cpu", help="torch device for training: cpu or cuda")
    b.add_argument("--force", action="store_true", help="replace an existing avatar at --out")
    b.add_argument(
        "--work", help="work directory of a video build (default out/build-avatar/NAME; a rerun resumes)"
    )
    b.add_argument("--features", default="builtin", help="speech feature kind of the avatar")
    b.add_argument(
        "--resolution", type=int, default=256, choices=[256, 512], help="photo avatars: frame size"
    )
    b.set_defaults(run=build_avatar)

    from engine import speak_cli, track_cli
    from engine.audio import cli_features
    from engine.train.gan import cli as gan_cli
    from engine.train.r2v import cli as r2v_cli
    from engine.train.speech import cli as speech_cli

    for command in (speak_cli, track_cli, cli_features, speech_cli, gan_cli, r2v_cli):
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from engine.runtime import tune_allocator

    args = parser().parse_args(argv)
    tune_allocator()
    try:
        args.run(args)
    except (EngineError, OSError) as e:  # bad input or files; anything else is a bug: its traceback shows
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
