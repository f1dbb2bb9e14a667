"""Rendering-to-Video (R2V): rendered face frames + eye attention map -> photoreal frames of one person.

The input stack, [B, C_in, S, S] in 0..1, oldest first:
    3 channels per rendered face frame: `past` earlier frames, the current one, `future` later ones
    1 channel: the current frame's eye attention map (each eye's region holds its closure)
so C_in = 3 * (past + 1 + future) + 1. FACIAL's stack is past=6, future=3 (C_in = 31); live mode
is future=0 (C_in = 22): the current frame is the newest one it needs.

Two generators behind one module, `R2V`:
- full: pix2pixHD's generator: the global generator (7x7 stem, 4 downsamplings, 9 residual blocks,
  4 upsamplings, instance norm) on the input at half resolution, inside one local enhancer at full
  resolution. 512x512 by default, ~90 GMAC: a GPU network.
- lite: a U-Net for one CPU thread at 256x256 (0.45 GMAC): it works at half resolution and below
  (the stem folds each 2x2 pixel block into channels, the head unfolds it), skips are added rather
  than concatenated, convs + ReLU only, which every backend fuses. Its head predicts a flow that
  warps the canvas, a colour correction and a gain on the current rendered face (LiteUNet).

Both own a canvas: a learned [3, S, S] picture of what rarely changes (background, torso, hair at
rest). R2V is trained per person, so this is where the person's surroundings are learned; the
network sees the canvas as input and predicts its output relative to it (full: canvas + residual;
lite: canvas warped by the flow + corrections). Without it a small network would have to store the
background in its filters.

Checkpoints are dicts {"config": R2VConfig as a dict, "model": state_dict}; `R2V.from_checkpoint`
rebuilds the network from the file alone.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

VARIANTS = ("lite", "full")


class R2VError(ValueError):
    """A bad R2V configuration, input stack or checkpoint."""


@dataclass(frozen=True)
class R2VConfig:
    variant: str = "lite"  # "lite" | "full"
    size: int = 256  # frames are size x size
    past: int = 6  # rendered frames before the current one in the input stack
    future: int = 3  # rendered frames after it; 0 = live mode
    canvas: bool = True  # learn the person's static surroundings (see the module docstring)
    # lite: U-Net channel widths per level, from half resolution down
    widths: tuple[int, ...] = (16, 32, 64, 128)
    # full: pix2pixHD's ngf of the local enhancer (the global generator has twice as many), depth
    local_width: int = 32
    local_blocks: int = 3
    global_downsamples: int = 4
    global_blocks: int = 9

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))  # lists from JSON/checkpoints
        if self.variant not in VARIANTS:
            raise R2VError(f"unknown R2V variant '{self.variant}', expected one of {VARIANTS}")
        if self.past < 0 or self.future < 0:
            raise R2VError(f"past and future frame counts must be >= 0, got {self.past} and {self.future}")
        if self.size % self.downscale:
            raise R2VError(f"R2V {self.variant} needs a size divisible by {self.downscale}, got {self.size}")

    @classmethod
    def full(cls, **overrides: Any) -> R2VConfig:
        return cls(**{"variant": "full", "size": 512, **overrides})

    @property
    def downscale(self) -> int:
        """The coarsest feature map is size / downscale."""
        if self.variant == "lite":
            return 2 ** len(self.widths)
        return 2 ** (self.global_downsamples + 1)

    @property
    def frames(self) -> int:
        return self.past + 1 + self.future

    @property
    def in_channels(self) -> int:
        return 3 * self.frames + 1

    @property
    def live(self) -> bool:
        return self.future == 0


def stack_inputs(frames: Tensor, attention: Tensor) -> Tensor:
    """frames [B, F, 3, S, S] oldest first, attention [B, S, S] of the current frame -> [B, 3F + 1, S, S]."""
    b, f, c, h, w = frames.shape
    return torch.cat([frames.reshape(b, f * c, h, w), attention[:, None]], 1)


# ---- lite -----------------------------------------------------------------------------------------


def _conv_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.ReLU(inplace=True))


class LiteUNet(nn.Module):
    """Input stack [B, C, S, S] and canvas [B, 3, S, S] -> frames [B, 3, S, S]. Level 0 is S/2 with
    widths[0] channels, each next level halves. The head predicts, at S/2, a flow that warps the
    canvas (hair, neck and torso follow the head by moving what is there, not by repainting it),
    and per full-resolution pixel (unfolded from S/2) a colour correction and a gain on the
    current rendered face, which is how face detail reaches the output at full resolution."""

    grid: Tensor  # buffer [1, S, S, 2]: the identity sampling grid

    def __init__(self, in_channels: int, widths: tuple[int, ...], size: int, current: int):
        super().__init__()
        self.current = current  # first channel of the current rendered frame in the stack
        # Stem: 2x2 stride-2 convs fold each 2x2 pixel block into channels (space-to-depth), one for
        # the stack and one for the canvas: summing beats concatenating full-resolution inputs.
        self.stem_stack = nn.Conv2d(in_channels, widths[0], 2, 2)
        self.stem_canvas = nn.Conv2d(3, widths[0], 2, 2, bias=False)
        self.stem = nn.Sequential(nn.ReLU(inplace=True), *_conv_relu(widths[0], widths[0]))
        levels = range(len(widths) - 1)
        self.down = nn.ModuleList(
            nn.Sequential(_conv_relu(widths[i], widths[i + 1], 2), _conv_relu(widths[i + 1], widths[i + 1]))
            for i in levels
        )
        # Going up, channels are reduced at the coarse level (cheap) before upsampling and adding the skip.
        self.reduce = nn.ModuleList(_conv_relu(widths[i + 1], widths[i]) for i in levels)
        self.fuse = nn.ModuleList(_conv_relu(widths[i], widths[i]) for i in levels)
        self.head = nn.Conv2d(
            widths[0], 2 + 4 * 4, 3, 1, 1
        )  # flow (2) + per 2x2 pixels: colour (3) + face gain (1)
        self.unfold = nn.PixelShuffle(2)  # [B, 16, S/2, S/2] -> [B, 4, S, S]
        pixel = (torch.arange(size) + 0.5) / size * 2 - 1
        self.register_buffer(
            "grid", torch.stack(torch.meshgrid(pixel, pixel, indexing="xy"), -1)[None], persistent=False
        )  # [1, S, S, 2]

    def forward(self, stack: Tensor, canvas: Tensor) -> Tensor:
        x = self.stem(self.stem_stack(stack) + self.stem_canvas(canvas))  # [B, w0, S/2, S/2]
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)
        for i in reversed(range(len(self.down))):
            x = F.interpolate(self.reduce[i](x), scale_factor=2.0, mode="nearest") + skips[i]
            x = self.fuse[i](x)
        x = self.head(x)  # [B, 18, S/2, S/2]
        flow = F.interpolate(x[:, :2], scale_factor=2.0, mode="bilinear", align_corners=False).permute(
            0, 2, 3, 1
        )  # [B, S, S, 2]
        warped = F.grid_sample(
            canvas, self.grid + flow, mode="bilinear", padding_mode="border", align_corners=False
        )
        pixels = self.unfold(x[:, 2:])  # [B, 4, S, S]
        face = stack[:, self.current : self.current + 3]
        return warped + pixels[:, :3] + pixels[:, 3:] * face


# ---- full (pix2pixHD) -------------------------------------------------------------------------------


def _norm_relu(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.InstanceNorm2d(channels), nn.ReLU(inplace=True)]


class ResBlock(nn.Module):
    """pix2pixHD's residual block: [B, C, H, W] -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), *_norm_relu(nn.Conv2d(channels, channels, 3), channels),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class GlobalGenerator(nn.Module):
    """pix2pixHD's global generator without its output layer: [B, C, s, s] -> [B, width, s, s]."""

    def __init__(self, in_channels: int, width: int, downsamples: int, blocks: int):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), *_norm_relu(nn.Conv2d(in_channels, width, 7), width)]
        for i in range(downsamples):
            layers += _norm_relu(nn.Conv2d(width * 2**i, width * 2 ** (i + 1), 3, 2, 1), width * 2 ** (i + 1))
        layers += [ResBlock(width * 2**downsamples) for _ in range(blocks)]
        for i in reversed(range(downsamples)):
            layers += _norm_relu(
                nn.ConvTranspose2d(width * 2 ** (i + 1), width * 2**i, 3, 2, 1, output_padding=1),
                width * 2**i,
            )
        self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class LocalEnhancer(nn.Module):
    """pix2pixHD's generator with one local enhancer: [B, C, S, S] -> [B, 3, S, S]. The global
    generator (width 2w) sees the input at S/2; its features join the local branch's at S/2."""

    def __init__(self, in_channels: int, config: R2VConfig):
        super().__init__()
        w = config.local_width
        self.global_branch = GlobalGenerator(
            in_channels, 2 * w, config.global_downsamples, config.global_blocks
        )
        self.local_down = nn.Sequential(  # [B, C, S, S] -> [B, 2w, S/2, S/2]
            nn.ReflectionPad2d(3),
            *_norm_relu(nn.Conv2d(in_channels, w, 7), w),
            *_norm_relu(nn.Conv2d(w, 2 * w, 3, 2, 1), 2 * w),
        )
        self.local_up = nn.Sequential(  # [B, 2w, S/2, S/2] -> [B, 3, S, S]
            *[ResBlock(2 * w) for _ in range(config.local_blocks)],
            *_norm_relu(nn.ConvTranspose2d(2 * w, w, 3, 2, 1, output_padding=1), w),
            nn.ReflectionPad2d(3), nn.Conv2d(w, 3, 7),
        )
        for m in self.modules():  # pix2pixHD's initialisation
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: Tensor) -> Tensor:
        half = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)  # pix2pixHD's input downsampler
        return self.local_up(self.local_down(x) + self.global_branch(half))


# ---- R2V ------------------------------------------------------------------------------------------


class R2V(nn.Module):
    """Input stack [B, in_channels, S, S] -> frames [B, 3, S, S] (see the module docstring)."""

    def __init__(self, config: R2VConfig):
        super().__init__()
        self.config = config
        s = config.size
        self.canvas = nn.Parameter(torch.full((1, 3, s, s), 0.5)) if config.canvas else None
        self.body: LiteUNet | LocalEnhancer
        if config.variant == "lite":
            self.body = LiteUNet(config.in_channels, config.widths, s, current=3 * config.past)
            last = self.body.head
        else:
            self.body = LocalEnhancer(config.in_channels + (3 if config.canvas else 0), config)
            last = cast(nn.Conv2d, self.body.local_up[-1])  # local_up ends in its output conv
        if last.bias is None:
            raise R2VError("the R2V output convolution needs a bias")
        nn.init.zeros_(last.weight)  # start from the canvas exactly: motion and residual are learned
        nn.init.zeros_(last.bias)

    def forward(self, stack: Tensor) -> Tensor:
        """Raw output for training (not clamped): [B, 3, S, S], 0..1 where it matters."""
        c, s = self.config.in_channels, self.config.size
        if stack.shape[1:] != (c, s, s):
            raise R2VError(
                f"R2V {self.config.variant} expects input stacks of shape [B, {c}, {s}, {s}], got "
                f"{list(stack.shape)}"
            )
        base = (
            torch.full_like(stack[:, :3], 0.5)
            if self.canvas is None
            else self.canvas.expand(stack.shape[0], -1, -1, -1)
        )
        if self.config.variant == "lite":
            return self.body(stack, base)
        return base + self.body(stack if self.canvas is None else torch.cat([stack, base], 1))

    @torch.no_grad()
    def generate(self, stack: Tensor) -> Tensor:
        """Frames for display: [B, 3, S, S] in 0..1."""
        return self(stack).clamp(0, 1)

    def checkpoint(self) -> dict:
        return {"config": asdict(self.config), "model": self.state_dict()}

    @classmethod
    def from_checkpoint(cls, checkpoint: dict | str | os.PathLike) -> R2V:
        """A network rebuilt from a checkpoint dict or file (its config included), in eval mode."""
        if isinstance(checkpoint, dict):
            data = checkpoint
        else:
            try:
                data = torch.load(checkpoint, map_location="cpu", weights_only=True)
            except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
                raise R2VError(
                    f"{checkpoint}: not a readable R2V checkpoint ({str(e).splitlines()[0]})"
                ) from None
        try:
            model = cls(R2VConfig(**data["config"]))
            model.load_state_dict(data["model"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise R2VError(
                f"not an R2V checkpoint or it does not match its config ({str(e).splitlines()[0]})"
            ) from None
        return model.eval()


def count_gmacs(model: nn.Module, example: Tensor) -> float:
    """Multiply-accumulates of one forward pass per batch item, in billions (convs and matmuls)."""
    with FlopCounterMode(display=False) as counter:  # (its module tracker fails under no_grad)
        model(example)
    return counter.get_total_flops() / 2 / len(example) / 1e9
