"""engine/train/r2v/train.py and r2v_data.py: sampled training data, a few steps on tiny sizes, resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from engine.render.renderer import AvatarRenderer
from engine.train.r2v.data import render_segment, sample_params, window_batch
from engine.train.r2v.quality import mouth_boxes, quality
from engine.train.r2v.train import R2VTrainConfig, R2VTrainer
from models.discriminators import PatchGANConfig
from models.r2v import R2VConfig


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these tensors are tiny and the machine's cores are shared (two threads
    fighting another process for two cores ran the GAN steps 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = R2VTrainConfig(
    model=R2VConfig(size=32, widths=(8, 16), future=1),
    batch=2,
    lr=1e-3,
    discriminator=PatchGANConfig(in_channels=7, width=8, layers=2, scales=2),
    pool_segments=2,
    segment_frames=12,
    refresh_every=1000,
    val_frames=8,
    val_every=1000,
    checkpoint_every=1000,
)


def test_sampled_params_stay_in_the_persons_range(avatar):
    params = sample_params(avatar, 300, np.random.default_rng(0))
    std = np.asarray(avatar.motion.pose_std)
    offset = params.pose - avatar.reference_params.pose
    assert (np.abs(offset) <= 2.5 * std + 1e-6).all() and (offset.std(0) > 0.3 * std).all()
    assert params.blink.max() > 0.9 and (params.exp >= 0).all() and (params.exp <= 1).all()
    assert np.abs(np.diff(params.pose, axis=0)).max() < 0.5 * std.max()  # smooth: consecutive frames


def test_segments_and_windows(avatar):
    renderer = AvatarRenderer(avatar, 64)
    segment = render_segment(renderer, sample_params(avatar, 10, np.random.default_rng(1)))
    assert segment.face.shape == (10, 64, 64, 3) and segment.face.dtype == torch.uint8
    assert segment.mouth.any() and segment.eyes.any() and not (segment.mouth & segment.eyes).any()
    batch = window_batch(segment, [0, 9], past=2, future=1)
    assert batch.stack.shape == (2, 3 * 4 + 1, 64, 64)
    first = segment.face[0].permute(2, 0, 1).float() / 255
    assert torch.equal(batch.stack[0, 0:3], first) and torch.equal(
        batch.stack[0, 6:9], first
    )  # clamped at the start
    assert torch.equal(batch.stack[1, 9:12], segment.face[9].permute(2, 0, 1).float() / 255)  # and at the end
    assert torch.equal(batch.target[1], segment.target[9].permute(2, 0, 1).float() / 255)


def test_quality_metrics():
    torch.manual_seed(0)
    frames = torch.rand(4, 3, 64, 64)
    mouth = torch.zeros(4, 64, 64, dtype=torch.bool)
    mouth[:, 40:44, 30:34] = True
    assert mouth_boxes(frames, mouth).shape == (4, 3, 16, 16)
    assert mouth_boxes(frames[:, :, :32, :32], mouth[:, :32, :32]).shape == (4, 3, 16, 16)  # room for SSIM
    perfect = quality(frames, frames, mouth)
    assert (
        perfect.psnr > 90
        and perfect.ssim == pytest.approx(1)
        and perfect.mouth_ssim == pytest.approx(1)
        and perfect.flicker == 0
    )
    still = quality(torch.full_like(frames, 0.5), frames, mouth)  # a frozen output: all the truth's
    assert still.psnr < 15 and still.mouth_psnr < 15 and still.flicker > 50  # motion is flicker error


def test_a_few_steps_lower_the_loss_and_validate(avatar, tmp_path):
    trainer = R2VTrainer(avatar, R2VTrainConfig(**{**TINY.__dict__, "steps": 40, "gan_start": 20}), tmp_path)
    losses = [trainer.train_step() for _ in range(40)]
    first, last = (np.mean([step["l1"] for step in part]) for part in (losses[:5], losses[-5:]))
    assert last < 0.8 * first
    assert "gan" not in losses[19] and "gan" in losses[20] and "d" in losses[20]
    result = trainer.validate()
    assert 0 < result.psnr < 100 and 0 < result.mouth_ssim <= 1
    assert (tmp_path / "val" / "step_000040.png").is_file()
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["step"] == 40


def test_resume_continues_at_the_same_step(avatar, tmp_path):
    config = R2VTrainConfig(**{**TINY.__dict__, "steps": 3, "checkpoint_every": 3, "val_every": 3})
    trainer = R2VTrainer(avatar, config, tmp_path)
    trainer.train(progress=False)
    assert trainer.step == 3 and (tmp_path / "checkpoint.pt").is_file()
    resumed = R2VTrainer(avatar, R2VTrainConfig(**{**config.__dict__, "steps": 5}), tmp_path)
    assert resumed.step == 3 and resumed.config.steps == 5
    for mine, theirs in zip(
        trainer.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(mine, theirs)
    assert resumed.opt_g.state_dict()["state"]  # the optimiser's moments came back too
    resumed.train(progress=False)
    assert resumed.step == 5
    assert R2VTrainer(avatar, config, tmp_path).step == 5
    exported = resumed.export(tmp_path / "r2v_lite.pt")
    assert set(torch.load(exported, weights_only=True)) == {"config", "model"}


def test_the_full_variant_trains_too(avatar, tmp_path):
    full = R2VConfig.full(size=32, local_width=4, local_blocks=1, global_downsamples=2, global_blocks=1)
    trainer = R2VTrainer(avatar, R2VTrainConfig(**{**TINY.__dict__, "model": full, "steps": 2}), tmp_path)
    logs = [trainer.train_step() for _ in range(2)]
    assert all(np.isfinite(list(step.values())).all() for step in logs) and "gan" in logs[0]
