"""FACIAL-GAN training: windows of speech features and face parameters, a plain GAN loop.

Windows of T = 128 frames are cut from every example (session or personal video) with stride 5,
as the paper. Our one addition (off in the "paper" preset): a share of windows sees no features
after the window's end, exactly as a streaming update does, so one network serves both modes. The
generator's initial state is the window's own first frame of the targets (the released code does
the same: at inference it is the previous window's output there). Each step:
the discriminator (LSGAN) on real vs generated sequences, then the generator on the weighted
losses of models/facial_gan.py. Adam as the released code: lr 1e-4 general; personal fine-tuning
starts from the general weights with lr 1e-5, batch 16, 11 epochs and the first-frame term.

Checkpoints (atomic, every `checkpoint_every` steps and at the end) hold the model config and
statistics, meta (feature kind, rig version, column names), the discriminator, both optimisers
and the step, so `--resume` continues exactly; `shipped()` strips a checkpoint to what inference needs.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine.audio.features import FeatureExtractor
from engine.errors import EngineError
from engine.train.gan.targets import LIP_PRESS
from engine.types import FPS, PARAM_NAMES, RIG_VERSION, SAMPLE_RATE
from models.facial_gan import (
    FacialGAN,
    FacialGANConfig,
    LossWeights,
    TemporalDiscriminator,
    checkpoint,
    discriminator_loss,
    generator_from_checkpoint,
    generator_loss,
)


class GanDataError(EngineError):
    """Training data or weights that FACIAL-GAN cannot be trained on."""


@dataclass(frozen=True)
class TrainConfig:
    window: int = 128
    stride: int = 5
    batch: int = 64
    lr: float = 1e-4
    steps: int = 20_000
    first_frame: bool = False  # the first-frame term (personal fine-tuning)
    causal_fraction: float = 0.0  # share of windows that see no features after their end (streaming)
    decay_fraction: float = 0.0  # the learning rate falls linearly to zero over this last share of the steps
    weights: LossWeights = field(default_factory=LossWeights)
    checkpoint_every: int = 200
    seed: int = 0


# The closure term's weight: closed frames are ~5% of the data, so at 1.0 each weighs about ten
# times as much as in the expression term (2.0 over all frames).
CLOSURE_WEIGHT = 1.0
PRESS = [PARAM_NAMES.index(f"mouthPress_{side}") for side in ("L", "R")]
CLOSED_PRESS = LIP_PRESS / 2  # targets press the lips by LIP_PRESS * closure: past half way = closed


def lips_closed(params: torch.Tensor) -> torch.Tensor:
    """Target params [B, T, P] (offsets from the rest) -> [B, T] bool: the lips are closed."""
    return params[..., PRESS].mean(-1) >= CLOSED_PRESS


# Preset -> (network, training). "paper": the released code's sizes. "cpu-small": a network a
# quarter as wide (1/16 of the compute) that trains in about an hour on one CPU thread and runs
# a streaming update in a few milliseconds.
PRESETS = {
    "paper": (FacialGANConfig(), TrainConfig()),
    "cpu-small": (
        FacialGANConfig(width=16, disc_width=32),
        TrainConfig(
            batch=32, lr=2e-4, steps=20_000, causal_fraction=0.5, decay_fraction=0.2,
            weights=LossWeights(closure=CLOSURE_WEIGHT),
        ),
    ),
}
PERSONAL = TrainConfig(batch=16, lr=1e-5, first_frame=True)  # fintuning2-trainheadpose.py
PERSONAL_EPOCHS = 11


class Windows:
    """All training windows of a list of (features [N, F], params [N, P]) sequences."""

    def __init__(self, sequences: list[tuple[np.ndarray, np.ndarray]], config: FacialGANConfig, stride: int):
        self.config = config
        before, after = config.local_before, config.local_after
        # Edges repeat the first / last frame (frame_windows(pad="edge")): sessions start and end in silence.
        self.features = [
            np.pad(f, ((before, after), (0, 0)), mode="edge").astype(np.float32) for f, _ in sequences
        ]
        self.params = [p.astype(np.float32) for _, p in sequences]
        self.index = np.array(
            [
                (k, s)
                for k, (f, _) in enumerate(sequences)
                for s in range(0, len(f) - config.window + 1, stride)
            ],
            np.int64,
        ).reshape(-1, 2)
        if len(self.index) == 0:
            raise GanDataError(
                f"no sequence is {config.window} frames long ({config.window / FPS:.1f} s): not enough data "
                "to train on"
            )

    def __len__(self) -> int:
        return len(self.index)

    def batch(self, rows: np.ndarray, causal: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """-> windows [B, T, W, F], params [B, T, P]. Rows where `causal` [B] is set see no features
        after the window's last frame (it is repeated instead), as a streaming update sees them."""
        T, W = self.config.window, self.config.local_window
        feats = np.stack([self.features[k][s : s + T + W - 1] for k, s in self.index[rows]])  # [B, T+W-1, F]
        if causal is not None:
            last = self.config.local_before + T - 1
            feats[causal, last + 1 :] = feats[causal, last : last + 1]
        windows = torch.from_numpy(feats).unfold(1, W, 1).transpose(2, 3)  # [B, T, W, F]
        params = torch.from_numpy(np.stack([self.params[k][s : s + T] for k, s in self.index[rows]]))
        return windows.contiguous(), params

    def statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.concatenate(self.features)), torch.from_numpy(np.concatenate(self.params))


def meta(feature_kind: str, silence: np.ndarray) -> dict:
    """What inference checks and needs: the feature kind and its silence row [F] (what frames
    before and after the input look like), the rig the parameters belong to."""
    return {
        "feature_kind": feature_kind, "feature_dim": len(silence), "silence": [float(v) for v in silence],
        "rig_version": RIG_VERSION, "param_names": list(PARAM_NAMES), "fps": FPS,
    }


def silence_features(extractor: FeatureExtractor) -> np.ndarray:
    """The extractor's row for silence [F]: the middle of a second of zeros."""
    return extractor.offline(np.zeros(SAMPLE_RATE, np.float32))[FPS // 2]


def train(
    generator: FacialGAN,
    data: Windows,
    config: TrainConfig,
    out: Path,
    info: dict,
    held_out: Windows | None = None,
    resume: dict | None = None,
    log=print,  # noqa: ANN001
) -> dict:
    """Train until config.steps; returns the final checkpoint dict (also written to `out`)."""
    discriminator = TemporalDiscriminator(generator.config)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr)
    step, seconds = 0, 0.0
    rng = np.random.default_rng(config.seed)
    if resume is not None:
        generator.load_state_dict(resume["generator"])
        discriminator.load_state_dict(resume["discriminator"])
        opt_g.load_state_dict(resume["opt_g"])
        opt_d.load_state_dict(resume["opt_d"])
        step, seconds = resume["step"], resume["seconds"]
        rng.bit_generator.state = resume["rng"]
        log(f"resumed at step {step}")
    history: list[dict] = list(resume["history"]) if resume else []

    def save() -> dict:
        state = checkpoint(
            generator,
            info,
            discriminator=discriminator.state_dict(),
            opt_g=opt_g.state_dict(),
            opt_d=opt_d.state_dict(),
            step=step,
            seconds=seconds,
            history=history,
            train_config=asdict(config),
            rng=rng.bit_generator.state,
        )
        save_atomic(state, out)
        return state

    state = None
    start = time.time() - seconds
    with tqdm(
        total=config.steps, initial=step, desc="train-gan", unit="step", disable=None, file=sys.stderr
    ) as bar:
        while step < config.steps:
            generator.train()
            discriminator.train()
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = learning_rate(config, step)
            windows, real = data.batch(
                rng.integers(0, len(data), config.batch), rng.random(config.batch) < config.causal_fraction
            )
            fake = generator(windows, real[:, 0])
            real_n, fake_n = generator.normalize(real), generator.normalize(fake)
            loss_d = discriminator_loss(discriminator(real_n), discriminator(fake_n.detach()))
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            discriminator.requires_grad_(False)
            closed = lips_closed(real) if config.weights.closure else None
            loss_g, terms = generator_loss(
                fake_n, real_n, discriminator(fake_n), config.weights, config.first_frame, closed
            )
            discriminator.requires_grad_(True)
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
            step += 1
            seconds = time.time() - start
            bar.update(1)
            bar.set_postfix(g=f"{loss_g.item():.3f}", d=f"{loss_d.item():.3f}")
            if step % config.checkpoint_every == 0 or step == config.steps:
                record = {
                    "step": step,
                    "seconds": round(seconds, 1),
                    "loss_g": loss_g.item(),
                    "loss_d": loss_d.item(),
                    **terms,
                }
                if held_out is not None:
                    record["held_out_l2"] = validate(generator, held_out)
                history.append(record)
                log(
                    "  "
                    + " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()
                    )
                )
                state = save()
    return state if state is not None else save()


def learning_rate(config: TrainConfig, step: int) -> float:
    """Constant, then (with decay_fraction) falling linearly to zero at the last step, as pix2pixHD."""
    decay = config.decay_fraction * config.steps
    return config.lr * min(1.0, (config.steps - step) / decay) if decay > 0 else config.lr


@torch.no_grad()
def validate(generator: FacialGAN, data: Windows, count: int = 64) -> float:
    """Mean squared error of normalised attributes on the first `count` windows, in eval mode."""
    generator.eval()
    windows, real = data.batch(np.arange(min(count, len(data))))
    fake = generator(windows, real[:, 0])
    return float(((generator.normalize(fake) - generator.normalize(real)) ** 2).mean())


def shipped(state: dict) -> dict:
    """A training checkpoint -> what inference needs (config, generator, meta, the run's history)."""
    keep = ("config", "generator", "meta", "history", "train_config", "seconds", "step")
    return {k: state[k] for k in keep if k in state}


def load(path: str | os.PathLike) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def fresh_generator(config: FacialGANConfig, data: Windows) -> FacialGAN:
    generator = FacialGAN(config)
    generator.set_statistics(*data.statistics())
    return generator


def resumed_generator(state: dict) -> FacialGAN:
    return generator_from_checkpoint(state).train()


def fine_tune(
    init: dict,
    features: np.ndarray,
    offsets: np.ndarray,
    out: Path,
    info: dict,
    steps: int | None = None,
    batch: int = PERSONAL.batch,
    epochs: int = PERSONAL_EPOCHS,
    resume: bool = False,
    log=print,  # noqa: ANN001
) -> dict:
    """Personal fine-tuning of general weights `init` on one person's features [N, F] and
    parameter offsets from their rest [N, P]: the paper's lr 1e-5, batch 16, first-frame term,
    `epochs` passes over the windows unless `steps` is given. Returns the final checkpoint (also
    in `out`, which --resume continues from)."""
    generator = resumed_generator(init)
    if generator.config.feature_dim != features.shape[1]:
        raise GanDataError(
            f"the general weights take {generator.config.feature_dim}-d features, these are "
            f"{features.shape[1]}-d"
        )
    data = Windows([(features, offsets)], generator.config, TrainConfig.stride)
    steps = steps or max(1, epochs * len(data) // batch)
    config = replace(PERSONAL, batch=batch, steps=steps)
    previous = load(out) if resume and out.exists() else None
    return train(generator, data, config, out, info, None, previous, log)


def save_atomic(state: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(state, tmp)
    os.replace(tmp, path)
