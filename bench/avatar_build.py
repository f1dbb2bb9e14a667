"""`python -m bench avatar-build`: the cost and quality of `build-avatar --video --preset quick`.

Input: a 2-minute 512x512 30-fps talking-head video made here (bench/sample_video.py: the
built-in avatar saying generated sentences; the issue's reference case). The build runs in a child
process (`python -m engine build-avatar`), as a user runs it, on a fresh work directory; the report
gives the wall time of each stage, the whole build's wall time (target <= 20 min on 2 CPU cores),
the child's memory peak, and the held-out metrics of the build's own report. `--quick`: 30 s of
video and the tiny preset (a smoke run, not figures).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from matplotlib.figure import Figure

from bench.report import REPO_ROOT, write_report

TARGET_MINUTES = 20


def run(args: argparse.Namespace) -> None:
    from bench.sample_video import talking_video

    seconds, preset = (30, "tiny") if args.quick else (120, "quick")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = talking_video(tmp / "talking.mp4", seconds, size=512)
        command = [
            sys.executable,
            "-m",
            "engine",
            "build-avatar",
            "--video",
            str(video),
            "--out",
            str(tmp / "avatar"),
            "--preset",
            preset,
            "--work",
            str(tmp / "work"),
        ]
        start = time.monotonic()
        subprocess.run(command, check=True, cwd=REPO_ROOT)
        wall = time.monotonic() - start
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        metrics = json.loads((tmp / "work" / "report.json").read_text())
        args.results_dir.mkdir(parents=True, exist_ok=True)
        for name in ("frames", "curves"):
            shutil.copyfile(
                tmp / "work" / f"report_{name}.png", args.results_dir / f"avatar-build_{name}.png"
            )
    rows = [{"stage": stage, "seconds": seconds_} for stage, seconds_ in metrics["stage_seconds"].items()]
    rows.append({"stage": "whole build (wall)", "seconds": round(wall, 1)})
    notes = (
        f"`python -m bench avatar-build{' --quick' if args.quick else ''}`: {seconds} s of 512x512 video, "
        f"preset {preset}; "
        f"whole build {wall / 60:.1f} min (target <= {TARGET_MINUTES} min for 2 minutes with --preset "
        "quick), memory peak "
        f"{peak_mib:.0f} MiB. Held-out metrics: "
        f"{json.dumps({k: v for k, v in metrics.items() if k != 'stage_seconds'})}. "
        "Frames (real | reconstructed | audio-driven): avatar-build_frames.png."
    )

    def plot(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.barh([r["stage"] for r in rows], [r["seconds"] for r in rows])
        ax.set_xlabel("seconds")

    write_report(
        "avatar-build",
        rows,
        title="build-avatar --video: wall time per stage",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
