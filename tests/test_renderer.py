"""The avatar renderer: composite, face render and eye attention, checked on the built-in avatar."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.nn.functional import interpolate as resize

from engine.face import topology
from engine.pipeline.demo import demo_sequence
from engine.pipeline.idle import BREATH_RISE, IdleAvatar, IdleMotion, blink_curve
from engine.render.raster import rasterize
from engine.render.renderer import WARP_GRID, AvatarRenderer
from engine.types import FPS, PARAM_NAMES, POSE_NAMES, FaceParams


@pytest.fixture(scope="module")
def renderer(avatar):
    return AvatarRenderer(avatar, 256)


def with_(avatar, **values) -> FaceParams:
    """The reference frame with rig weights or blink set, or the pose moved by an offset."""
    row = avatar.reference_params.array.copy()
    for name, value in values.items():
        column = PARAM_NAMES.index(name)
        row[0, column] = row[0, column] + value if name in POSE_NAMES else value
    return FaceParams(row)


def mouth_box(avatar, margin=6):
    lips = avatar.uv[topology.regions().lips] * 256
    (x0, y0), (x1, y1) = lips.min(0).astype(int) - margin, lips.max(0).astype(int) + margin
    return slice(y0, y1), slice(x0, x1)


def test_rest_frame_is_the_reference_photo(avatar, renderer):
    frame = renderer.composite(avatar.reference_params).frames[0].numpy() * 255
    assert np.abs(frame - avatar.reference).mean() < 0.5  # grey levels


def test_open_jaw_opens_a_dark_mouth_and_leaves_the_background(avatar, renderer):
    rest = renderer.composite(avatar.reference_params).frames[0]
    open_ = renderer.composite(with_(avatar, jawOpen=1.0)).frames[0]
    ys, xs = mouth_box(avatar)
    assert (open_[ys, xs].mean(-1) < 0.25).sum() > (
        rest[ys, xs].mean(-1) < 0.25
    ).sum() + 60  # a visible cavity
    assert torch.equal(open_[:20, :20], rest[:20, :20]) and torch.equal(
        open_[:20, -20:], rest[:20, -20:]
    )  # corners still


def test_head_turn_moves_face_and_hair_but_not_corners(avatar, renderer):
    rest = renderer.composite(avatar.reference_params).frames[0]
    turned = renderer.composite(with_(avatar, yaw=0.3)).frames[0]
    ys, xs = mouth_box(avatar)
    assert (turned[ys, xs] - rest[ys, xs]).abs().mean() > 0.05
    assert (turned[:8, :8] - rest[:8, :8]).abs().mean() < 0.01  # the background barely moves


def test_face_render_is_black_outside_the_mesh(avatar, renderer):
    drawn = renderer.face(with_(avatar, jawOpen=0.5))
    outside = ~drawn.frags.mask[0]
    assert drawn.frames[0][outside].abs().max() == 0
    assert drawn.frames[0][drawn.frags.mask[0]].mean() > 0.2


def test_attention_carries_each_eyes_closure(avatar, renderer):
    both = renderer.attention(with_(avatar, blink=0.7))[0]
    assert both.max() == pytest.approx(0.7, abs=1e-5) and (both > 0).sum() > 100
    open_ = renderer.attention(avatar.reference_params)[0]
    assert open_.abs().max() == 0
    wink = renderer.attention(with_(avatar, eyeBlink_L=1.0))[0]
    left_eye_x = avatar.uv[topology.regions().eye_hole("left"), 0].mean() * 256
    xs = torch.nonzero(wink > 0.5)[:, 1].float()
    assert len(xs) > 50 and (xs - left_eye_x).abs().max() < 25  # only the left eye (image right)


def test_batch_matches_single_frames(avatar, renderer):
    params = demo_sequence(avatar.reference_params)[::100]
    batch = renderer.composite(params).frames
    single = torch.cat([renderer.composite(params[i]).frames for i in range(len(params))])
    assert torch.allclose(batch, single, atol=1e-5)


def test_compiled_composite_equals_the_tensor_code(avatar, renderer):
    """On CPU the compositor's per-pixel work runs in compiled kernels: the same frames, bit for
    bit, as its tensor code (which runs on CUDA), over whole frames and windows."""
    turned, moved = with_(avatar, yaw=0.3, jawOpen=0.8), with_(avatar, tx=2.0)
    params = FaceParams(np.concatenate([turned.array, moved.array]))
    whole = renderer.screen(params)
    windows = torch.tensor([[0.2, 0.15, 0.6], [0.1, 0.3, 0.5]])
    for window in (None, windows):
        frags = rasterize(renderer._in_windows(whole, window), renderer.faces, 256, 256)
        outside = torch.rand(2, 256, 256, 2, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
        compiled = renderer._composite_compiled(frags, outside)
        assert torch.equal(compiled, renderer._composite_tensors(frags, outside))
        assert frags.mask.float().mean() > 0.1 and compiled.std() > 0.1


def test_outside_motion_is_upsampled_bilinearly(renderer):
    field = torch.randn(2, WARP_GRID, WARP_GRID, 2, generator=torch.Generator().manual_seed(1))
    expected = resize(field.permute(0, 3, 1, 2), size=(256, 256), mode="bilinear", align_corners=False)
    assert torch.allclose(renderer._upsampled(field), expected.permute(0, 2, 3, 1), atol=1e-6)


def test_demo_shows_every_shape_blinks_and_pose(avatar):
    demo = demo_sequence(avatar.reference_params)
    assert (demo.exp.max(0) > 0.99).all()
    assert demo.blink.max() > 0.99
    swing = demo.pose.max(0) - demo.pose.min(0)
    assert (swing[:3] > 0.3).all() and (swing[3:] > 1.5).all()
    assert 15 * FPS < len(demo) < 60 * FPS


def test_idle_motion_blinks_at_a_natural_rate(avatar):
    motion = IdleMotion(avatar.reference_params, avatar.motion, seed=7)
    params = motion.params(np.arange(5 * 60 * FPS))
    closed = params.blink > 0.5
    blinks = np.count_nonzero(closed[1:] & ~closed[:-1]) / 5
    assert 10 <= blinks <= 25  # per minute
    steps = np.abs(np.diff(params.pose, axis=0)).max(0)
    assert (steps[:3] < 0.01).all()  # smooth head: under 0.6 degrees a frame
    assert (params.pose.std(0) > 0.3 * np.asarray(avatar.motion.pose_std)).all()  # but it does move
    assert np.array_equal(motion.params(1234).array, params[1234].array)  # a pure function of the index


def test_idle_motion_breathes(avatar):
    """Without head sway the head still rises and settles with each breath, 12-18 times a minute."""
    still = replace(avatar.motion, pose_std=(0.0,) * 6)
    params = IdleMotion(avatar.reference_params, still, seed=3).params(np.arange(60 * FPS))
    rise = avatar.reference_params.pose[0, 4] - params.pose[:, 4]  # y points down
    assert rise.min() == pytest.approx(0, abs=1e-6) and rise.max() == pytest.approx(BREATH_RISE, rel=1e-3)
    inhales = np.count_nonzero((rise[1:] > BREATH_RISE / 2) & (rise[:-1] <= BREATH_RISE / 2))
    assert 11 <= inhales <= 19
    assert np.abs(np.diff(rise)).max() < BREATH_RISE / 10  # smooth


def test_blink_curve_shape():
    phase = np.linspace(-0.5, 1.5, 401)
    curve = blink_curve(phase)
    assert curve.min() == 0 and curve.max() == pytest.approx(1, abs=1e-3)
    assert curve[(phase < 0) | (phase > 1)].max() == 0


def test_idle_avatar_is_a_frame_source(avatar):
    source = IdleAvatar(avatar, size=128, seed=1)
    frame = source.frame(10)
    assert source.size == 128 and frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, source.frame(10))
