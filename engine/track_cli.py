"""`python -m engine track`: a talking-head video -> TRACK.npz (landmarks and FaceParams per frame)."""
from __future__ import annotations

import argparse
import sys

import numpy as np


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from engine.face.video_track import TRACK_MAX_SIDE

    p = subparsers.add_parser(
        "track", help="track a talking-head video: face landmarks and FaceParams per frame"
    )
    p.add_argument("--video", required=True, help="the video (any container PyAV reads; resampled to 30 fps)")
    p.add_argument("--out", required=True, help="output TRACK.npz")
    p.add_argument(
        "--preview", help="also write an MP4 with the tracked mesh, pose axes and blink drawn over the video"
    )
    p.add_argument(
        "--max-side",
        type=int,
        default=TRACK_MAX_SIDE,
        help="frames are downscaled to this longer side for tracking",
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> None:
    from engine.face.model import Camera
    from engine.face.video_track import blink_events, fit_clip, save_track, track_video, write_preview
    from engine.progress import progress_bar
    from engine.types import FPS
    from engine.video import check_writable, probe_video

    check_writable(args.out)
    if args.preview:
        check_writable(args.preview)
    info = probe_video(args.video)
    with progress_bar("track", info.frames, "frame") as bar:
        track = track_video(args.video, progress=bar, max_side=args.max_side)
    with progress_bar("fit", int(track.valid.sum()), "frame") as bar:
        clip = fit_clip(track.landmarks, track.valid, Camera.with_fov(track.width, track.height), bar)
    save_track(args.out, track, clip)
    if args.preview:
        write_preview(args.preview, args.video, track, clip)

    n, valid = len(track), track.valid
    minutes = valid.sum() / FPS / 60
    pose = clip.params.pose[valid]
    print(
        f"wrote {args.out}: {n} frames ({n / FPS:.1f} s at {FPS} fps), face tracked in {valid.sum()} "
        f"({100 * valid.mean():.1f}%), "
        f"mean confidence {clip.confidence[valid].mean():.2f}; reference frame {clip.reference}",
        file=sys.stderr,
    )
    print(
        f"blinks: {len(blink_events(clip.params.blink, valid)) / minutes:.1f} per minute; head pose std: "
        f"pitch {np.degrees(pose[:, 0].std()):.1f}, yaw {np.degrees(pose[:, 1].std()):.1f}, roll "
        f"{np.degrees(pose[:, 2].std()):.1f} degrees, "
        f"x {pose[:, 3].std():.2f}, y {pose[:, 4].std():.2f}, z {pose[:, 5].std():.2f} cm",
        file=sys.stderr,
    )
    several = int((track.faces > 1).sum())
    if several:
        print(
            f"warning: {several} frames show more than one face; the largest face was tracked in each",
            file=sys.stderr,
        )
    if args.preview:
        print(f"wrote {args.preview}", file=sys.stderr)
