"""engine/pipeline/frames.py: R2V when the avatar has weights, the compositor otherwise, their face
region pasted into the output frame; stacks built right across calls; live mode never looks
ahead; the idle source stays a pure function. (The framing itself: tests/test_framing.py.)"""
from __future__ import annotations

import dataclasses
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from engine.avatar.bundle import add_files, load
from engine.pipeline.frames import DEFAULT_SIZE, FramesError, FrameSource, r2v_weights
from engine.pipeline.idle import IdleAvatar, IdleMotion
from engine.render.framing import PasteBack
from engine.render.renderer import AvatarRenderer
from models.r2v import R2V, R2VConfig

SIZE = 64
SHIPPED_LIMIT = 5 * 2**20  # bytes: the built-in avatar's lite weights


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bundle_with_r2v(avatar, tmp_path, future: int):
    """A copy of the built-in avatar with random small R2V weights of `future` look-ahead."""
    torch.manual_seed(0)
    model = R2V(R2VConfig(size=SIZE, widths=(8, 16), past=2, future=future))
    for p in model.parameters():
        p.data.normal_(0, 0.2)
    weights = tmp_path / "weights.pt"
    torch.save(model.checkpoint(), weights)
    bundle = tmp_path / f"avatar{future}"
    shutil.copytree(avatar.path, bundle)
    return add_files(bundle, {"r2v_lite": weights}), model.eval()


@pytest.fixture(scope="module")
def params(avatar):
    return IdleMotion(avatar.reference_params, avatar.motion, seed=3).params(np.arange(0, 40, 4))  # 10 frames


@pytest.fixture
def offline(avatar, tmp_path):
    return _bundle_with_r2v(avatar, tmp_path, future=1)


def test_compositor_without_weights(avatar, params):
    plain = dataclasses.replace(avatar, extra_files={})
    source = FrameSource(plain, size=SIZE)
    assert not source.uses_r2v and source.size == SIZE
    # By hand: the face regions drawn at the avatar's resolution, or smaller when they are shown
    # smaller, pasted into the background.
    assert source.framing.work == min(plain.resolution, source.framing.box)
    boxes = source.boxes(params)
    renderer = AvatarRenderer(plain, source.framing.work)
    regions = renderer.composite(params, source.framing.windows(boxes)).frames
    expected = PasteBack(source.framing, plain.reference)((regions * 255 + 0.5).byte(), boxes)
    assert np.array_equal(source.render(params), expected)
    with pytest.raises(FramesError, match="no r2v_lite weights"):
        FrameSource(plain, renderer="r2v")


def test_r2v_when_the_avatar_has_weights(offline, params):
    bundle, model = offline
    assert r2v_weights(bundle) == bundle.path / "r2v_lite.pt"
    source = FrameSource(bundle, size=SIZE)
    assert source.uses_r2v and source.size == SIZE and (source.past, source.future) == (2, 1)
    frames = source.render(params[:3])
    # By hand: frame 1's stack is faces 0, 0, 1, 2 (the start clamped) and its attention map.
    renderer = AvatarRenderer(bundle, SIZE)
    faces = (renderer.face(params[:3]).frames * 255 + 0.5).byte().float() / 255
    attention = (renderer.attention(params[1]) * 255 + 0.5).byte().float() / 255
    stack = torch.cat(
        [faces[[0, 0, 1, 2]].permute(0, 3, 1, 2).reshape(1, 12, SIZE, SIZE), attention[:, None]], 1
    )
    # R2V makes the whole frame it was trained on; its face region is cut out and pasted.
    paste, box = PasteBack(source.framing, bundle.reference), source.boxes(params[1])
    expected = paste(paste.cut(model.generate(stack).permute(0, 2, 3, 1), box), box)[0]
    assert frames.shape == (3, SIZE, SIZE, 3) and frames.dtype == np.uint8
    assert np.abs(frames[1].astype(int) - expected).max() <= 1
    # The compositor on request; R2V's face region goes into frames of any size.
    assert not FrameSource(bundle, renderer="composite").uses_r2v
    large = FrameSource(bundle, renderer="r2v")
    assert large.uses_r2v and large.size == DEFAULT_SIZE
    assert large.render(params[:1]).shape == (1, DEFAULT_SIZE, DEFAULT_SIZE, 3)


def test_history_carries_across_calls(offline, params):
    bundle, _ = offline
    whole = FrameSource(bundle, live=True).render(params)
    source = FrameSource(bundle, live=True)
    pieces = np.concatenate(
        [source.render(params[:4]), source.render(params[4:5]), source.render(params[5:])]
    )
    assert np.abs(pieces.astype(int) - whole).max() <= 1  # batches of another size may round differently
    source.reset()
    assert np.array_equal(source.render(params[:4]), whole[:4])


def test_live_mode_never_uses_future_frames(offline, params):
    bundle, _ = offline
    changed = params.array.copy()
    changed[5:, 7] += 0.8  # the jaw opens from frame 5 on
    for live, same in ((True, 5), (False, 4)):  # offline, frame 4 sees frame 5 (future = 1)
        a = FrameSource(bundle, live=live).render(params)
        b = FrameSource(bundle, live=live).render(type(params)(changed))
        assert np.array_equal(a[:same], b[:same]) and not np.array_equal(a[same], b[same])


def test_lookahead_fills_the_future_of_the_last_frame(offline, params):
    bundle, _ = offline
    whole = FrameSource(bundle).render(params)
    source = FrameSource(bundle)
    first = source.render(params[:5], lookahead=params[5:])
    assert np.array_equal(np.concatenate([first, source.render(params[5:])]), whole)


def test_windows_are_stateless(offline, params):
    bundle, _ = offline
    source = FrameSource(bundle)
    windows = np.concatenate([params.array[i : i + 4] for i in (0, 3, 6)])  # past 2 + 1 + future 1
    frames = source.windows(type(params)(windows))
    stream = FrameSource(bundle).render(params)
    assert np.array_equal(frames[1:], stream[[5, 8]])  # full windows: the same stacks
    with pytest.raises(FramesError, match="4 frames each"):
        source.windows(params[:5])


def test_idle_avatar_through_r2v_is_a_pure_thread_safe_function_of_the_index(offline):
    bundle, _ = offline
    idle = IdleAvatar(bundle, size=SIZE, seed=1)
    assert idle.source.uses_r2v
    indices = [30, 3, 31, 0, 29, 30, 100, 4]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(idle.frame, indices))
    fresh = IdleAvatar(bundle, size=SIZE, seed=1)
    for index, frame in zip(indices, threaded, strict=True):
        assert np.array_equal(frame, fresh.frame(index))


def test_the_builtin_avatar_ships_lite_r2v():
    avatar = load("default")
    weights = r2v_weights(avatar, "lite")
    assert weights is not None and weights.stat().st_size <= SHIPPED_LIMIT
    model = R2V.from_checkpoint(weights)
    assert model.config.variant == "lite" and model.config.live
