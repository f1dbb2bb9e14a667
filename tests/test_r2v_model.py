"""models/r2v.py: shapes, the lite compute budget, live stacks, checkpoints."""
from __future__ import annotations

import pytest
import torch

from models.r2v import R2V, R2VConfig, R2VError, count_gmacs, stack_inputs

LITE_GMAC_BUDGET = 2.0  # per 256x256 frame (issue 6)
TINY_LITE = R2VConfig(size=32, widths=(8, 16))
TINY_FULL = R2VConfig.full(size=32, local_width=4, local_blocks=1, global_downsamples=2, global_blocks=1)


@pytest.mark.parametrize("config", [TINY_LITE, TINY_FULL], ids=["lite", "full"])
def test_forward_shapes_and_range(config):
    torch.manual_seed(0)
    model = R2V(config)
    stack = torch.rand(2, config.in_channels, config.size, config.size)
    out = model(stack)
    assert out.shape == (2, 3, config.size, config.size)
    frames = model.generate(stack)
    assert frames.min() >= 0 and frames.max() <= 1


def test_paper_stack_and_live_stack():
    assert R2VConfig().in_channels == 3 * (6 + 1 + 3) + 1  # 6 past, current, 3 future + attention
    live = R2VConfig(future=0)
    assert live.live and live.in_channels == 3 * 7 + 1
    assert not R2VConfig().live


def test_a_new_network_outputs_its_canvas():
    """The last layers start at zero: training begins from the canvas, not from noise."""
    for config in (TINY_LITE, TINY_FULL):
        model = R2V(config)
        out = model(torch.rand(1, config.in_channels, config.size, config.size))
        assert torch.allclose(out, model.canvas.expand_as(out), atol=1e-6)


def test_lite_is_within_its_compute_budget():
    model = R2V(R2VConfig())
    gmacs = count_gmacs(model, torch.zeros(1, model.config.in_channels, 256, 256))
    assert 0.1 < gmacs <= LITE_GMAC_BUDGET
    live = R2V(R2VConfig(future=0))
    assert count_gmacs(live, torch.zeros(1, live.config.in_channels, 256, 256)) <= gmacs


def test_full_is_a_pix2pixhd_class_generator():
    with torch.device("meta"):  # shapes only: counts the 512x512 network without running it
        model = R2V(R2VConfig.full())
        gmacs = count_gmacs(model, torch.zeros(1, model.config.in_channels, 512, 512))
    assert 60 < gmacs < 130


def test_stack_inputs_order():
    frames = torch.arange(4, dtype=torch.float32).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    attention = torch.full((1, 2, 2), 9.0)
    stack = stack_inputs(frames, attention)
    assert stack.shape == (1, 13, 2, 2)
    assert stack[0, :, 0, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 9]


def test_bad_configs_and_inputs_are_clear_errors():
    with pytest.raises(R2VError, match="variant"):
        R2VConfig(variant="huge")
    with pytest.raises(R2VError, match="divisible"):
        R2VConfig(size=100)
    with pytest.raises(R2VError, match="expects input stacks"):
        R2V(TINY_LITE)(torch.zeros(1, 5, 32, 32))


def test_checkpoint_round_trip_rebuilds_the_network(tmp_path):
    torch.manual_seed(0)
    model = R2V(TINY_LITE)
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    path = tmp_path / "r2v.pt"
    torch.save(model.checkpoint(), path)
    loaded = R2V.from_checkpoint(path)
    assert loaded.config == model.config and not loaded.training
    stack = torch.rand(2, TINY_LITE.in_channels, 32, 32)
    assert torch.equal(loaded(stack), model.eval()(stack))


def test_unreadable_checkpoints_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(R2VError, match="not a readable"):
        R2V.from_checkpoint(bad)
    other = R2V(R2VConfig(size=32, widths=(8, 16, 32))).checkpoint()
    with pytest.raises(R2VError, match="does not match"):
        R2V.from_checkpoint({**other, "config": {**other["config"], "widths": (8, 16)}})
