"""engine/render/framing.py through FrameSource: a 512x512 head-and-shoulders portrait by default
with the face >= 200 px wide where its region was pasted, no seam at the paste's edge, a region
that follows the head smoothly, and explicit sizes honoured."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.face.track import track_frames
from engine.pipeline.frames import DEFAULT_SIZE, FramesError, FrameSource
from engine.pipeline.idle import IdleMotion
from engine.render.framing import FEATHER
from engine.types import EXP_START, EXPRESSION_NAMES, POSE_NAMES, FaceParams

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def moved(avatar, **values: float) -> FaceParams:
    """The reference frame with pose offsets (yaw, tx, ...) or rig weights set."""
    row = avatar.reference_params.array.copy()
    for name, value in values.items():
        if name in POSE_NAMES:
            row[0, POSE_NAMES.index(name)] += value
        else:
            row[0, EXP_START + EXPRESSION_NAMES.index(name)] = value
    return FaceParams(row)


@pytest.fixture(scope="module")
def composite(avatar):
    return FrameSource(avatar, renderer="composite")


@pytest.mark.parametrize("renderer", ["composite", "r2v"])
def test_default_is_a_512_portrait_with_the_face_in_its_region(avatar, renderer):
    source = FrameSource(avatar, renderer=renderer, live=True)  # the built-in avatar ships lite R2V
    assert source.size == DEFAULT_SIZE == 512 and source.uses_r2v == (renderer == "r2v")
    turned = moved(avatar, yaw=0.2, tx=1.0, jawOpen=0.6)
    params = FaceParams(np.concatenate([moved(avatar).array, turned.array]))
    span = source.past + 1 + source.future
    frames = source.windows(FaceParams(np.repeat(params.array, span, 0)))
    assert frames.shape == (2, 512, 512, 3) and frames.dtype == np.uint8
    landmarks = track_frames(frames, video=False)  # MediaPipe, each frame on its own
    assert not np.isnan(landmarks).any()
    for face, (x, y) in zip(landmarks, source.boxes(params), strict=True):
        (left, top), (right, bottom) = face[:, :2].min(0), face[:, :2].max(0)
        assert right - left >= 200  # pixels: lips readable on a laptop screen
        margin = 0.1 * source.framing.box  # the feathered band holds no face
        assert x + margin < left and right < x + source.framing.box - margin
        assert y + margin < top and bottom < y + source.framing.box - margin


def test_the_paste_leaves_no_seam(avatar, composite):
    """Outside its region the frame is the still background; across the region's edge the
    picture changes no more than between neighbouring pixels anywhere else."""
    params = moved(avatar, yaw=0.25, tx=1.5, jawOpen=0.5)
    frame = composite.render(params)[0].astype(float)
    still = composite.render(moved(avatar))[0].astype(float)
    (x, y), b = composite.boxes(params)[0], composite.framing.box
    outside = np.ones((512, 512), bool)
    outside[max(y, 0) : y + b, max(x, 0) : x + b] = False
    assert np.array_equal(frame[outside], composite._paste.background.numpy()[outside])
    assert np.abs(frame - still)[~outside].mean() > 1  # the head did move inside
    # Steps across the region's edges (a pixel outside vs the first pixel inside) against the
    # same steps in the still frame, where there is no paste edge at all.
    rows, cols = slice(max(y, 0), min(y + b, 512)), slice(max(x, 0), min(x + b, 512))
    steps = {}
    for name, image in (("moved", frame), ("still", still)):
        edges = [
            image[rows, x - 1] - image[rows, x],
            image[rows, x + b] - image[rows, x + b - 1],
            image[y - 1, cols] - image[y, cols],
            image[min(y + b, 511), cols] - image[y + b - 1, cols],
        ]
        steps[name] = np.mean([np.abs(e).mean() for e in edges])
    assert steps["moved"] < steps["still"] + 1.0  # grey levels


def test_the_region_follows_the_head_smoothly(avatar, composite):
    rest = composite.boxes(moved(avatar))[0]
    right = composite.boxes(moved(avatar, tx=1.0))[0]
    down = composite.boxes(moved(avatar, ty=1.0))[0]
    turned = composite.boxes(moved(avatar, yaw=0.3))[0]
    assert right[0] > rest[0] + 5 and abs(right[1] - rest[1]) <= 1
    assert down[1] > rest[1] + 5 and abs(down[0] - rest[0]) <= 1
    assert not np.array_equal(turned, rest)
    # Idle head motion: the region moves with the head centre, never more than a pixel of
    # rounding beyond it between consecutive frames (no jitter).
    params = IdleMotion(avatar.reference_params, avatar.motion, seed=2).params(np.arange(90))
    boxes = composite.boxes(params)
    x0, y0, side = composite.framing.view
    centres = composite.renderer.head_centre(params) / side * composite.size
    assert np.abs(np.diff(boxes, axis=0)).max() <= np.abs(np.diff(centres, axis=0)).max() + 1
    assert np.abs(np.diff(boxes, axis=0)).max() <= 3  # pixels per frame at idle


def test_explicit_sizes_are_honoured(avatar):
    for size in (128, 256, 768):
        source = FrameSource(avatar, renderer="composite", size=size)
        frames = source.render(moved(avatar, jawOpen=0.3))
        assert frames.shape == (1, size, size, 3) and source.size == size
        assert frames.flags.c_contiguous  # as PyAV wants them: strided frames cost it 25x the time
        default_box = FrameSource(avatar, renderer="composite").framing.box
        assert source.framing.box == pytest.approx(size / DEFAULT_SIZE * default_box, abs=2)
        # drawn at the avatar's resolution, never at more pixels than the region shows
        assert source.framing.work == min(avatar.resolution, source.framing.box)
    whole = FrameSource(avatar, renderer="composite", size=256, view="reference")
    assert np.abs(whole.render(avatar.reference_params)[0].astype(float) - avatar.reference).mean() < 1
    for bad in (0, 255, -2):
        with pytest.raises(FramesError, match="even number"):
            FrameSource(avatar, renderer="composite", size=bad)


def test_the_paste_blends_the_feathered_edge_and_copies_the_interior(avatar, composite):
    """Every pixel is background + alpha * (region - background) in float32, rounded, with the
    feather's smoothstep alpha: the interior is the region itself; regions overhanging any side
    of the frame, or off it, are cut."""
    paste, b = composite._paste, composite.framing.box
    gen = torch.Generator().manual_seed(0)
    regions = torch.randint(0, 256, (6, b, b, 3), generator=gen, dtype=torch.uint8)
    boxes = np.array([[60, 40], [-100, 300], [400, -50], [-b, 0], [512 - b, 512 - b], [300, 510]])
    frames = paste(regions, boxes)
    t = (np.arange(b, dtype=np.float32) + 0.5) / b
    ramp = np.clip(np.minimum(t, 1 - t) / np.float32(FEATHER), 0, 1)
    ramp = ramp**2 * (3 - 2 * ramp)
    alpha = (ramp[:, None] * ramp[None, :])[..., None]
    for frame, region, (x, y) in zip(frames, regions.numpy(), boxes, strict=True):
        expected = paste.background.numpy().copy()
        top, left, bottom, right = max(y, 0), max(x, 0), min(y + b, 512), min(x + b, 512)
        if top < bottom and left < right:
            under = expected[top:bottom, left:right].astype(np.float32)
            inside = (slice(top - y, bottom - y), slice(left - x, right - x))
            blended = under + alpha[inside] * (region[inside].astype(np.float32) - under)
            expected[top:bottom, left:right] = (blended + np.float32(0.5)).astype(np.uint8)
        assert np.array_equal(frame, expected)
    interior = slice(round(FEATHER * b) + 1, b - round(FEATHER * b) - 1)
    assert np.array_equal(frames[0][40:][interior, 60:][:, interior], regions[0].numpy()[interior, interior])
