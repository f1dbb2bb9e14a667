"""FACIAL-GAN (Zhang et al., ICCV 2021): speech features -> per-frame face attributes.

A window of T frames (T = 128) of speech features, each frame with its local window of W = 16
frames (t-8..t+7), and the attributes of the window's first frame (the previous window's output:
the "initial state") -> attributes [T, P], P = 7 + K in FaceParams' column order: pose[6], blink,
K rig weights. Following the released code (github.com/zhangchenxu528/FACIAL, audio2face/model.py):

  context encoder   centre frames [B, F, T] -> front-end convs -> 1-D U-Net over the window (5
                    levels, pix2pix skip blocks, tanh out) -> concat the initial state on every
                    frame -> convs -> a context vector per frame [B, T, C]
  frame generator   shared by all frames: its local window [W, F] -> strided convs over the window
                    -> fc -> concat the frame's context vector -> fc -> attributes [P]
  discriminator     temporal PatchGAN (LSGAN) on the attribute sequence and its frame differences

Two deliberate changes from the released code, both to stay feature-agnostic: features are conv
channels (the original convolves the 29 DeepSpeech letters as an image axis, which ties the layout
to one feature kind), and the discriminator is 1-D over time with attributes (+ differences) as
channels, instead of a 2-D PatchGAN over the [time, attribute] image. Features and attributes are
normalised by per-column statistics stored in the model, so checkpoints carry their own scale.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# FaceParams column groups (engine/types.py): pose[6], blink, then the rig weights.
POSE = slice(0, 6)
BLINK = slice(6, 7)
EXPRESSION = slice(7, None)


@dataclass(frozen=True)
class FacialGANConfig:
    feature_dim: int = 29  # F: DeepSpeech letters; the built-in features have their own
    num_params: int = 32  # P = 7 + K
    window: int = 128  # T, frames per window; a multiple of 2 ** len(unet_channels)
    local_before: int = 8  # frame t's local window is t - local_before .. t + local_after
    local_after: int = 7
    width: int = 64  # ngf: the U-Net's channels are multiples of it
    unet_channels: tuple[int, ...] = (4, 4, 8, 8, 8)  # x width, one entry per level (128 -> 4 frames)
    context_dim: int = 32  # C, context vector per frame
    frame_channels: tuple[int, ...] = (32, 32, 64, 64)  # strided convs over the local window: 16 -> 1
    frame_hidden: int = 32
    disc_width: int = 64  # ndf
    disc_layers: int = 3

    def __post_init__(self) -> None:
        levels = 2 ** len(self.unet_channels)
        if self.window % levels:
            raise ValueError(
                f"window {self.window} is not a multiple of {levels} (the U-Net's {len(self.unet_channels)} "
                "levels)"
            )
        if self.local_window != 2 ** len(self.frame_channels):
            raise ValueError(
                f"local window {self.local_window} must be {2 ** len(self.frame_channels)} for "
                f"{len(self.frame_channels)} strided convs"
            )

    @property
    def local_window(self) -> int:  # W
        return self.local_before + 1 + self.local_after


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv1d(cin, cout, kernel, stride, kernel // 2), nn.BatchNorm1d(cout), nn.LeakyReLU(0.2)]


class UNet1d(nn.Module):
    """pix2pix's U-Net in 1-D: [B, C_in, T] -> [B, C_out, T]. Each level halves T (conv 4, stride
    2) and its up path doubles it back, concatenating the level's input (the skip)."""

    def __init__(self, in_channels: int, out_channels: int, channels: list[int]):
        super().__init__()
        outer = [in_channels, *channels[:-1]]  # each level's input channels
        depth = len(channels)
        self.downs = nn.ModuleList()
        self.ups = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip(outer, channels, strict=False)):
            down: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2)]
            down.append(nn.Conv1d(cin, cout, 4, 2, 1, bias=i in (0, depth - 1)))
            if 0 < i < depth - 1:
                down.append(nn.BatchNorm1d(cout))
            self.downs.append(nn.Sequential(*down))
            up_in = cout if i == depth - 1 else 2 * cout  # the innermost level has no skip below it
            if i == 0:
                self.ups.append(
                    nn.Sequential(nn.ReLU(), nn.ConvTranspose1d(up_in, out_channels, 4, 2, 1), nn.Tanh())
                )
            else:
                self.ups.append(
                    nn.Sequential(
                        nn.ReLU(), nn.ConvTranspose1d(up_in, cin, 4, 2, 1, bias=False), nn.BatchNorm1d(cin)
                    )
                )

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for down in self.downs:
            skips.append(x)
            x = down(x)
        for i in reversed(range(len(self.ups))):
            x = self.ups[i](x)
            if i > 0:
                x = torch.cat([skips[i], x], 1)
        return x


class ContextEncoder(nn.Module):
    """Centre-frame features [B, F, T] + initial state [B, P] -> context vectors [B, T, C]."""

    def __init__(self, c: FacialGANConfig):
        super().__init__()
        hidden = c.unet_channels[0] * c.width
        self.front = nn.Sequential(*_conv(c.feature_dim, hidden), *_conv(hidden, hidden))
        self.unet = UNet1d(hidden, hidden, [m * c.width for m in c.unet_channels])
        self.fuse = nn.Sequential(
            *_conv(hidden + c.num_params, hidden),
            *_conv(hidden, hidden),
            nn.Conv1d(hidden, c.context_dim, 3, 1, 1),
        )

    def forward(self, features: Tensor, initial: Tensor) -> Tensor:
        x = self.unet(self.front(features))  # [B, H, T]
        state = initial[:, :, None].expand(-1, -1, x.shape[2])  # [B, P, T]
        return self.fuse(torch.cat([x, state], 1)).transpose(1, 2)  # [B, T, C]


class FrameGenerator(nn.Module):
    """One frame: local window [N, F, W] + context [N, C] -> attributes [N, P]."""

    def __init__(self, c: FacialGANConfig):
        super().__init__()
        layers: list[nn.Module] = []
        cin = c.feature_dim
        for cout in c.frame_channels:  # conv -> ReLU -> BN, as the released code; W halves each time
            layers += [nn.Conv1d(cin, cout, 3, 2, 1), nn.ReLU(), nn.BatchNorm1d(cout)]
            cin = cout
        self.convs = nn.Sequential(*layers)
        self.fc1 = nn.Linear(cin, c.frame_hidden)
        self.norm = nn.BatchNorm1d(c.frame_hidden)
        self.fc2 = nn.Linear(c.frame_hidden + c.context_dim, c.num_params)

    def forward(self, window: Tensor, context: Tensor) -> Tensor:
        x = self.convs(window).squeeze(2)  # [N, 64]
        x = self.norm(torch.tanh(self.fc1(x)))  # [N, hidden]
        return self.fc2(torch.cat([x, context], 1))


class FacialGAN(nn.Module):
    """The generator. Inputs and outputs in raw units; normalisation happens inside."""

    feature_mean: Tensor  # buffers [feature_dim] and [num_params], see __init__
    feature_std: Tensor
    param_mean: Tensor
    param_std: Tensor

    def __init__(self, config: FacialGANConfig):
        super().__init__()
        self.config = config
        self.context = ContextEncoder(config)
        self.frame = FrameGenerator(config)
        # Per-column statistics of the training data (set by the trainer, saved with the weights).
        self.register_buffer("feature_mean", torch.zeros(config.feature_dim))
        self.register_buffer("feature_std", torch.ones(config.feature_dim))
        self.register_buffer("param_mean", torch.zeros(config.num_params))
        self.register_buffer("param_std", torch.ones(config.num_params))

    def normalize(self, params: Tensor) -> Tensor:
        return (params - self.param_mean) / self.param_std

    def forward(self, windows: Tensor, initial: Tensor, last: int | None = None) -> Tensor:
        """windows [B, T, W, F] (frame t's features t-8..t+7), initial [B, P] -> params [B, T, P],
        or [B, last, P]: the same params of the last `last` frames only (a frame needs the whole
        window's context but only its own local window; streaming uses a window's last frames)."""
        B, T, W, _ = windows.shape
        n = T if last is None else last
        centre = (windows[:, :, self.config.local_before] - self.feature_mean) / self.feature_std  # [B, T, F]
        context = self.context(centre.transpose(1, 2), self.normalize(initial))[:, T - n :]  # [B, n, C]
        local = ((windows[:, T - n :] - self.feature_mean) / self.feature_std).transpose(2, 3)  # [B, n, F, W]
        out = self.frame(local.reshape(B * n, -1, W), context.reshape(B * n, -1))  # [B*n, P]
        return out.view(B, n, -1) * self.param_std + self.param_mean

    def set_statistics(self, features: Tensor, params: Tensor) -> None:
        """features [N, F], params [N, P] of the training set; constant columns keep unit scale."""
        for name, data in (("feature", features), ("param", params)):
            std = data.std(0)
            getattr(self, f"{name}_mean").copy_(data.mean(0))
            getattr(self, f"{name}_std").copy_(torch.where(std > 1e-4, std, torch.ones_like(std)))


class TemporalDiscriminator(nn.Module):
    """Temporal PatchGAN: normalised attributes [B, T, P] -> patch scores [B, 1, T / 2**layers].
    It sees each frame's values and its difference to the previous frame (motion)."""

    def __init__(self, config: FacialGANConfig):
        super().__init__()
        d = config.disc_width
        layers: list[nn.Module] = [nn.Conv1d(2 * config.num_params, d, 3, 2, 1), nn.LeakyReLU(0.2)]
        channels = d
        for i in range(1, config.disc_layers + 1):
            out = d * min(2**i, 8)
            layers += _conv(channels, out, 3, 2 if i < config.disc_layers else 1)
            channels = out
        layers.append(nn.Conv1d(channels, 1, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, params: Tensor) -> Tensor:
        motion = F.pad(params[:, 1:] - params[:, :-1], (0, 0, 1, 0))  # [B, T, P], zero motion at t = 0
        return self.model(torch.cat([params, motion], 2).transpose(1, 2))


@dataclass(frozen=True)
class LossWeights:
    """FACIAL's w = (2, 1, 5, 10, 10, 0.1), in the paper's order of terms. The released fine-tuning
    script (audio2face/fintuning2-trainheadpose.py) has the same structure: the first-frame term
    at 10, the GAN term at 0.1, and each attribute's motion term at 10x its value term (pose 1/10,
    expression 20/200); its absolute expression and blink weights differ (20 and 0.5), because
    its attributes are not normalised. Here every attribute is normalised, so the paper's values apply."""

    expression: float = 2.0  # w1: L2 on the rig weights
    pose: float = 1.0  # w2: L2 on the head pose
    blink: float = 5.0  # w3: L2 on the blink (AU45)
    first_frame: float = 10.0  # w4: L1 between the first frame and the initial state (personal fine-tuning)
    motion: float = 10.0  # w5: L2 on frame differences, each attribute weighted as its value term
    gan: float = 0.1  # w6: LSGAN generator term
    # Ours, not the paper's: L2 on the rig weights at frames whose target has the lips closed, so
    # the brief p/b/m closures (a few frames in 100) are not averaged away; 0 = the paper's loss.
    closure: float = 0.0


def generator_loss(
    fake: Tensor,
    real: Tensor,
    fake_scores: Tensor,
    weights: LossWeights,
    first_frame: bool,
    closed: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Normalised attributes fake, real [B, T, P]; discriminator scores of fake; closed [B, T]:
    frames whose target has the lips closed (the closure term; None: no such term) -> (total, terms)."""
    dfake, dreal = fake[:, 1:] - fake[:, :-1], real[:, 1:] - real[:, :-1]
    terms = {}
    motion = fake.new_zeros(())
    for name, cols in (("expression", EXPRESSION), ("pose", POSE), ("blink", BLINK)):
        terms[name] = F.mse_loss(fake[:, :, cols], real[:, :, cols])
        motion = motion + getattr(weights, name) * F.mse_loss(dfake[:, :, cols], dreal[:, :, cols])
    terms["motion"] = motion
    terms["gan"] = F.mse_loss(fake_scores, torch.ones_like(fake_scores))
    if first_frame:
        terms["first_frame"] = F.l1_loss(fake[:, 0], real[:, 0])
    if closed is not None and weights.closure:
        error = (fake - real)[closed][:, EXPRESSION]  # [closed frames, K]
        terms["closure"] = error.pow(2).mean() if len(error) else fake.new_zeros(())
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    return total, {name: float(value.detach()) for name, value in terms.items()}


def discriminator_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """LSGAN: real patches -> 1, generated -> 0."""
    return F.mse_loss(real_scores, torch.ones_like(real_scores)) + F.mse_loss(
        fake_scores, torch.zeros_like(fake_scores)
    )


def checkpoint(generator: FacialGAN, meta: dict, **training_state: object) -> dict:
    """What a checkpoint file holds: the config (so the model can be rebuilt), the generator's
    weights and statistics, `meta` (feature kind, rig version, column names...) and anything a
    resumed training run needs (discriminator, optimisers, step)."""
    return {
        "config": asdict(generator.config),
        "generator": generator.state_dict(),
        "meta": dict(meta),
        **training_state,
    }


def generator_from_checkpoint(state: dict) -> FacialGAN:
    """A checkpoint dict (from torch.load) -> the generator in eval mode."""
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()}
    config = FacialGANConfig(**fields)
    model = FacialGAN(config)
    model.load_state_dict(state["generator"])
    return model.eval()
