"""Render benchmark: milliseconds per frame of the rasterizer on a face-sized mesh.

Cases are factories `(size, device) -> fn` timed per image size and device, on one CPU thread (the
live path's budget) and on CUDA when present. Adding a case, e.g. rasterize + composite, is one
factory and one entry in CASES.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
from matplotlib.figure import Figure

from bench.report import plot_timings, time_case, write_report
from engine.render.raster import rasterize

SIZES = (256, 512)


def face_mesh(size: int, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """A face-like stand-in: an ellipsoid cap (15 cm wide, 18 cm tall, 9 cm deep, 45 cm from a
    pinhole camera) of 928 triangles, about 0.47 x 0.55 of the image: 120 x 140 px at 256^2.
    Returns screen-space verts [1, V, 3] and faces [F, 3]."""
    rings, sectors = 15, 32
    radius = torch.arange(1, rings + 1) / rings  # ring k at radius k / rings of the cap
    angle = torch.arange(sectors) * (2 * math.pi / sectors)
    r = torch.cat([torch.zeros(1), radius.repeat_interleave(sectors)])
    theta = torch.cat([torch.zeros(1), angle.repeat(rings)])
    half_width, half_height, bulge, distance = 7.5, 9.0, 9.0, 45.0
    x = half_width * r * torch.cos(theta)
    y = half_height * r * torch.sin(theta)
    z = distance - bulge * torch.sqrt(1 - 0.9 * r**2)  # the cap stops short of the silhouette
    focal = 1.3 * size
    verts = torch.stack([focal * x / z + size / 2, focal * y / z + size / 2, z], -1)

    def ring(k: int) -> torch.Tensor:  # vertex ids of ring k (1-based), one per sector
        return 1 + (k - 1) * sectors + torch.arange(sectors)

    fan = torch.stack([torch.zeros(sectors, dtype=torch.long), ring(1), ring(1).roll(-1)], -1)
    bands = []
    for k in range(1, rings):  # each band between rings k and k+1 is a strip of quads
        inner, outer = ring(k), ring(k + 1)
        bands += [torch.stack([inner, outer, outer.roll(-1)], -1)]
        bands += [torch.stack([inner, outer.roll(-1), inner.roll(-1)], -1)]
    faces = torch.cat([fan, *bands])
    return verts[None].to(device), faces.to(device)


def rasterize_case(size: int, device: str) -> Callable[[], object]:
    verts, faces = face_mesh(size, device)
    return lambda: rasterize(verts, faces, size, size)


# Case name -> factory(size, device) returning the function to time.
CASES: dict[str, Callable[[int, str], Callable[[], object]]] = {
    "rasterize": rasterize_case,
}


def run(args: argparse.Namespace) -> None:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    repeats = 10 if args.quick else 100
    covered = {size: rasterize(*face_mesh(size), size, size).mask.sum().item() for size in SIZES}
    rows = [
        time_case(
            f"{name} {size}x{size}",
            make(size, device),
            device=device,
            threads=1 if device == "cpu" else None,
            repeats=repeats,
            size=size,
            covered_px=covered[size],
        )
        for device in devices
        for name, make in CASES.items()
        for size in SIZES
    ]
    verts, faces = face_mesh(256)
    preview = rasterize(verts, faces, 256, 256)

    def plot(fig: Figure) -> None:
        timings, image = fig.subplots(1, 2, width_ratios=[2, 1])
        plot_timings(timings, rows)
        image.imshow(preview.depth[0].numpy(), cmap="viridis_r")
        image.set_title("the mesh's depth at 256x256", fontsize=8)
        image.set_xticks([])
        image.set_yticks([])

    notes = (
        f"Synthetic face mesh (ellipsoid cap, {faces.shape[0]} triangles); "
        "CPU cases on one torch thread, the live path's budget."
    )
    write_report(
        "render",
        rows,
        title="Rasterizer: ms per frame",
        notes=notes,
        plot=plot,
        results_dir=args.results_dir,
    )
