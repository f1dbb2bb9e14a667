"""`python -m bench fit`: how well tracking and fitting a video (engine.face.video_track:
`track_video`, then `fit_clip`, as `build-avatar --video` does) recover face parameters that are
known.

Input: SECONDS of the built-in avatar talking (bench/sample_video.py: generated sentences,
FACIAL-GAN, the direct compositor, 256x256 H.264), whose face parameters are the truth. Per rig
shape that the speech moves: the correlation of the fitted curve with the truth, its amplitude
(standard deviation over the truth's) and its mean bias; and the same for the head's pitch and yaw
(relative to the clip's reference frame). A fit that explains a jaw drop with lip shapes, or that
fits every frame against a reference whose mouth is not at rest, shows here first. `--quick`: 8 s.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.report import write_report

SECONDS = 30
SIZE = 256
SHAPES = (
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthStretch_L",
    "mouthPress_L",
    "mouthSmile_L",
    "mouthRollUpper",
)


def run(args: argparse.Namespace) -> None:
    from bench.sample_video import talking_speech, talking_video
    from engine.avatar.bundle import load
    from engine.face.model import Camera
    from engine.face.video_track import fit_clip, track_video
    from engine.pipeline.speak import Speaker, Timings
    from engine.types import EXP_START, EXPRESSION_NAMES

    seconds = 8 if args.quick else SECONDS
    truth = Speaker(load("default"), seed=0).offline(talking_speech(seconds), Timings(seconds)).array
    with tempfile.TemporaryDirectory() as tmp:
        track = track_video(talking_video(Path(tmp) / "talking.mp4", seconds, SIZE))
    clip = fit_clip(track.landmarks, track.valid, Camera.with_fov(track.width, track.height))
    fitted = clip.params.array
    n = min(len(truth), len(fitted))
    truth, fitted = truth[:n], fitted[:n]
    ref = min(clip.reference, n - 1)
    columns = {name: EXP_START + EXPRESSION_NAMES.index(name) for name in SHAPES}
    rows = [row(name, truth[:, c], fitted[:, c]) for name, c in columns.items()]
    rows += [
        row(name, np.degrees(truth[:, c] - truth[ref, c]), np.degrees(fitted[:, c] - fitted[ref, c]))
        for name, c in (("pitch (deg)", 0), ("yaw (deg)", 1))
    ]
    notes = (
        f"`python -m bench fit{' --quick' if args.quick else ''}`: {n} frames ({seconds} s) of the built-in "
        f"avatar talking at {SIZE}x{SIZE} "
        "(known face parameters), tracked and fitted as build-avatar --video does; reference frame "
        f"{clip.reference}. Correlation with the "
        "truth, amplitude (fitted std / true std) and mean bias (fitted - true) per shape; shapes the speech "
        "hardly moves (true std < 0.01) "
        "have no correlation or amplitude, only their bias."
    )

    def plot(fig: Figure) -> None:
        curves, bars = fig.subplots(1, 2)
        t = np.arange(n) / 30
        for name in ("jawOpen", "mouthFunnel"):
            line = curves.plot(t, truth[:, columns[name]], linewidth=1, label=f"{name} true")[0]
            curves.plot(
                t,
                fitted[:, columns[name]],
                linewidth=1,
                linestyle="--",
                color=line.get_color(),
                label=f"{name} fitted",
            )
        curves.set(xlabel="seconds", ylabel="weight")
        curves.legend(fontsize=7)
        named = [r for r in rows if r["correlation"] is not None]
        bars.barh([r["shape"] for r in named], [r["correlation"] for r in named])
        bars.set(xlabel="correlation with the truth", xlim=(-0.2, 1))

    write_report(
        "fit",
        rows,
        title="Tracking + fitting a video with known face parameters",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )


def row(name: str, true: np.ndarray, fitted: np.ndarray) -> dict:
    moves = true.std() >= 0.01
    return {
        "shape": name,
        "correlation": round(float(np.corrcoef(true, fitted)[0, 1]), 3)
        if moves and fitted.std() > 0
        else None,
        "amplitude": round(float(fitted.std() / true.std()), 3) if moves else None,
        "bias": round(float(fitted.mean() - true.mean()), 3),
        "true_std": round(float(true.std()), 3),
    }
