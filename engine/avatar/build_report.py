"""The report of a video avatar build: how well the avatar reproduces the held-out end of its video.

On the held-out frames (the last 15% of the clip, never trained on):
- speech -> motion: FACIAL-GAN's parameters from the clip's own sound vs the tracked ones (jawOpen
  correlation, blink rate, head-pose spread);
- R2V: its frames from the tracked parameters vs the real frames (PSNR/SSIM of the whole frame
  and the mouth box, flicker: engine/train/r2v/quality.py);
- landmark distance: MediaPipe tracks the generated frames (audio-driven, and reconstructed from
  the tracked parameters) and the real ones, over the first LANDMARK_FRAMES of the held-out part;
  the mean distance between corresponding landmarks, in % of the inter-ocular distance, over the
  whole face and the mouth (FACIAL's LMD);
- cost: wall time per stage, memory peak.
Written into the work directory as report.md, report.json (the figures), report_curves.png
(tracked vs predicted) and report_frames.png (real | reconstructed | audio-driven); all but
report.json go into the bundle.
"""
from __future__ import annotations

import json
import resource
from dataclasses import asdict, dataclass

import numpy as np

from engine.face.topology import regions
from engine.face.track import eye_span, track_frames
from engine.types import BLINK_COL, EXP_START, EXPRESSION_NAMES, FPS, POSE_NAMES, FaceParams

JAW = EXP_START + EXPRESSION_NAMES.index("jawOpen")
SAMPLE_ROWS = 4
LANDMARK_FRAMES = (
    30 * FPS
)  # held-out frames rendered and tracked for landmark distances (memory stays bounded)
RENDER_BATCH = 16


@dataclass
class LandmarkDistance:
    face: float  # mean landmark distance, % of the inter-ocular distance
    mouth: float
    frames: int  # held-out frames where both the real and the generated face were tracked


def blink_rate(blink: np.ndarray) -> float:
    """Blinks per minute in a blink curve [N] (closed above 0.5)."""
    closed = (blink > 0.5).astype(np.int8)
    return float(np.sum(np.diff(np.concatenate([[0], closed])) == 1) / (len(blink) / FPS / 60))


def landmark_distance(real: np.ndarray, fake: np.ndarray) -> LandmarkDistance:
    """real, fake: [N, 478, 3] tracked landmarks, NaN where no face -> LandmarkDistance."""
    both = ~(np.isnan(real).any((1, 2)) | np.isnan(fake).any((1, 2)))
    if not both.any():
        return LandmarkDistance(float("nan"), float("nan"), 0)
    r, f = real[both, :, :2], fake[both, :, :2]
    eyes = eye_span(real[both])[:, None]
    distance = np.linalg.norm(r - f, axis=-1) / eyes * 100  # [N, 478]
    return LandmarkDistance(
        float(distance.mean()), float(distance[:, regions().lips].mean()), int(both.sum())
    )


def render(source, params: FaceParams) -> np.ndarray:  # noqa: ANN001
    """FaceParams [N] -> frames [N, S, S, 3] uint8 as one stream."""
    source.reset()
    return np.concatenate(
        [source.render(params[i : i + RENDER_BATCH]) for i in range(0, len(params), RENDER_BATCH)]
    )


def write_report(stages) -> dict:  # noqa: ANN001 (avatar_build.Stages)
    """Computes the held-out metrics, writes the report files; returns the metrics."""
    from engine.pipeline.animator import Gan, animate_offline
    from engine.pipeline.frames import FrameSource, r2v_weights
    from engine.render.renderer import AvatarRenderer
    from engine.train.r2v.data import VideoSource
    from engine.train.r2v.quality import evaluate_video
    from models.r2v import R2V

    work, avatar = stages.work, stages.trained()
    params, valid = stages.fitted
    split, n = stages.split, len(valid)
    held = slice(split, n)
    shown = slice(split, min(n, split + LANDMARK_FRAMES))  # the frames tracked for landmark distances
    real_frames = np.array(stages.frames()[shown])
    tracked = params[held]
    metrics: dict = {
        "held_out_seconds": round((n - split) / FPS, 1),
        "tracked_share": float(valid[held].mean()),
    }

    predicted = None
    if (work / "features.npy").is_file():
        gan = Gan.for_avatar(avatar, stages.options.features)
        features = np.load(work / "features.npy")
        whole = animate_offline(
            gan, features[:n], avatar.reference_params
        )  # the held-out part in its context
        predicted = whole[held] if len(whole) >= n else None
    if predicted is not None:
        ok = valid[held]
        jaw_t, jaw_p = tracked.array[ok, JAW], predicted.array[ok, JAW]
        metrics["jaw_open_correlation"] = (
            float(np.corrcoef(jaw_t, jaw_p)[0, 1])
            if jaw_t.std() > 1e-6 and jaw_p.std() > 1e-6
            else float("nan")
        )
        metrics["blinks_per_minute"] = {
            "person": blink_rate(tracked.array[ok, BLINK_COL]),
            "avatar": blink_rate(predicted.array[:, BLINK_COL]),
        }
        metrics["pose_std"] = {
            name: {"person": float(tracked.pose[ok, k].std()), "avatar": float(predicted.pose[:, k].std())}
            for k, name in enumerate(POSE_NAMES)
        }

    source = FrameSource(avatar, size=avatar.resolution, live=True, view="reference")  # as the real frames
    metrics["renderer"] = "r2v" if source.uses_r2v else "compositor"
    weights = r2v_weights(avatar)
    if source.uses_r2v and weights is not None:  # the source runs these same weights
        held_out = VideoSource(
            AvatarRenderer(avatar, avatar.resolution), stages.frames(), params, valid, (split, n)
        )
        metrics["r2v"] = asdict(evaluate_video(R2V.from_checkpoint(weights), held_out))
    reconstructed = render(source, params[shown])
    real_lm = track_frames(real_frames)
    metrics["landmarks_reconstructed"] = landmark_distance(real_lm, track_frames(reconstructed)).__dict__
    driven = render(source, predicted[: len(real_frames)]) if predicted is not None else None
    if driven is not None:
        metrics["landmarks_audio_driven"] = landmark_distance(real_lm, track_frames(driven)).__dict__
    metrics["stage_seconds"] = stages.work.stage_seconds()
    metrics["memory_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    _curves(work / "report_curves.png", tracked, predicted, valid[held], split)
    _frames(work / "report_frames.png", real_frames, reconstructed, driven)
    (work / "report.md").write_text(_markdown(stages, metrics))
    (work / "report.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _curves(path, tracked: FaceParams, predicted: FaceParams | None, valid: np.ndarray, split: int) -> None:  # noqa: ANN001
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = (split + np.arange(len(tracked))) / FPS
    rows = (
        ("jawOpen", JAW, 1.0),
        ("blink", BLINK_COL, 1.0),
        ("pitch (deg)", 0, 180 / np.pi),
        ("yaw (deg)", 1, 180 / np.pi),
    )
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 8), sharex=True)
    for ax, (label, col, scale) in zip(axes, rows, strict=True):
        ax.plot(
            t,
            np.where(valid, tracked.array[:, col] * scale, np.nan),
            label="tracked (the person)",
            color="black",
        )
        if predicted is not None:
            ax.plot(t, predicted.array[:, col] * scale, label="FACIAL-GAN from the sound", color="tab:orange")
        ax.set_ylabel(label)
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("seconds (held-out part of the video)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _frames(path, real: np.ndarray, reconstructed: np.ndarray, driven: np.ndarray | None) -> None:  # noqa: ANN001
    from PIL import Image

    picks = np.linspace(0, len(real) - 1, SAMPLE_ROWS).astype(int)
    columns = [real, reconstructed] + ([driven] if driven is not None else [])
    grid = np.concatenate([np.concatenate([c[i] for c in columns], 1) for i in picks], 0)
    Image.fromarray(grid).save(path)


def _markdown(stages, m: dict) -> str:  # noqa: ANN001
    o = stages.options
    lines = [
        f"# Avatar '{o.name}' from {o.video.name}",
        "",
        f"Preset `{o.preset}`, device `{o.device}`, {stages.preset.resolution}x{stages.preset.resolution}, "
        f"renderer {m['renderer']}. "
        f"Held out: the last {m['held_out_seconds']} s ({m['tracked_share']:.0%} of its frames tracked).",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    if "r2v" in m:
        q = m["r2v"]
        lines += [
            f"| R2V from the tracked parameters: PSNR / SSIM, whole frame | {q['psnr']:.2f} dB / "
            f"{q['ssim']:.4f} |",
            f"| ... mouth box | {q['mouth_psnr']:.2f} dB / {q['mouth_ssim']:.4f} |",
            f"| ... flicker (8-bit levels) | {q['flicker']:.3f} |",
        ]
    for key, label in (
        ("landmarks_reconstructed", "reconstructed"),
        ("landmarks_audio_driven", "audio-driven"),
    ):
        if key in m:
            d = m[key]
            lines.append(
                f"| landmark distance, {label} (face / mouth, % inter-ocular; {d['frames']} frames) | "
                f"{d['face']:.2f} / {d['mouth']:.2f} |"
            )
    if "jaw_open_correlation" in m:
        b = m["blinks_per_minute"]
        lines += [f"| jawOpen correlation, FACIAL-GAN vs tracked | {m['jaw_open_correlation']:.3f} |",
                  f"| blinks per minute: person / avatar | {b['person']:.1f} / {b['avatar']:.1f} |"]
        for name, s in m["pose_std"].items():
            lines.append(f"| {name} std: person / avatar | {s['person']:.4f} / {s['avatar']:.4f} |")
    else:
        lines.append("| FACIAL-GAN | general weights (the video has no usable sound) |")
    lines += [
        "",
        "Wall time per stage (s): " + ", ".join(f"{k} {v}" for k, v in m["stage_seconds"].items()),
        f"Memory peak of the build process: {m['memory_peak_mib']} MiB.",
        "",
        "![curves](report_curves.png)",
        "",
        "Real | reconstructed (tracked parameters) | audio-driven:",
        "",
        "![frames](report_frames.png)",
        "",
    ]
    return "\n".join(lines)
