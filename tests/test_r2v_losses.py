"""models/losses.py: the R2V training losses."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from models.losses import (
    LossWeights,
    feature_matching,
    generator_losses,
    lsgan_discriminator,
    lsgan_generator,
    ms_ssim,
    region_weights,
    ssim,
    weighted_l1,
)


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(2, 3, 64, 64)


def test_ssim_is_one_for_equal_images_and_falls_with_damage(images):
    assert torch.allclose(ssim(images, images), torch.ones(2))
    assert torch.allclose(ms_ssim(images, images), torch.ones(2))
    noisy = (images + 0.1 * torch.randn_like(images)).clamp(0, 1)
    noisier = (images + 0.3 * torch.randn_like(images)).clamp(0, 1)
    assert (ms_ssim(images, noisier) < ms_ssim(images, noisy)).all()
    assert (ms_ssim(images, noisy) < 1).all()


def test_ms_ssim_punishes_blur_that_l1_barely_sees():
    torch.manual_seed(1)
    sharp = (torch.rand(1, 3, 64, 64) > 0.5).float() * 0.5 + 0.25
    blurred = F.avg_pool2d(sharp, 3, 1, 1, count_include_pad=False)
    shifted = sharp + weighted_l1(blurred, sharp)  # a brightness change of the same L1 error
    assert weighted_l1(shifted, sharp) == pytest.approx(weighted_l1(blurred, sharp).item())
    assert ms_ssim(blurred, sharp) < ms_ssim(shifted, sharp) - 0.2


def test_ms_ssim_needs_room_for_one_window():
    with pytest.raises(ValueError, match="at least 11"):
        ms_ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_region_weights_emphasise_the_mouth(images):
    mouth = torch.zeros(2, 64, 64)
    mouth[:, 40:50, 20:44] = 1
    weight = region_weights(mouth, torch.zeros_like(mouth), LossWeights(mouth=8.0))
    assert weight.shape == (2, 1, 64, 64) and weight.max() == 9 and weight.min() == 1
    damaged = images.clone()
    damaged[:, :, 40:50, 20:44] += 0.2  # an error only in the mouth
    assert weighted_l1(damaged, images, weight) > 3 * weighted_l1(damaged, images)


def test_lsgan_targets():
    ones, zeros = [[torch.ones(1, 1, 4, 4)]], [[torch.zeros(1, 1, 4, 4)]]
    assert lsgan_discriminator(ones, zeros) == 0  # a perfect discriminator
    assert lsgan_discriminator(zeros, ones) == 1
    assert lsgan_generator(ones) == 0 and lsgan_generator(zeros) == 1


def test_feature_matching_compares_intermediate_layers_only():
    real = [[torch.ones(1, 4, 8, 8), torch.ones(1, 1, 4, 4)]]
    same_features = [[torch.ones(1, 4, 8, 8), torch.zeros(1, 1, 4, 4)]]
    other_features = [[torch.zeros(1, 4, 8, 8), torch.ones(1, 1, 4, 4)]]
    assert feature_matching(real, same_features) == 0  # the scores are not matched
    assert feature_matching(real, other_features) == 4.0


def test_generator_losses_use_the_paper_weights(images):
    target = images
    output = (images + 0.05).clamp(0, 1).requires_grad_()
    d_out = [[torch.ones(2, 4, 8, 8), torch.full((2, 1, 4, 4), 0.5)]]
    d_real = [[torch.zeros(2, 4, 8, 8), torch.ones(2, 1, 4, 4)]]
    w = LossWeights()
    losses = generator_losses(output, target, None, w, d_out, d_real)
    assert set(losses) == {"l1", "perceptual", "gan", "feature_matching", "total"}
    assert losses["l1"].item() == pytest.approx(w.l1 * (output - target).abs().mean().item(), rel=1e-5)
    assert losses["gan"].item() == pytest.approx(w.gan * 0.25)
    assert losses["feature_matching"].item() == pytest.approx(w.feature_matching * 4.0)
    assert (w.feature_matching, w.perceptual, w.l1) == (2, 10, 50)
    assert losses["total"].item() == pytest.approx(
        sum(v.item() for k, v in losses.items() if k != "total"), rel=1e-6
    )
    losses["total"].backward()
    assert output.grad is not None and output.grad.abs().sum() > 0
    reconstruction_only = generator_losses(output, target, None, w)
    assert set(reconstruction_only) == {"l1", "perceptual", "total"}
