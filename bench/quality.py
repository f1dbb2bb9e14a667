"""FACIAL-GAN quality on held-out speech, and streaming inference speed on one CPU thread.

Data: engine/train/gan_data.held_out_sessions: voices (espeak-ng variants) and sentences never
used in training, several sentences per session with pauses. For each: the built-in features,
the target curves (engine/train/gan_targets), and the shipped general weights' predictions,
offline and streaming (default look-ahead and stride). The model's own output is scored (no idle
motion added). Figures, pooled over the sessions:
- jawOpen correlation with the target (>= 0.8);
- lip closure at p/b/m centres (>= 90%): the inner lips of the default avatar (its rest +
  the prediction, through the face model) within CLOSED_FRACTION of their gap with the jaw half
  open (the rest's lips touch), at the phone's
  centre frame or one frame either side;
- audio-to-lips offset: the lag maximising the cross-correlation of the audio's frame energy
  with the predicted jawOpen (|lag| <= 1 frame; the target's own lag is shown beside it);
- blinks per minute (10-25) and blink durations (100-400 ms: eyelid more than 10% closed);
- head-pose std of the prediction / of the target, per axis (0.5-1.5);
- streaming vs offline jawOpen correlation (>= 0.9);
- jawOpen in pauses (silence at least 0.3 s): the mouth at rest.
Speed: one streaming update = one window; ms per output frame (amortised over the stride) and per
update (median, p99, peak), on one CPU thread (<= 5 ms per frame).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from bench.report import torch_threads, write_report
from engine.audio.features import extractor
from engine.avatar.bundle import load
from engine.face.model import FaceModel
from engine.face.topology import LOWER_LIP_MID_INNER, UPPER_LIP_MID_INNER
from engine.pipeline.animator import Gan, StreamConfig, StreamingAnimator, animate_offline
from engine.types import EXP_START, EXPRESSION_NAMES, FPS, POSE_NAMES, FaceParams

JAW = EXP_START + EXPRESSION_NAMES.index("jawOpen")
CLOSED_FRACTION = 0.1
MAX_LAG = 6  # frames searched either way
KIND = "builtin"


@dataclass
class Case:
    voice: str
    target: np.ndarray  # [N, P] offsets from rest
    offline: np.ndarray
    streaming: np.ndarray
    energy: np.ndarray  # [N] frame RMS, linear
    segments: list


def _predict(gan: Gan, session, seed: int) -> Case:  # noqa: ANN001
    from engine.train.gan import prosody as gan_prosody
    from engine.train.gan.targets import TargetConfig, targets

    features = extractor(KIND).offline(session.audio)
    rest = FaceParams.neutral()
    target = targets(session.segments, session.audio, TargetConfig(seed=seed)).array
    offline = animate_offline(gan, features, rest).array
    animator = StreamingAnimator(gan, rest, StreamConfig())
    streaming = np.concatenate([animator.push(features).array, animator.flush().array])
    energy_db, _ = gan_prosody.measure(session.audio, len(features))
    return Case(session.voice, target, offline, streaming, 10 ** (energy_db / 20), session.segments)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def _lag(signal: np.ndarray, reference: np.ndarray) -> int:
    """Frames by which `signal` trails `reference` at their best cross-correlation."""
    s, r = signal - signal.mean(), reference - reference.mean()
    scores = [
        np.dot(s[max(0, k) : len(s) + min(0, k)], r[max(0, -k) : len(r) - max(0, k)])
        for k in range(-MAX_LAG, MAX_LAG + 1)
    ]
    return int(np.argmax(scores)) - MAX_LAG


def _lip_gaps(face: FaceModel, rest: FaceParams, offsets: np.ndarray) -> np.ndarray:
    v = face.vertices(FaceParams(rest.array + offsets))
    return v[:, LOWER_LIP_MID_INNER, 1] - v[:, UPPER_LIP_MID_INNER, 1]


def _closures(cases: list[Case], key: str, face: FaceModel, rest: FaceParams) -> float:
    half_open = np.zeros((1, rest.array.shape[1]))
    half_open[0, JAW] = 0.5
    open_gap = float(_lip_gaps(face, rest, half_open)[0])  # the rest's lips touch: scale by an open mouth
    hits = []
    for case in cases:
        gaps = _lip_gaps(face, rest, getattr(case, key))
        for phone, start, end in case.segments:
            if phone in ("P", "B", "M"):
                i = int(round((start + end) / 2 * FPS))
                hits.append(gaps[max(0, i - 1) : i + 2].min() <= CLOSED_FRACTION * open_gap)
    return float(np.mean(hits))


def _blinks(blink: np.ndarray) -> tuple[int, np.ndarray]:
    """Blink count (closure crossing 0.5) and durations in seconds (closure above 0.1)."""
    onsets = np.flatnonzero(np.diff((blink > 0.5).astype(int)) == 1)
    open_ = blink <= 0.1
    durations = []
    for o in onsets:
        before = np.flatnonzero(open_[:o])
        after = np.flatnonzero(open_[o:])
        if len(before) and len(after):
            durations.append((o + after[0] - before[-1] - 1) / FPS)
    return len(onsets), np.array(durations)


def speed(gan: Gan, features: np.ndarray, config: StreamConfig) -> dict:
    """Per-update wall times of the streaming animator over the features, one CPU thread (on CUDA,
    each update ends with its result copied back, so the time covers the GPU's work)."""
    with torch_threads(1):
        animator = StreamingAnimator(gan, FaceParams.neutral(), config)
        animator.push(features[: 2 * config.stride + config.lookahead])  # warm-up
        times, frames = [], 0
        for start in range(2 * config.stride + config.lookahead, len(features), config.stride):
            begin = time.perf_counter()
            frames += len(animator.push(features[start : start + config.stride]))
            times.append((time.perf_counter() - begin) * 1000)
    ms = np.array(times)
    return {
        "per_frame_ms": float(ms.sum() / frames),
        "update_median_ms": float(np.median(ms)),
        "update_p99_ms": float(np.percentile(ms, 99)),
        "update_peak_ms": float(ms.max()),
        "updates": len(ms),
    }


def batched_speed(gan: Gan, streams: int, repeats: int = 20) -> dict:
    """One forward pass over `streams` windows at once (concurrent sessions batched), ms."""
    c = gan.model.config
    device = gan.model.param_mean.device
    windows = torch.rand(streams, c.window, c.local_window, c.feature_dim, device=device)
    initial = torch.zeros(streams, c.num_params, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(3):
            gan.model(windows, initial)
        sync()
        begin = time.perf_counter()
        for _ in range(repeats):
            gan.model(windows, initial)
        sync()
    ms = (time.perf_counter() - begin) * 1000 / repeats
    return {"streams": streams, "forward_ms": ms}


def run(args: argparse.Namespace) -> None:
    # The training stack (espeak-ng, festival) is needed for the data only: imported here, so the
    # speed functions above run on machines without it.
    from engine.train.gan import data as gan_data

    torch.set_num_threads(1)
    gan = Gan.for_avatar(load("default"), KIND)
    avatar = load("default")
    face = FaceModel(avatar.identity)
    sessions = gan_data.held_out_sessions(gan_data.DataConfig(held_out_sessions=4 if args.quick else 24))
    cases = [_predict(gan, s, k) for k, s in enumerate(sessions)]
    keys = ("target", "offline", "streaming")
    pooled = {key: np.concatenate([getattr(c, key) for c in cases]) for key in keys}
    minutes = len(pooled["target"]) / FPS / 60
    rows = []

    def add(metric: str, value: float, low: float | None, high: float | None, note: str = "") -> None:
        ok = bool((low is None or value >= low) and (high is None or value <= high))
        goal = " and ".join(
            ([] if low is None else [f">= {low:g}"]) + ([] if high is None else [f"<= {high:g}"])
        )
        rows.append(
            {"metric": metric, "value": round(float(value), 4), "goal": goal, "pass": ok, "note": note}
        )

    add(
        "jawOpen correlation (offline)", _corr(pooled["offline"][:, JAW], pooled["target"][:, JAW]), 0.8, None
    )
    add(
        "jawOpen correlation (streaming)",
        _corr(pooled["streaming"][:, JAW], pooled["target"][:, JAW]),
        None,
        None,
        f"default look-ahead {StreamConfig.lookahead}, stride {StreamConfig.stride}",
    )
    add(
        "lip closure at p/b/m centres (offline)",
        _closures(cases, "offline", face, avatar.rest_params),
        0.9,
        None,
    )
    add(
        "lip closure at p/b/m centres (streaming)",
        _closures(cases, "streaming", face, avatar.rest_params),
        None,
        None,
    )
    add(
        "lip closure at p/b/m centres (target)",
        _closures(cases, "target", face, avatar.rest_params),
        None,
        None,
        "sanity check of the targets",
    )
    lags = [_lag(c.offline[:, JAW], c.energy) for c in cases]
    target_lags = [_lag(c.target[:, JAW], c.energy) for c in cases]
    add(
        "audio-to-lips offset, frames (median over sessions)",
        float(np.median(lags)),
        -1,
        1,
        f"target's own: {np.median(target_lags):g}; per session {lags}",
    )
    for key in ("offline", "target"):
        count, durations = _blinks(pooled[key][:, 6])
        add(
            f"blinks per minute ({key})",
            count / minutes,
            10 if key == "offline" else None,
            25 if key == "offline" else None,
        )
        if len(durations):
            inside = np.mean((durations >= 0.1) & (durations <= 0.4))
            add(
                f"blink duration median, ms ({key})",
                1000 * float(np.median(durations)),
                100 if key == "offline" else None,
                400 if key == "offline" else None,
                f"{100 * inside:.0f}% within 100-400 ms",
            )
    ratio = pooled["offline"][:, :6].std(0) / pooled["target"][:, :6].std(0)
    for name, r in zip(POSE_NAMES, ratio, strict=True):
        add(f"head {name} std / target's", r, 0.5, 1.5)
    add(
        "streaming vs offline jawOpen correlation",
        _corr(pooled["streaming"][:, JAW], pooled["offline"][:, JAW]),
        0.9,
        None,
    )
    silent = [
        c.offline[int(s * FPS) + 3 : int(e * FPS) - 3, JAW]
        for c in cases
        for p, s, e in c.segments
        if p == "SIL" and e - s >= 0.3
    ]
    add("jawOpen in pauses (mean)", float(np.mean(np.concatenate(silent))), None, 0.05, "the mouth at rest")
    features = extractor(KIND).offline(sessions[0].audio)
    timing = speed(gan, features, StreamConfig())
    add(
        "streaming ms per output frame (1 thread)",
        timing["per_frame_ms"],
        None,
        5.0,
        f"{timing['updates']} updates",
    )
    add("streaming update median ms", timing["update_median_ms"], None, None)
    add("streaming update p99 ms", timing["update_p99_ms"], None, None)
    add("streaming update peak ms", timing["update_peak_ms"], None, None)
    batch = batched_speed(gan, 32)
    add(
        "32 streams' windows in one forward, ms (1 thread)",
        batch["forward_ms"],
        None,
        None,
        "an update for 32 sessions at once",
    )
    for row in rows:
        print(
            f"  {row['metric']}: {row['value']} ({row['goal'] or 'reported'}) "
            f"{'ok' if row['pass'] else 'FAIL'} {row['note']}",
            flush=True,
        )
    notes = (
        f"{len(cases)} held-out sessions ({minutes:.1f} min; voices {sorted({c.voice for c in cases})}), "
        f"weights {gan.model.config.width}-wide; `python -m bench quality{' --quick' if args.quick else ''}`"
    )
    write_report(
        "quality",
        rows,
        title="FACIAL-GAN quality (held-out speech) and streaming speed",
        notes=notes,
        plot=lambda fig: _plot(fig, cases[0]),
        results_dir=args.results_dir,
    )


def _plot(fig: Figure, case: Case) -> None:
    """Predicted (offline, streaming) vs target curves of one held-out session."""
    t = np.arange(len(case.target)) / FPS
    panels = [
        ("jawOpen", JAW),
        ("mouthPress_L", EXP_START + EXPRESSION_NAMES.index("mouthPress_L")),
        ("mouthPucker", EXP_START + EXPRESSION_NAMES.index("mouthPucker")),
        ("blink", 6),
        ("pitch", 0),
        ("yaw", 1),
    ]
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (name, col) in zip(axes, panels, strict=True):
        ax.plot(t, case.target[:, col], color="black", linewidth=1, label="target")
        ax.plot(t, case.offline[:, col], color="tab:blue", linewidth=1, label="offline")
        ax.plot(
            t, case.streaming[:, col], color="tab:orange", linewidth=0.8, linestyle="--", label="streaming"
        )
        ax.set_ylabel(name, fontsize=7)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, ncol=3, loc="upper right")
    axes[-1].set_xlabel(f"seconds ({case.voice})", fontsize=7)
    fig.set_size_inches(10, 9)
