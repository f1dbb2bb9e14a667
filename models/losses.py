"""R2V training losses: LSGAN, discriminator feature matching, L1 and a perceptual term.

Generator:      GAN + 2 * feature matching + 10 * perceptual + 50 * L1   (FACIAL's lambda = (2, 10, 50))
Discriminator:  LSGAN, real patches -> 1, generated -> 0.

Perceptual term: 1 - MS-SSIM instead of VGG features. Pretrained VGG weights cannot be downloaded
here, and a VGG with random weights measures nothing useful; MS-SSIM needs no weights, tracks
perceived quality far better than L1 and punishes exactly what L1 tolerates: blur and lost fine
structure (teeth edges, lashes), at several scales.

Mouth and eyes, where viewers notice errors first, carry extra weight: L1 and the full-resolution
SSIM term are weighted means with per-pixel weights 1 + mouth * mouth_mask + eyes * eye_mask.
"""
from __future__ import annotations

import functools
import math
import operator
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

MS_SSIM_SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # for images in 0..1


@dataclass(frozen=True)
class LossWeights:
    gan: float = 1.0
    feature_matching: float = 2.0
    perceptual: float = 10.0
    l1: float = 50.0
    mouth: float = 8.0  # extra per-pixel weight inside the mouth region
    eyes: float = 8.0  # ... and the eye regions


def region_weights(mouth: Tensor, eyes: Tensor, weights: LossWeights) -> Tensor:
    """Masks [B, H, W] in 0..1 -> per-pixel weights [B, 1, H, W]."""
    return (1.0 + weights.mouth * mouth + weights.eyes * eyes)[:, None]


def weighted_l1(output: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
    """Images [B, C, H, W], weight [B, 1, H, W] or None -> scalar mean absolute error."""
    error = (output - target).abs().mean(1, keepdim=True)
    return error.mean() if weight is None else (weight * error).sum() / weight.sum()


def _gaussian_window(channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    x = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, -1, -1).contiguous()  # [C, 1, 11, 11]


def ssim_maps(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Images [B, C, H, W] in 0..1 -> (luminance * contrast-structure, contrast-structure) maps,
    each [B, C, H - 10, W - 10] (valid Gaussian windows only)."""
    window = _gaussian_window(x.shape[1], x.device, x.dtype)
    blur = lambda t: F.conv2d(t, window, groups=x.shape[1])  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    cs = (2 * cov + SSIM_C2) / (vx + vy + SSIM_C2)
    luminance = (2 * mx * my + SSIM_C1) / (mx**2 + my**2 + SSIM_C1)
    return luminance * cs, cs


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Per-image SSIM [B] of images [B, C, H, W] in 0..1."""
    return ssim_maps(x, y)[0].mean((1, 2, 3))


def _weighted_mean(values: Tensor, weight: Tensor | None) -> Tensor:
    """values [B, C, h, w], weight [B, 1, H, W] (cropped to the valid windows) -> [B]."""
    if weight is None:
        return values.mean((1, 2, 3))
    margin = (weight.shape[-1] - values.shape[-1]) // 2
    w = weight[..., margin : margin + values.shape[-2], margin : margin + values.shape[-1]]
    return (values * w).sum((1, 2, 3)) / (w.sum((1, 2, 3)) * values.shape[1])


def ms_ssim(x: Tensor, y: Tensor, weight: Tensor | None = None) -> Tensor:
    """Per-image multi-scale SSIM [B] of images [B, C, H, W] in 0..1. As many of the five standard
    scales as the image allows (the coarsest must still hold one 11x11 window); the finest scale's
    mean is weighted by `weight` [B, 1, H, W] when given."""
    side = min(x.shape[-2:])
    if side < SSIM_WINDOW:
        raise ValueError(
            f"MS-SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {list(x.shape[-2:])}"
        )
    scales = min(len(MS_SSIM_SCALE_WEIGHTS), 1 + int(math.log2(side / SSIM_WINDOW)))
    betas = torch.tensor(MS_SSIM_SCALE_WEIGHTS[:scales], device=x.device, dtype=x.dtype)
    betas = betas / betas.sum()
    factors = []
    for i in range(scales):
        both, cs = ssim_maps(x, y)
        value = both if i == scales - 1 else cs
        factors.append(
            _weighted_mean(value, weight if i == 0 else None).clamp_min(1e-6)
        )  # relu as in common ports: no NaN powers
        x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return torch.prod(torch.stack(factors, 0) ** betas[:, None], 0)


def _total(terms: Iterable[Tensor]) -> Tensor:
    """The sum of one or more loss terms (the builtin sum starts from the int 0)."""
    return functools.reduce(operator.add, terms)


def lsgan_discriminator(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """Discriminator outputs per scale (last entry = patch scores) -> scalar LSGAN loss."""
    return _total(
        0.5 * (((r[-1] - 1) ** 2).mean() + (f[-1] ** 2).mean()) for r, f in zip(real, fake, strict=True)
    )


def lsgan_generator(fake: list[list[Tensor]]) -> Tensor:
    return _total(((f[-1] - 1) ** 2).mean() for f in fake)


def feature_matching(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """L1 between the discriminator's intermediate features on real and generated images, every
    layer but the scores, per scale; pix2pixHD's normalisation (4 / layers / scales)."""
    return _total(
        (4.0 / (len(r) - 1) / len(real)) * (fl - rl.detach()).abs().mean()
        for r, f in zip(real, fake, strict=True)
        for rl, fl in zip(r[:-1], f[:-1], strict=True)
    )


def generator_losses(
    output: Tensor,
    target: Tensor,
    weight: Tensor | None,
    weights: LossWeights,
    d_fake: list[list[Tensor]] | None = None,
    d_real: list[list[Tensor]] | None = None,
) -> dict[str, Tensor]:
    """Every generator term, weighted, and their sum as "total". Without discriminator outputs
    (pre-training, or no GAN) only the reconstruction terms are used."""
    losses = {
        "l1": weights.l1 * weighted_l1(output, target, weight),
        "perceptual": weights.perceptual * (1 - ms_ssim(output.clamp(0, 1), target, weight)).mean(),
    }
    if d_fake is not None and d_real is not None:
        losses["gan"] = weights.gan * lsgan_generator(d_fake)
        losses["feature_matching"] = weights.feature_matching * feature_matching(d_real, d_fake)
    losses["total"] = _total(losses.values())
    return losses
