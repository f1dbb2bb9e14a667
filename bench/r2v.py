"""R2V benchmark: speed of every backend and quality of the built-in avatar's shipped lite network.

Speed (ms per frame, CPU on one torch thread = the live budget; CUDA when present):
- model only: the bare network in eager PyTorch on an input already in its layout: the floor;
- each backend's call on an input stack (conversion to its device/layout included), batch 1, and
  batch 4 (several sessions' frames in one call) divided by 4;
- whole frame: rendered face + attention + input stack + network + the face region pasted into a
  default-size (512) frame, streaming one frame at a time (engine.pipeline.frames.FrameSource)
  with the best backend, next to the direct compositor (its face region, pasted);
- full 512x512: eager on CPU (seconds: a GPU network); on CUDA fp16 eager / compile / TensorRT.
Targets: lite 256 on one CPU thread <= 15 ms (best backend); full 512 on an H100/H200 fp16 <= 2 ms.

Quality: held-out sampled frames (their own random stream, never trained on) through the shipped
network vs the direct compositor (the training target): PSNR/SSIM of the whole frame and the mouth
box, temporal flicker; a grid rendered input | attention | output | ground truth in
bench/results/r2v_grid.png; and how far each backend's frames are from eager's.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image

from bench.report import plot_timings, time_case, torch_threads, write_report
from engine.avatar.bundle import load
from engine.backends import Backend, available_backends, make_backend
from engine.backends.base import Inference
from engine.pipeline.frames import DEFAULT_SIZE, FrameSource, r2v_weights
from engine.pipeline.idle import IdleMotion
from engine.render.renderer import AvatarRenderer
from engine.train.r2v.data import render_segment, sample_params
from engine.train.r2v.quality import grid, quality, run_segment
from models.r2v import R2V, R2VConfig, count_gmacs

QUALITY_SEED = 20_211_011  # held-out frames: neither the training pool's nor its validation's seed
QUALITY_FRAMES = 300  # 10 s
CPU_BACKENDS_ORDER = ("eager", "compile", "onnxruntime")


def _timed_backends(
    model: R2V, device: str, precision: str, batch_sizes: tuple[int, ...], repeats: int, label: str
) -> tuple[list[dict], dict[str, Backend]]:
    rows, backends = [], {}
    threads = 1 if device == "cpu" else None
    size, channels = model.config.size, model.config.in_channels
    prepared = torch.rand(
        1, channels, size, size, device=device, dtype=torch.float32 if precision == "fp32" else torch.float16
    )
    floor = Inference(model).eval().to(device, prepared.dtype).to(memory_format=torch.channels_last)
    prepared = prepared.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        rows.append(
            time_case(
                f"{label} model only",
                lambda: floor(prepared),
                device=device,
                threads=threads,
                repeats=repeats,
                backend="model only",
                batch=1,
                precision=precision,
            )
        )
    for name in available_backends(device):
        if name == "onnxruntime" and precision != "fp32":
            continue
        with torch_threads(threads):  # backends may size thread pools when built
            backend = backends[name] = make_backend(name, model, device, precision)
        for batch in batch_sizes:
            stack = torch.rand(batch, channels, size, size)
            case = f"{label} {name} batch {batch}" + (" (per frame)" if batch > 1 else "")
            row = time_case(
                case,
                lambda backend=backend, stack=stack: backend(stack),  # this case's, not the last
                device=device,
                threads=threads,
                repeats=repeats,
                backend=name,
                batch=batch,
                precision=precision,
            )
            for key in ("median_ms", "p90_ms", "min_ms"):  # per frame
                row[key] /= batch
            rows.append(row)
    return rows, backends


def _streaming_case(avatar, backend: str, renderer: str) -> Callable[[], object]:
    source = FrameSource(avatar, renderer=renderer, backend=backend, live=True)
    motion = IdleMotion(avatar.reference_params, avatar.motion, seed=0)
    state = {"i": 0}

    def fn() -> object:
        state["i"] += 1
        return source.render(motion.params(state["i"]))

    return fn


def run(args: argparse.Namespace) -> None:
    avatar = load("default")
    weights = r2v_weights(avatar, "lite")
    if weights is None:
        raise FileNotFoundError(
            "the built-in avatar has no r2v_lite weights: train them first (models/weights/README.md)"
        )
    lite = R2V.from_checkpoint(weights)
    repeats = 10 if args.quick else 200
    example = torch.zeros(1, lite.config.in_channels, lite.config.size, lite.config.size)
    gmacs = count_gmacs(lite, example)
    rows, backends = _timed_backends(lite, "cpu", "fp32", (1, 4), repeats, "lite 256")
    best = min(
        (r for r in rows if r["backend"] in backends and r["batch"] == 1), key=lambda r: r["median_ms"]
    )["backend"]
    streamed = {"threads": 1, "repeats": repeats, "batch": 1, "precision": "fp32"}
    r2v_frame = _streaming_case(avatar, best, "r2v")
    composite_frame = _streaming_case(avatar, "eager", "composite")
    r2v_label = f"lite 256 -> {DEFAULT_SIZE} ({best}, streaming)"
    rows.append(time_case(r2v_label, r2v_frame, backend=best, **streamed))
    rows.append(time_case(f"compositor -> {DEFAULT_SIZE}", composite_frame, backend="compositor", **streamed))
    full = R2V(R2VConfig.full()).eval()  # untrained: speed only
    full_gmacs = count_gmacs(full, torch.zeros(1, full.config.in_channels, 512, 512))
    if not args.quick:
        stack = torch.rand(1, full.config.in_channels, 512, 512)
        eager_full = make_backend("eager", full)
        rows.append(
            time_case(
                "full 512 eager batch 1",
                lambda: eager_full(stack),
                threads=1,
                warmup=1,
                repeats=3,
                backend="eager",
                batch=1,
                precision="fp32",
            )
        )
    if torch.cuda.is_available():
        for model, label in ((lite, "lite 256"), (full, "full 512")):
            cuda_rows, _ = _timed_backends(model, "cuda", "fp16", (1, 8), repeats, label)
            rows += cuda_rows

    # Quality on held-out frames, and each backend's distance from eager on them.
    renderer = AvatarRenderer(avatar, lite.config.size)
    frames = 60 if args.quick else QUALITY_FRAMES
    held_out = render_segment(renderer, sample_params(avatar, frames, np.random.default_rng(QUALITY_SEED)))
    outputs = {name: run_segment(backend, held_out, lite.config) for name, backend in backends.items()}
    truth = held_out.target.permute(0, 3, 1, 2).float() / 255
    result = quality(outputs["eager"], truth, held_out.mouth.bool())
    agreement = {
        name: float((out - outputs["eager"]).abs().max()) for name, out in outputs.items() if name != "eager"
    }
    grid_path = args.results_dir / "r2v_grid.png"
    Image.fromarray(grid(held_out, outputs["eager"])).save(
        grid_path.with_name(grid_path.name + ".tmp"), format="png"
    )
    os.replace(grid_path.with_name(grid_path.name + ".tmp"), grid_path)

    q = asdict(result)
    notes = (
        f"Built-in avatar, shipped lite network {weights.name} ({weights.stat().st_size / 2**20:.2f} MiB, "
        f"{sum(p.numel() for p in lite.parameters()) / 1e6:.2f} M parameters, {gmacs:.3f} GMAC per 256x256 "
        "frame; "
        f"stack: {lite.config.past} past + "
        f"current{' (live)' if lite.config.live else f' + {lite.config.future} future'}); "
        f"full: {full_gmacs:.1f} GMAC per 512x512 frame. CPU rows on one torch thread; batch-4/8 rows are "
        "per frame. "
        f"Best CPU backend at batch 1: {best}. "
        f"Held-out quality on {frames} sampled frames vs the direct compositor: PSNR {q['psnr']:.2f} dB, "
        f"SSIM {q['ssim']:.4f}; "
        f"mouth box PSNR {q['mouth_psnr']:.2f} dB, SSIM {q['mouth_ssim']:.4f}; flicker {q['flicker']:.3f} "
        "8-bit levels "
        f"(the truth itself changes {truth.diff(dim=0).abs().mean() * 255:.2f} levels a frame). "
        f"Max abs difference from eager on those frames (0..1): "
        + ", ".join(f"{k} {v:.1e}" for k, v in agreement.items())
        + f". Grid (rendered input | attention | output | ground truth): {grid_path.name}. "
        "Command: python -m bench r2v"
    )
    preview = np.asarray(Image.open(grid_path))

    def plot(fig: Figure) -> None:
        timings, image = fig.subplots(1, 2, width_ratios=[3, 2])
        plot_timings(timings, rows)
        image.imshow(preview)
        image.set_title("input | attention | output | truth", fontsize=8)
        image.set_xticks([])
        image.set_yticks([])

    write_report(
        "r2v",
        rows,
        title="Rendering-to-Video: ms per frame and held-out quality",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
