"""R2V training data: segments of consecutive frames, each an input (rendered face + attention)
and a target, from one of two sources.

- `PhotoSource`: a photo avatar has no video, so the pairs are made: smooth random trajectories of
  FaceParams (head poses within the person's range, talking-like jaw motion, random rig shapes,
  blinks and winks) rendered into the input and the target (the direct compositor's full frame).
- `VideoSource`: a video avatar's tracked frames: random runs of consecutive usable frames inside
  a frame range (the train or the held-out part), input rendered from the tracked parameters,
  target = the real frames. Frames may be an np.memmap: only a segment's frames are ever read.

`FramePool` keeps a fixed number of segments in memory as uint8 and replaces the oldest with a new
one from its source on `refresh()`: an endless stream of data at a bounded rendering cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from torch import Tensor
from torch.nn.functional import interpolate

from engine.avatar.bundle import Avatar
from engine.errors import EngineError
from engine.face import topology
from engine.face.model import posed
from engine.face.video_track import runs
from engine.pipeline.idle import blink_curve
from engine.render.raster import rasterize
from engine.render.renderer import AvatarRenderer
from engine.types import BLINK_COL, EXP_START, EXPRESSION_NAMES, FPS, FaceParams

POSE_RANGE = 2.5  # poses reach this many of the person's standard deviations
MOUTH_SCALE = 1.3  # region masks: the outer lip contour scaled about its centre
EYE_SCALE = 1.8  # ... and each eye's contour (as the attention map's region)
RENDER_BATCH = 16
TALK_SHAPES = [EXPRESSION_NAMES.index(n) for n in EXPRESSION_NAMES if n.startswith("mouth")]
OTHER_SHAPES = [EXPRESSION_NAMES.index(n) for n in EXPRESSION_NAMES if n.startswith(("brow", "cheek"))]
WINKS = [EXPRESSION_NAMES.index(n) for n in ("eyeBlink_L", "eyeBlink_R")]
JAW = EXPRESSION_NAMES.index("jawOpen")


class TrainingDataError(EngineError):
    """Training frames that cannot be used (mismatched arrays, no run of usable frames long enough)."""


def _smooth(rng: np.random.Generator, n: int, seconds: float) -> np.ndarray:
    """[n] smooth noise with unit standard deviation, correlated over about `seconds`."""
    pad = int(3 * seconds * FPS)
    x = gaussian_filter1d(rng.standard_normal(n + 2 * pad), seconds * FPS)[pad : pad + n]
    return x / max(x.std(), 1e-6)


def sample_params(avatar: Avatar, n: int, rng: np.random.Generator) -> FaceParams:
    """[n] consecutive frames of random, smooth, plausible face parameters around the rest pose."""
    out = np.tile(avatar.rest_params.array[0], (n, 1)).astype(np.float64)
    std = np.asarray(avatar.motion.pose_std)
    for axis in range(6):  # a held offset plus a sway, both within the person's range
        offset = rng.uniform(-1.5, 1.5) * std[axis]
        out[:, axis] += np.clip(
            offset + std[axis] * _smooth(rng, n, rng.uniform(0.3, 2.0)),
            -POSE_RANGE * std[axis],
            POSE_RANGE * std[axis],
        )
    exp = out[:, EXP_START:]
    t = np.arange(n) / FPS
    syllables = np.sin(np.pi * rng.uniform(2, 5) * t + rng.uniform(0, np.pi)) ** 2  # a talking rhythm
    exp[:, JAW] = np.clip(rng.uniform(0, 0.9) * syllables * (0.6 + 0.4 * _smooth(rng, n, 0.5)), 0, 1)
    for shapes, chance in ((TALK_SHAPES, 0.35), (OTHER_SHAPES, 0.25), (WINKS, 0.08)):
        for k in shapes:
            if k != JAW and rng.random() < chance:
                exp[:, k] = np.clip(
                    rng.uniform(0.2, 1.0) * (0.5 + 0.5 * _smooth(rng, n, rng.uniform(0.2, 1.0))), 0, 1
                )
    # Blinks more often than in life (1 per ~1.5 s), of varied length, and sometimes a held squint.
    blink = np.zeros(n)
    start = rng.uniform(-1.0, 1.0)
    while start < t[-1]:
        length = rng.uniform(0.15, 0.45)
        blink = np.maximum(blink, blink_curve((t - start) / length))
        start += length + rng.exponential(1.2)
    out[:, BLINK_COL] = np.maximum(blink, rng.uniform(0, 0.4) if rng.random() < 0.2 else 0.0)
    return FaceParams(out)


def _fan_faces(ring_lengths: list[int]) -> np.ndarray:
    """Faces [F, 3] of triangle fans over consecutive point groups [centre, ring...], one per ring."""
    faces, offset = [], 0
    for n in ring_lengths:
        faces.append(offset + np.stack([np.zeros(n, int), 1 + np.arange(n), 1 + (np.arange(n) + 1) % n], 1))
        offset += n + 1
    return np.concatenate(faces)


def region_masks(renderer: AvatarRenderer, params: FaceParams) -> tuple[Tensor, Tensor]:
    """Mouth and eye masks [N, S, S] (bool): rasterized regions around the lips of the posed,
    rigged face (they open with the jaw) and around the eyes of the posed rest face (they stay
    whole through a blink), scaled up about their centres to take in their surroundings."""
    regions = topology.regions()
    lips = np.concatenate([regions.lips_outer_upper, regions.lips_outer_lower[::-1][1:-1]])
    camera, model = renderer.camera, renderer.mesh.model
    rigged = model.vertices(params)  # [N, 478, 3]
    rest = posed(np.broadcast_to(model.identity.vertices, rigged.shape), *model.head_transform(params))
    masks = []
    for surface, rings, scale in (
        (rigged, [lips], MOUTH_SCALE),
        (rest, [regions.eye_hole("right"), regions.eye_hole("left")], EYE_SCALE),
    ):
        points = []
        for ring in rings:
            centre = surface[:, ring].mean(1, keepdims=True)
            points += [centre, centre + scale * (surface[:, ring] - centre)]
        faces = _fan_faces([len(ring) for ring in rings])
        screen = torch.as_tensor(
            camera.project(np.concatenate(points, 1)), dtype=torch.float32, device=renderer.device
        )
        masks.append(
            rasterize(
                screen, torch.as_tensor(faces, device=renderer.device), renderer.size, renderer.size
            ).mask
        )
    return masks[0], masks[1]


@dataclass
class Segment:
    """Consecutive rendered frames, uint8: face [T, S, S, 3], attention [T, S, S], target
    [T, S, S, 3] (0..255), mouth and eye masks [T, S, S] (0/1)."""

    face: Tensor
    attention: Tensor
    target: Tensor
    mouth: Tensor
    eyes: Tensor

    def __len__(self) -> int:
        return len(self.face)


def to_uint8(x: Tensor) -> Tensor:
    return (x * 255 + 0.5).to(torch.uint8).cpu()


def fit_frames(frames: np.ndarray, size: int) -> Tensor:
    """Video frames [T, R, R, 3] uint8 -> [T, size, size, 3] uint8 (antialiased when resized)."""
    x = torch.from_numpy(np.array(frames))  # a copy: frames may be a read-only memmap
    if x.shape[1:3] == (size, size):
        return x
    x = interpolate(
        x.permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    return (x.clamp(0, 255) + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def render_segment(renderer: AvatarRenderer, params: FaceParams, frames: np.ndarray | None = None) -> Segment:
    """Inputs and masks rendered from `params` [T]; targets = `frames` [T, R, R, 3] uint8 (real
    video frames, resized to the renderer's size) when given, else the direct compositor's frames."""
    parts: dict[str, list[Tensor]] = {k: [] for k in ("face", "attention", "target", "mouth", "eyes")}
    for start in range(0, len(params), RENDER_BATCH):
        p = params[start : start + RENDER_BATCH]
        mouth, eyes = region_masks(renderer, p)
        parts["face"].append(to_uint8(renderer.face(p).frames))
        parts["attention"].append(to_uint8(renderer.attention(p)))
        if frames is None:
            parts["target"].append(to_uint8(renderer.composite(p).frames))
        else:
            parts["target"].append(fit_frames(frames[start : start + RENDER_BATCH], renderer.size))
        parts["mouth"].append(mouth.to(torch.uint8).cpu())
        parts["eyes"].append(eyes.to(torch.uint8).cpu())
    return Segment(**{k: torch.cat(v) for k, v in parts.items()})


@dataclass
class Batch:
    """stack [B, C_in, S, S], target [B, 3, S, S] (0..1 float), mouth and eyes [B, S, S] (0/1)."""

    stack: Tensor
    target: Tensor
    mouth: Tensor
    eyes: Tensor


def window_batch(segment: Segment, ends: list[int], past: int, future: int) -> Batch:
    """Input stacks for current frames `ends` of one segment: frames t - past .. t + future, with
    indices clamped at the segment's ends (a face held still), as the live pipeline does."""
    t = torch.as_tensor(ends)
    index = (t[:, None] + torch.arange(-past, future + 1)).clamp(0, len(segment) - 1)  # [B, F]
    frames = segment.face[index].permute(0, 1, 4, 2, 3).float() / 255  # [B, F, 3, S, S]
    b, f, c, h, w = frames.shape
    stack = torch.cat([frames.reshape(b, f * c, h, w), segment.attention[t][:, None].float() / 255], 1)
    target = segment.target[t].permute(0, 3, 1, 2).float() / 255
    return Batch(stack, target, segment.mouth[t].float(), segment.eyes[t].float())


class SegmentSource(Protocol):
    """Where a pool's segments come from; the pool's `rng` drives the draws (a resumed run reseeds it)."""

    renderer: AvatarRenderer

    def segment(self, length: int, min_length: int, rng: np.random.Generator) -> Segment:
        """Consecutive frames: `length` of them, or fewer but at least `min_length`."""
        ...


class PhotoSource:
    """Sampled face parameters; targets from the direct compositor (photo avatars)."""

    def __init__(self, renderer: AvatarRenderer):
        self.renderer = renderer

    def segment(self, length: int, min_length: int, rng: np.random.Generator) -> Segment:
        return render_segment(self.renderer, sample_params(self.renderer.avatar, length, rng))


def usable_runs(usable: np.ndarray, frame_range: range) -> list[tuple[int, int]]:
    """(start, stop) of every run of consecutive True frames of `usable` [N] inside `frame_range`."""
    start = frame_range.start
    return [(start + int(a), start + int(b)) for a, b in runs(usable[start : frame_range.stop])]


class VideoSource:
    """A tracked video's frames [N, R, R, 3] uint8 (an array or np.memmap), their FaceParams [N]
    in the avatar's camera and `usable` [N] (face tracked); segments come from the runs of
    consecutive usable frames inside `frame_range` and never cross a lost frame or its ends."""

    def __init__(
        self,
        renderer: AvatarRenderer,
        frames: np.ndarray,
        params: FaceParams,
        usable: np.ndarray,
        frame_range: tuple[int, int] | range,
    ):
        usable = np.asarray(usable, bool)
        frame_range = range(*frame_range) if isinstance(frame_range, tuple) else frame_range
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise TrainingDataError(
                f"video frames must be uint8 [N, R, R, 3], got {frames.dtype} {list(frames.shape)}"
            )
        if not len(frames) == len(params) == len(usable):
            raise TrainingDataError(
                f"{len(frames)} video frames, {len(params)} face parameters and {len(usable)} usable flags "
                "do not match"
            )
        if frame_range.step != 1 or not 0 <= frame_range.start <= frame_range.stop <= len(frames):
            raise TrainingDataError(
                f"frame range ({frame_range.start}, {frame_range.stop}) is not a consecutive range inside "
                f"the video's {len(frames)} frames"
            )
        self.renderer = renderer
        self.frames, self.params, self.usable, self.frame_range = frames, params, usable, frame_range
        self.runs = usable_runs(usable, frame_range)

    def render(self, start: int, stop: int) -> Segment:
        """Frames start..stop-1 (the caller keeps them inside one run)."""
        return render_segment(self.renderer, self.params[start:stop], self.frames[start:stop])

    def runs_of(self, min_length: int) -> list[tuple[int, int]]:
        """The runs of at least `min_length` frames; TrainingDataError when there is none."""
        runs = [(a, b) for a, b in self.runs if b - a >= min_length]
        if not runs:
            longest = max((b - a for a, b in self.runs), default=0)
            raise TrainingDataError(
                f"no run of {min_length} consecutive usable frames in frames "
                f"{self.frame_range.start}..{self.frame_range.stop - 1} "
                f"(the longest is {longest}): too few frames where the face was tracked"
            )
        return runs

    def segment(self, length: int, min_length: int, rng: np.random.Generator) -> Segment:
        """A random piece of a random run (longer runs more often, so frames are drawn evenly)."""
        runs = self.runs_of(min_length)
        sizes = np.array([b - a for a, b in runs], float)
        a, b = runs[rng.choice(len(runs), p=sizes / sizes.sum())]
        n = min(length, b - a)
        start = a + int(rng.integers(0, b - a - n + 1))
        return self.render(start, start + n)


def video_segment(
    renderer: AvatarRenderer,
    frames: np.ndarray,
    params: FaceParams,
    usable: np.ndarray,
    frame_range: tuple[int, int] | range,
    length: int,
) -> Segment:
    """A fixed segment of a video (arguments as VideoSource's), e.g. for validation: up to
    `length` consecutive frames from the middle of the longest run of usable frames in the range."""
    source = VideoSource(renderer, frames, params, usable, frame_range)
    a, b = max(source.runs_of(1), key=lambda run: run[1] - run[0])
    n = min(length, b - a)
    start = a + (b - a - n) // 2
    return source.render(start, start + n)


class FramePool:
    """`segments` segments of `length` frames (at least `min_length`) from `source`; sample()
    draws random windows. `seed` drives both the source's draws and the windows."""

    def __init__(self, source: SegmentSource, segments: int, length: int, min_length: int, seed: int):
        self.source = source
        self.length = length
        self.min_length = min_length
        self.rng = np.random.default_rng(seed)
        self.segments = [self._new() for _ in range(segments)]
        self.oldest = 0

    def _new(self) -> Segment:
        return self.source.segment(self.length, self.min_length, self.rng)

    def refresh(self) -> None:
        """Replace the oldest segment with a new one."""
        self.segments[self.oldest] = self._new()
        self.oldest = (self.oldest + 1) % len(self.segments)

    def sample(self, batch: int, past: int, future: int) -> Batch:
        """Random windows, each from a random segment, kept inside the segment."""
        parts = []
        for _ in range(batch):
            segment = self.segments[self.rng.integers(len(self.segments))]
            parts.append(
                window_batch(segment, [int(self.rng.integers(past, len(segment) - future))], past, future)
            )
        return Batch(
            *(torch.cat([getattr(p, k) for p in parts]) for k in ("stack", "target", "mouth", "eyes"))
        )
