"""pix2pixHD's multi-scale PatchGAN discriminator, conditioned on the generator's input.

Each scale is a PatchGAN (4x4 convs, stride 2, LeakyReLU 0.2, instance norm after the first layer)
that scores overlapping patches; scale k sees the image downsampled 2^k times, so the coarse
scales judge global structure and the fine one texture. Every layer's output is returned, for
the feature-matching loss.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn
from torch.nn import functional as F


@dataclass(frozen=True)
class PatchGANConfig:
    in_channels: int  # image (3) + conditioning channels
    width: int = 64  # ndf: channels of the first layer, doubled per layer up to 8x
    layers: int = 3  # strided layers per scale
    scales: int = 3


class PatchGAN(nn.Module):
    """[B, C, H, W] -> list of per-layer features, the last one [B, 1, h, w] patch scores."""

    def __init__(self, in_channels: int, width: int, layers: int):
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, width, 4, 2, 2), nn.LeakyReLU(0.2, inplace=True))
        ]
        channels = width
        for i in range(1, layers + 1):
            out = width * min(2**i, 8)
            stride = 2 if i < layers else 1  # the last one keeps the resolution, as in pix2pixHD
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels, out, 4, stride, 2),
                    nn.InstanceNorm2d(out),
                    nn.LeakyReLU(0.2, inplace=True),
                )
            )
            channels = out
        blocks.append(nn.Conv2d(channels, 1, 4, 1, 2))
        self.blocks = nn.ModuleList(blocks)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features


class MultiScaleDiscriminator(nn.Module):
    """[B, C, H, W] -> one feature list per scale, finest first."""

    def __init__(self, config: PatchGANConfig):
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(
            PatchGAN(config.in_channels, config.width, config.layers) for _ in range(config.scales)
        )

    def forward(self, x: Tensor) -> list[list[Tensor]]:
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs
