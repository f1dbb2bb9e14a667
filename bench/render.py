"""Render benchmark: milliseconds per frame for the built-in avatar, on one CPU thread (the live
path's budget; target: rasterize + composite <= 8 ms at 256x256) and on CUDA when present.

Cases, each a factory `(renderer) -> fn` timed at every size and device, on idle-motion frames:
- rasterize: the avatar's whole mesh (face, eyeballs, mouth interior) -> fragments;
- rasterize + composite: the direct compositor's full frame, vertices included;
- face + attention: the R2V network's inputs.
With CUDA, the CPU and CUDA composites of the same frames are compared and the largest
difference reported.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from matplotlib.figure import Figure

from bench.report import plot_timings, time_case, write_report
from engine.avatar.bundle import load
from engine.pipeline.idle import IdleMotion
from engine.render.raster import rasterize
from engine.render.renderer import AvatarRenderer

SIZES = (256, 512)
FRAMES = 64  # distinct idle-motion frames cycled through while timing


def _cycle(renderer: AvatarRenderer, step: Callable) -> Callable[[], object]:
    motion = IdleMotion(renderer.avatar.reference_params, renderer.avatar.motion, seed=0)
    frames = [motion.params(i * 7) for i in range(FRAMES)]
    state = {"i": 0}

    def fn() -> object:
        state["i"] = (state["i"] + 1) % FRAMES
        return step(frames[state["i"]])

    return fn


def rasterize_case(r: AvatarRenderer) -> Callable[[], object]:
    return _cycle(r, lambda p: rasterize(r.screen(p), r.faces, r.size, r.size))


def composite_case(r: AvatarRenderer) -> Callable[[], object]:
    return _cycle(r, r.composite)


def r2v_inputs_case(r: AvatarRenderer) -> Callable[[], object]:
    return _cycle(r, lambda p: (r.face(p), r.attention(p)))


CASES: dict[str, Callable[[AvatarRenderer], Callable[[], object]]] = {
    "rasterize": rasterize_case,
    "rasterize + composite": composite_case,
    "face + attention": r2v_inputs_case,
}


def run(args: argparse.Namespace) -> None:
    avatar = load("default")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    repeats = 10 if args.quick else 200
    rows = []
    for device in devices:
        for size in SIZES:
            renderer = AvatarRenderer(avatar, size, device)
            for name, make in CASES.items():
                threads = 1 if device == "cpu" else None
                rows.append(
                    time_case(
                        f"{name} {size}",
                        make(renderer),
                        device=device,
                        threads=threads,
                        repeats=repeats,
                        size=size,
                    )
                )
    notes = (
        f"Built-in avatar, mesh of {len(renderer.mesh.faces)} triangles (face, eyeballs, mouth interior), "
        f"{FRAMES} idle-motion frames cycled; CPU cases on one torch thread. Command: python -m bench render"
    )
    if "cuda" in devices:
        params = IdleMotion(avatar.reference_params, avatar.motion, seed=0).params(range(0, 300, 10))
        cpu = AvatarRenderer(avatar, 256, "cpu").composite(params).frames
        gpu = AvatarRenderer(avatar, 256, "cuda").composite(params).frames.cpu()
        difference = (cpu - gpu).abs().max().item()
        notes += f". CPU vs CUDA composite, 30 frames at 256: max abs difference {difference:.2e} (0..1)"
    preview = AvatarRenderer(avatar, 256).composite(avatar.reference_params).frames[0]

    def plot(fig: Figure) -> None:
        timings, image = fig.subplots(1, 2, width_ratios=[2, 1])
        plot_timings(timings, rows)
        image.imshow(preview.numpy())
        image.set_title("composite at 256x256", fontsize=8)
        image.set_xticks([])
        image.set_yticks([])

    write_report(
        "render",
        rows,
        title="Avatar rendering: ms per frame",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
