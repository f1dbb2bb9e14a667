"""FACIAL-GAN training: windows, a loop that learns, exact resume, shipped weights."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.audio.features import frame_windows
from engine.train.gan import train as gan
from engine.types import NUM_PARAMS, PARAM_NAMES, RIG_VERSION
from models.facial_gan import FacialGANConfig

TINY = FacialGANConfig(
    feature_dim=6,
    num_params=NUM_PARAMS,
    window=32,
    width=4,
    unet_channels=(1, 2, 2),
    disc_width=8,
    disc_layers=2,
)
CONFIG = gan.TrainConfig(window=32, stride=5, batch=8, lr=3e-3, steps=4, checkpoint_every=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _sequences(count=3, frames=100, seed=0):
    """Features and params that depend on them (a smoothed linear map): something to learn."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(6, NUM_PARAMS)) * 0.3
    out = []
    for _ in range(count):
        f = rng.normal(size=(frames, 6)).astype(np.float32)
        p = np.cumsum(f @ mixing, axis=0) * 0.05
        out.append((f, p.astype(np.float32)))
    return out


def test_windows_cut_with_stride_and_local_windows_like_frame_windows():
    seqs = _sequences(count=2, frames=70)
    data = gan.Windows(seqs, TINY, stride=5)
    assert len(data) == 2 * len(range(0, 70 - 32 + 1, 5))
    windows, params = data.batch(np.array([0, len(data) - 1]))
    assert windows.shape == (2, 32, 16, 6) and params.shape == (2, 32, NUM_PARAMS)
    expected = frame_windows(seqs[0][0], pad="edge")[:32]
    assert np.array_equal(windows[0].numpy(), expected)
    k, s = data.index[-1]
    assert np.array_equal(params[1].numpy(), seqs[k][1][s : s + 32])


def test_too_short_data_is_a_clear_error():
    with pytest.raises(gan.GanDataError, match="not enough data"):
        gan.Windows([(np.zeros((10, 6)), np.zeros((10, NUM_PARAMS)))], TINY, stride=5)


def test_training_lowers_the_loss_and_records_meta(tmp_path):
    torch.manual_seed(0)
    data = gan.Windows(_sequences(), TINY, 5)
    generator = gan.fresh_generator(TINY, data)
    before = gan.validate(generator, data)
    config = dataclasses.replace(CONFIG, steps=24, checkpoint_every=12)
    state = gan.train(
        generator, data, config, tmp_path / "c.ckpt", gan.meta("test", np.zeros(6)), data, log=lambda m: None
    )
    assert gan.validate(generator, data) < 0.7 * before
    assert [h["step"] for h in state["history"]] == [12, 24] and "held_out_l2" in state["history"][-1]
    assert state["meta"]["rig_version"] == RIG_VERSION and state["meta"]["param_names"] == list(PARAM_NAMES)
    small = gan.shipped(state)
    assert (
        set(small) >= {"config", "generator", "meta"}
        and "opt_g" not in small
        and "discriminator" not in small
    )


def test_resume_continues_exactly(tmp_path):
    data = gan.Windows(_sequences(), TINY, 5)

    def fresh():
        torch.manual_seed(1)
        return gan.fresh_generator(TINY, data)

    straight = gan.train(fresh(), data, CONFIG, tmp_path / "a.ckpt", {}, log=lambda m: None)
    half = gan.train(
        fresh(), data, dataclasses.replace(CONFIG, steps=2), tmp_path / "b.ckpt", {}, log=lambda m: None
    )
    resume = gan.load(tmp_path / "b.ckpt")
    assert resume["step"] == half["step"] == 2
    again = gan.train(
        gan.resumed_generator(resume),
        data,
        CONFIG,
        tmp_path / "b.ckpt",
        {},
        resume=resume,
        log=lambda m: None,
    )
    for key, value in straight["generator"].items():
        assert torch.allclose(value.float(), again["generator"][key].float(), atol=1e-6), key


def test_causal_windows_see_nothing_after_their_end():
    seqs = _sequences(count=1, frames=80)
    data = gan.Windows(seqs, TINY, stride=5)
    full, _ = data.batch(np.array([1, 1]), np.array([False, True]))
    assert torch.equal(full[0, :25], full[1, :25])  # frames whose local windows end inside the window
    last = full[1, -1]  # the last frame's local window: its future is the last frame repeated
    assert torch.equal(
        last[TINY.local_before :],
        last[TINY.local_before : TINY.local_before + 1].expand(TINY.local_after + 1, -1),
    )
    assert not torch.equal(full[0, -1], full[1, -1])


def test_the_learning_rate_decays_to_zero_over_the_last_steps():
    config = dataclasses.replace(CONFIG, lr=1.0, steps=100, decay_fraction=0.2)
    assert [gan.learning_rate(config, s) for s in (0, 80, 90, 99)] == pytest.approx([1.0, 1.0, 0.5, 0.05])
    assert gan.learning_rate(dataclasses.replace(config, decay_fraction=0.0), 99) == 1.0
