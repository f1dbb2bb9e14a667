"""`python -m engine speak`: an MP4 of an avatar saying an audio file or a text (espeak-ng)."""
from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from engine.pipeline.animator import StreamConfig
    from engine.pipeline.frames import RENDERERS
    from engine.pipeline.speak import MODES

    p = subparsers.add_parser("speak", help="make a video of the avatar speaking an audio file or a text")
    p.add_argument("--avatar", default="default", help="a name under avatars/ or a bundle directory")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--audio", help="speech to say (any format PyAV reads, video files included)")
    source.add_argument("--text", help="text to say, spoken by espeak-ng")
    p.add_argument(
        "--voice", default="en-us", help="espeak-ng voice for --text (e.g. en-us, en-gb, en-us+f3)"
    )
    p.add_argument("--out", required=True, help="output .mp4")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="offline",
        help="offline: the paper's windows; streaming: the live chain",
    )
    p.add_argument("--features", default="builtin", help="speech feature kind: builtin or deepspeech")
    p.add_argument("--feature-model", help="the feature kind's model file (default: its shipped one)")
    p.add_argument(
        "--lookahead",
        type=int,
        default=StreamConfig.lookahead,
        help="streaming: frames of look-ahead of the animator",
    )
    p.add_argument(
        "--stride", type=int, default=StreamConfig.stride, help="streaming: frames per animator update"
    )
    p.add_argument("--size", type=int, help="frame size in pixels, even (default 512: head and shoulders)")
    p.add_argument(
        "--renderer", choices=RENDERERS, default="auto", help="auto: R2V when the avatar has weights"
    )
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> None:
    from engine.audio.decode import load_audio
    from engine.audio.tts import text_to_speech
    from engine.avatar.bundle import load
    from engine.pipeline.animator import StreamConfig
    from engine.pipeline.speak import Speaker, speak
    from engine.types import FPS
    from engine.video import check_writable

    check_writable(args.out)
    avatar = load(args.avatar)
    speaker = Speaker(
        avatar, args.features, args.feature_model, StreamConfig(args.lookahead, args.stride), args.device
    )
    audio = text_to_speech(args.text, args.voice) if args.text is not None else load_audio(args.audio)
    timings = speak(speaker, audio, args.out, args.mode, args.size, args.renderer, args.device)
    print(
        f"wrote {args.out}: {timings.frames} frames at {FPS} fps ({timings.audio_seconds:.2f} s), "
        f"{args.mode} mode; "
        f"{timings.total:.2f} s: features {timings.features:.2f} s, animation {timings.animate:.2f} s, "
        f"rendering {timings.render:.2f} s; real-time factor {timings.total / timings.audio_seconds:.2f}",
        file=sys.stderr,
    )
