"""R2V quality on held-out frames: PSNR and SSIM of whole frames and of the mouth box, temporal
flicker, and report grids (rendered input | attention | output | ground truth).

`quality` scores one run of consecutive frames, `QualityMeter` accumulates clips a batch at a
time, `evaluate_video` scores every usable frame of a video's held-out part with bounded memory.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from engine.train.r2v.data import Segment, TrainingDataError, VideoSource, window_batch
from models.losses import ssim
from models.r2v import R2V, R2VConfig

GRID_ROWS = 4
MOUTH_BOX = 0.25  # the mouth region is a box of this fraction of the frame side
MIN_MOUTH_BOX = 16  # pixels: room for SSIM's 11x11 window


@dataclass(frozen=True)
class Quality:
    """Held-out quality: PSNR (dB) and SSIM of whole frames and the mouth box; flicker = mean
    absolute error of frame-to-frame differences vs the ground truth's, in 8-bit levels."""

    psnr: float
    ssim: float
    mouth_psnr: float
    mouth_ssim: float
    flicker: float


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR [B] in dB of images [B, C, H, W] in 0..1."""
    return -10 * torch.log10(((x - y) ** 2).mean((1, 2, 3)).clamp_min(1e-10))


def mouth_boxes(images: Tensor, mouth: Tensor) -> Tensor:
    """Crops [B, C, b, b] of images [B, C, S, S], each centred on its mouth mask [B, S, S]."""
    s = images.shape[-1]
    b = min(s, max(int(s * MOUTH_BOX), MIN_MOUTH_BOX))
    crops = []
    for image, mask in zip(images, mouth, strict=True):
        ys, xs = mask.nonzero(as_tuple=True)
        cy, cx = (int(ys.float().mean()), int(xs.float().mean())) if len(ys) else (s // 2, s // 2)
        y0, x0 = min(max(cy - b // 2, 0), s - b), min(max(cx - b // 2, 0), s - b)
        crops.append(image[:, y0 : y0 + b, x0 : x0 + b])
    return torch.stack(crops)


class QualityMeter:
    """Running held-out metrics over clips of consecutive frames, fed in order a batch at a time:
    means over frames, flicker over the frame pairs inside each clip."""

    def __init__(self) -> None:
        self.sums = np.zeros(4)  # psnr, ssim, mouth psnr, mouth ssim
        self.frames = 0
        self.flicker_sum, self.flicker_count = 0.0, 0
        self.last: tuple[Tensor, Tensor] | None = None  # the clip's last output and target frame

    def add(self, outputs: Tensor, targets: Tensor, mouth: Tensor, new_clip: bool) -> None:
        """Output and target frames [T, 3, S, S] in 0..1, mouth masks [T, S, S]; `new_clip` when
        the first frame does not follow the last one added."""
        out_mouth, gt_mouth = mouth_boxes(outputs, mouth), mouth_boxes(targets, mouth)
        for i, value in enumerate(
            (
                psnr(outputs, targets),
                ssim(outputs, targets),
                psnr(out_mouth, gt_mouth),
                ssim(out_mouth, gt_mouth),
            )
        ):
            self.sums[i] += value.double().sum().item()
        self.frames += len(outputs)
        if self.last is not None and not new_clip:
            outputs, targets = torch.cat([self.last[0], outputs]), torch.cat([self.last[1], targets])
        error = (outputs.diff(dim=0) - targets.diff(dim=0)).abs()
        self.flicker_sum += error.double().sum().item()
        self.flicker_count += error.numel()
        self.last = outputs[-1:], targets[-1:]

    def result(self) -> Quality:
        """Flicker is NaN when no clip had two frames."""
        means = self.sums / max(self.frames, 1)
        flicker = 255 * self.flicker_sum / self.flicker_count if self.flicker_count else float("nan")
        psnr, ssim, mouth_psnr, mouth_ssim = (float(m) for m in means)
        return Quality(psnr, ssim, mouth_psnr, mouth_ssim, flicker)


def quality(outputs: Tensor, targets: Tensor, mouth: Tensor) -> Quality:
    """Consecutive output and target frames [T, 3, S, S] in 0..1, mouth masks [T, S, S]."""
    meter = QualityMeter()
    meter.add(outputs, targets, mouth, new_clip=True)
    return meter.result()


@torch.no_grad()
def run_segment(
    generate: Callable[[Tensor], Tensor], segment: Segment, config: R2VConfig, batch: int = 8
) -> Tensor:
    """Outputs [T, 3, S, S] for every frame of a segment, stacks clamped at its ends."""
    outputs = []
    for start in range(0, len(segment), batch):
        ends = list(range(start, min(start + batch, len(segment))))
        outputs.append(generate(window_batch(segment, ends, config.past, config.future).stack).float().cpu())
    return torch.cat(outputs)


def grid_row(face: Tensor, attention: Tensor, output: Tensor, target: Tensor) -> Tensor:
    """One frame's row [S, 4S, 3] uint8: rendered input | attention | output | ground truth, from
    uint8 face, attention and target [S, S(, 3)] and the output [3, S, S] in 0..1."""
    output = (output.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return torch.cat([face, attention[..., None].expand(-1, -1, 3), output, target], 1)


def grid(segment: Segment, outputs: Tensor, rows: int = GRID_ROWS) -> np.ndarray:
    """uint8 image: one row per frame, rendered input | attention | output | ground truth."""
    picks = np.linspace(0, len(segment) - 1, rows).round().astype(int)
    return torch.cat(
        [grid_row(segment.face[t], segment.attention[t], outputs[t], segment.target[t]) for t in picks]
    ).numpy()


@torch.no_grad()
def evaluate_video(
    model: R2V, source: VideoSource, batch: int = 16, grid_path: str | os.PathLike | None = None
) -> Quality:
    """Quality of `model` on every usable frame of `source`'s range (e.g. a video's held-out part),
    rendering `batch` frames (plus their stacks' context) at a time, so memory stays bounded. Each
    run of consecutive usable frames is a clip: stacks are clamped at its ends and flicker never
    spans a lost frame. With `grid_path`, writes a PNG grid of GRID_ROWS frames spread over them."""
    config, device = model.config, next(model.parameters()).device
    if not source.runs:
        raise TrainingDataError(
            "no usable frames to evaluate in frames "
            f"{source.frame_range.start}..{source.frame_range.stop - 1}"
        )
    indices = np.concatenate([np.arange(a, b) for a, b in source.runs])
    picks = set(indices[np.linspace(0, len(indices) - 1, GRID_ROWS).round().astype(int)].tolist())
    meter, rows, was_training = QualityMeter(), [], model.training
    model.eval()
    for a, b in source.runs:
        for start in range(a, b, batch):
            stop = min(start + batch, b)
            first = max(a, start - config.past)  # the context the stacks need, inside the clip
            segment = source.render(first, min(b, stop + config.future))
            ends = list(range(start - first, stop - first))
            outputs = (
                model.generate(window_batch(segment, ends, config.past, config.future).stack.to(device))
                .float()
                .cpu()
            )
            targets = segment.target[ends].permute(0, 3, 1, 2).float() / 255
            meter.add(outputs, targets, segment.mouth[ends].bool(), new_clip=start == a)
            rows += [
                grid_row(segment.face[t], segment.attention[t], outputs[i], segment.target[t])
                for i, t in enumerate(ends)
                if first + t in picks
            ]
    model.train(was_training)
    if grid_path is not None:
        path = Path(grid_path)
        Image.fromarray(torch.cat(rows).numpy()).save(path.with_name(path.name + ".tmp"), format="png")
        os.replace(path.with_name(path.name + ".tmp"), path)
    return meter.result()
