"""Training R2V for one avatar: generator + multi-scale PatchGAN, pix2pixHD's recipe.

Each step: a batch of input stacks and targets from the frame pool (engine/train/r2v/data.py), fed
by the avatar's segment source (sampled parameters for a photo avatar, its tracked video otherwise);
once the adversarial phase has started (`gan_start`), a discriminator step (LSGAN) on real and
generated frames, conditioned on the current rendered frame and its attention map; then a
generator step on GAN + feature matching + MS-SSIM + L1, mouth and eyes weighted
(models/losses.py). Adam (2e-4, betas 0.5/0.999), the learning rate constant for the first half
and decaying linearly to zero over the second, as pix2pixHD does.

The run directory holds `checkpoint.pt` (everything needed to resume, written atomically every
`checkpoint_every` steps and at the end), `val/step_NNNNNN.png` validation grids (rendered input |
attention | output | ground truth) and `metrics.jsonl`. Metrics: engine/train/r2v/quality.py.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.avatar.bundle import Avatar
from engine.render.renderer import AvatarRenderer
from engine.train.r2v.data import (
    FramePool,
    PhotoSource,
    Segment,
    SegmentSource,
    TrainingDataError,
    render_segment,
    sample_params,
)
from engine.train.r2v.quality import Quality, grid, quality, run_segment
from models.discriminators import MultiScaleDiscriminator, PatchGANConfig
from models.losses import LossWeights, generator_losses, lsgan_discriminator, region_weights
from models.r2v import R2V, R2VConfig


# Per variant: frame size, batch, discriminator (width, layers, scales). Full is pix2pixHD's;
# lite's discriminator is small enough that a CPU step is dominated by the generator.
@dataclass(frozen=True)
class VariantDefaults:
    size: int
    batch: int
    discriminator: tuple[int, int, int]  # width, layers, scales


VARIANT_DEFAULTS = {
    "lite": VariantDefaults(size=256, batch=4, discriminator=(16, 3, 2)),
    "full": VariantDefaults(size=512, batch=1, discriminator=(64, 3, 3)),
}

VAL_SEED_OFFSET = 1_000_003  # validation frames come from their own random stream: held out


@dataclass(frozen=True)
class R2VTrainConfig:
    model: R2VConfig = R2VConfig()
    steps: int = 6000
    batch: int = 4
    lr: float = 2e-4
    # The canvas starts as the reference frame, which the targets are warps of: refined slowly, so
    # that motion is learned by the flow instead of being averaged into a blurred canvas.
    canvas_lr_scale: float = 0.1
    gan_start: int = 0  # first step with the adversarial and feature-matching terms
    discriminator: PatchGANConfig = PatchGANConfig(in_channels=7)  # 3 frame + 3 current render + 1 attention
    losses: LossWeights = LossWeights()
    pool_segments: int = 24  # segments of consecutive frames kept rendered
    segment_frames: int = 96
    refresh_every: int = 25  # steps between replacing the oldest segment with a new one
    val_frames: int = 90
    val_every: int = 500
    checkpoint_every: int = 250
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> R2VTrainConfig:
        return cls(
            **{
                **d,
                "model": R2VConfig(**d["model"]),
                "discriminator": PatchGANConfig(**d["discriminator"]),
                "losses": LossWeights(**d["losses"]),
            }
        )


class R2VTrainer:
    """One avatar's R2V training run in `run_dir`; resumes from its checkpoint when there is one."""

    def __init__(
        self,
        avatar: Avatar,
        config: R2VTrainConfig,
        run_dir: str | os.PathLike,
        device: str = "cpu",
        source: SegmentSource | None = None,
        validation: Segment | None = None,
    ):
        """`source` of training segments (default: the photo avatar's sampled parameters) and the
        held-out `validation` segment (default: sampled too); a resume is given the same ones."""
        self.run_dir = Path(run_dir)
        self.device = torch.device(device)
        checkpoint_path = self.run_dir / "checkpoint.pt"
        saved = (
            torch.load(checkpoint_path, map_location=self.device, weights_only=True)
            if checkpoint_path.is_file()
            else None
        )
        if saved is not None:
            # The run's own settings win, except how long it runs (a resume may extend it).
            config = replace(R2VTrainConfig.from_dict(saved["config"]), steps=config.steps)
        self.config = config
        torch.manual_seed(config.seed)
        self.model = R2V(config.model).to(self.device)
        self.disc = MultiScaleDiscriminator(config.discriminator).to(self.device)
        canvas = [self.model.canvas] if self.model.canvas is not None else []
        body = [p for p in self.model.parameters() if all(p is not c for c in canvas)]
        groups = [{"params": body, "lr_scale": 1.0}, {"params": canvas, "lr_scale": config.canvas_lr_scale}]
        self.opt_g = torch.optim.Adam(groups, lr=config.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=config.lr, betas=(0.5, 0.999))
        self.step = 0
        if saved is not None:
            self.model.load_state_dict(saved["r2v"]["model"])
            self.disc.load_state_dict(saved["disc"])
            self.opt_g.load_state_dict(saved["opt_g"])
            self.opt_d.load_state_dict(saved["opt_d"])
            self.step = int(saved["step"])
        self.renderer = AvatarRenderer(avatar, config.model.size, self.device)
        source = source or PhotoSource(self.renderer)
        if source.renderer.size != config.model.size:
            raise TrainingDataError(
                f"the training source renders {source.renderer.size}x{source.renderer.size} frames, the "
                f"network is {config.model.size}"
            )
        # A resumed run draws new training frames (seeded by its step), the same held-out ones.
        self.pool = FramePool(
            source,
            config.pool_segments,
            config.segment_frames,
            config.model.frames,
            seed=config.seed + self.step,
        )
        if saved is None and self.model.canvas is not None:
            # Start from the person's reference frame: sharp, and what the target is a warp of.
            reference = self.renderer.composite(avatar.reference_params).frames  # [1, S, S, 3]
            self.model.canvas.data.copy_(reference.permute(0, 3, 1, 2))
        if validation is None:
            val_params = sample_params(
                avatar, config.val_frames, np.random.default_rng(config.seed + VAL_SEED_OFFSET)
            )
            validation = render_segment(self.renderer, val_params)
        if validation.face.shape[1] != config.model.size:
            raise TrainingDataError(
                f"the validation frames are {validation.face.shape[1]} pixels wide, the network is "
                f"{config.model.size}"
            )
        self.val = validation

    def learning_rate(self) -> float:
        half = self.config.steps // 2
        return self.config.lr * min(
            1.0, max(0.0, (self.config.steps - self.step) / max(1, self.config.steps - half))
        )

    def train_step(self) -> dict[str, float]:
        cfg, model_cfg = self.config, self.config.model
        batch = self.pool.sample(cfg.batch, model_cfg.past, model_cfg.future)
        stack, target = batch.stack.to(self.device), batch.target.to(self.device)
        weight = region_weights(batch.mouth.to(self.device), batch.eyes.to(self.device), cfg.losses)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = self.learning_rate() * group.get("lr_scale", 1.0)
        output = self.model(stack)
        logs = {}
        d_fake = d_real = None
        if self.step >= cfg.gan_start:
            current = 3 * model_cfg.past
            condition = torch.cat([stack[:, current : current + 3], stack[:, -1:]], 1)  # render + attention
            d_real = self.disc(torch.cat([condition, target], 1))
            loss_d = lsgan_discriminator(d_real, self.disc(torch.cat([condition, output.detach()], 1)))
            self.opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            self.opt_d.step()
            logs["d"] = loss_d.item()
            self.disc.requires_grad_(False)  # the generator's step needs no discriminator gradients
            d_fake = self.disc(torch.cat([condition, output], 1))
            d_real = [[f.detach() for f in scale] for scale in d_real]
        losses = generator_losses(output, target, weight, cfg.losses, d_fake, d_real)
        self.opt_g.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.opt_g.step()
        self.disc.requires_grad_(True)
        self.step += 1
        if self.step % cfg.refresh_every == 0:
            self.pool.refresh()
        return logs | {k: v.item() for k, v in losses.items()}

    def validate(self) -> Quality:
        """Held-out quality now; writes the validation grid and appends to metrics.jsonl."""
        self.model.eval()
        outputs = run_segment(
            lambda stack: self.model.generate(stack.to(self.device)), self.val, self.config.model
        )
        self.model.train()
        result = quality(outputs, self.val.target.permute(0, 3, 1, 2).float() / 255, self.val.mouth.bool())
        (self.run_dir / "val").mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid(self.val, outputs)).save(self.run_dir / "val" / f"step_{self.step:06d}.png")
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, **asdict(result)}) + "\n")
        return result

    def save_checkpoint(self) -> Path:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "checkpoint.pt"
        state = {
            "config": asdict(self.config),
            "step": self.step,
            "r2v": self.model.checkpoint(),
            "disc": self.disc.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }
        torch.save(state, path.with_name(path.name + ".tmp"))
        os.replace(path.with_name(path.name + ".tmp"), path)
        return path

    def export(self, path: str | os.PathLike) -> Path:
        """The generator alone ({"config", "model"}), for shipping; written atomically."""
        path = Path(path)
        torch.save(self.model.checkpoint(), path.with_name(path.name + ".tmp"))
        os.replace(path.with_name(path.name + ".tmp"), path)
        return path

    def train(self, progress: bool = True) -> Quality | None:
        """Runs up to `config.steps`, validating and checkpointing on schedule; the last validation."""
        from tqdm import tqdm

        cfg = self.config
        self.model.train()
        last = None
        with tqdm(
            total=cfg.steps, initial=self.step, desc="train-r2v", unit="step", disable=not progress or None
        ) as bar:
            while self.step < cfg.steps:
                logs = self.train_step()
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items()}, refresh=False)
                if self.step % cfg.val_every == 0 or self.step == cfg.steps:
                    last = self.validate()
                    bar.write(f"step {self.step}: {asdict(last)}")
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save_checkpoint()
        return last
