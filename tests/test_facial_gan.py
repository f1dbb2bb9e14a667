"""FACIAL-GAN network: shapes, the initial state's role, statistics, losses, checkpoints."""
from __future__ import annotations

import pytest
import torch

from engine.train.gan.train import PRESS, lips_closed
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

SMALL = FacialGANConfig(
    feature_dim=5, num_params=32, window=32, width=4, unet_channels=(1, 2, 2), disc_width=8
)


def _inputs(batch=2, config=SMALL):
    torch.manual_seed(0)
    return torch.randn(batch, config.window, config.local_window, config.feature_dim), torch.randn(
        batch, config.num_params
    )


def test_generator_and_discriminator_shapes():
    model = FacialGAN(SMALL).eval()
    windows, initial = _inputs()
    out = model(windows, initial)
    assert out.shape == (2, SMALL.window, SMALL.num_params)
    scores = TemporalDiscriminator(SMALL)(model.normalize(out))
    assert scores.shape == (2, 1, SMALL.window // 2**SMALL.disc_layers)


def test_the_last_frames_alone_are_the_same_as_in_the_whole_window():
    model = FacialGAN(SMALL).eval()
    windows, initial = _inputs()
    with torch.no_grad():
        assert torch.allclose(model(windows, initial, last=3), model(windows, initial)[:, -3:], atol=1e-6)


def test_paper_config_fits_the_weight_budget():
    params = sum(p.numel() for p in FacialGAN(FacialGANConfig()).parameters())
    assert 4 * params < 40e6  # float32 under 40 MB


def test_output_depends_on_the_initial_state_and_on_each_frame_local_window():
    model = FacialGAN(SMALL).eval()
    windows, initial = _inputs(1)
    base = model(windows, initial)
    assert not torch.allclose(base, model(windows, initial + 1))
    changed = windows.clone()
    changed[0, 10] += 3.0  # only frame 10's local window (the centre too: the context sees it)
    delta = (model(changed, initial) - base).abs().sum(-1)[0]
    assert delta[10] > 0
    assert delta.argmax() == 10


def test_statistics_make_outputs_raw_units():
    model = FacialGAN(SMALL).eval()
    params = torch.randn(500, SMALL.num_params) * 3 + 7
    params[:, 5] = 1.0  # a constant column keeps unit scale instead of dividing by zero
    model.set_statistics(torch.randn(500, SMALL.feature_dim), params)
    assert torch.allclose(model.param_mean, params.mean(0))
    assert model.param_std[5] == 1.0
    with torch.no_grad():
        out = model(*_inputs())
    assert torch.isfinite(out).all() and abs(float(out.mean()) - 7) < 3


def test_window_must_fit_the_unet():
    with pytest.raises(ValueError, match="multiple"):
        FacialGANConfig(window=100)
    with pytest.raises(ValueError, match="local window"):
        FacialGANConfig(local_before=4)


def test_losses_terms_and_weights():
    real = torch.zeros(2, 8, 32)
    fake = real.clone()
    fake[:, :, 7] = 1.0  # expression off by 1 everywhere, no motion error
    scores = torch.ones(2, 1, 4)  # the discriminator is fooled
    total, terms = generator_loss(fake, real, scores, LossWeights(), first_frame=False)
    assert terms["expression"] == pytest.approx(1 / 25)  # one of 25 expression columns
    assert terms["pose"] == terms["blink"] == terms["motion"] == terms["gan"] == 0
    assert float(total) == pytest.approx(2 / 25)
    _, terms = generator_loss(fake, real, scores, LossWeights(), first_frame=True)
    assert terms["first_frame"] == pytest.approx(1 / 32)
    fake[:, 4:, 0] = 1.0  # a pose step: one frame of motion error
    _, terms = generator_loss(fake, real, scores, LossWeights(), first_frame=False)
    assert terms["motion"] == pytest.approx(
        1.0 * 2 / (2 * 7 * 6) * 1
    )  # weight 1 (pose), one step per batch item
    assert float(discriminator_loss(torch.ones(3), torch.zeros(3))) == 0


def test_checkpoint_round_trip(tmp_path):
    model = FacialGAN(SMALL).eval()
    model.set_statistics(torch.randn(50, 5), torch.randn(50, 32))
    path = tmp_path / "g.pt"
    torch.save(checkpoint(model, {"feature_kind": "test"}, step=3), path)
    state = torch.load(path, weights_only=True)
    assert state["meta"] == {"feature_kind": "test"} and state["step"] == 3
    again = generator_from_checkpoint(state)
    assert again.config == SMALL
    windows, initial = _inputs()
    assert torch.equal(again(windows, initial), model(windows, initial))


def test_closure_term_weighs_the_frames_with_closed_lips():
    real = torch.zeros(2, 8, 32)
    real[:, 3:5, PRESS] = 1.0  # two frames with the lips pressed together
    fake = real.clone()
    fake[:, 3:5, PRESS] = 0.0  # ... which the generator misses
    scores = torch.ones(2, 1, 4)
    closed = lips_closed(real)
    assert closed[:, 3:5].all() and closed.sum() == 4
    _, paper = generator_loss(fake, real, scores, LossWeights(), False, closed)
    assert "closure" not in paper  # weight 0: the paper's loss
    total, terms = generator_loss(fake, real, scores, LossWeights(closure=1.0), False, closed)
    assert terms["closure"] == pytest.approx(2 / 25)  # 2 of 25 expression columns off by 1 there
    assert terms["expression"] == pytest.approx(2 * 2 / (8 * 25))
    assert float(total) == pytest.approx(2 * terms["expression"] + terms["closure"] + 10 * terms["motion"])
