"""The output frame and the face region pasted into it, as talking-head systems make large frames
at the cost of small ones.

An output frame of `size` x `size` shows a square `view` of the avatar's reference frame: by
default a head-and-shoulders portrait around the face at rest (the face PORTRAIT_FACE_WIDTH of the
frame's width), or the whole reference frame. Only a square region around the face, which follows
the head, is drawn each frame (by the compositor or R2V, at `work` x `work` pixels); it is resized
and pasted into the still background (the reference photo's view) with a feathered edge. The
renderer keeps the region's edges still (engine/render/renderer.py), so the two meet without a seam.
Positions: "reference units" run 0..1 across the reference frame; boxes are output pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import interpolate

from engine.avatar.bundle import Avatar
from engine.render.raster import sample_texture

DEFAULT_SIZE = 512  # output frames, pixels
VIEWS = ("portrait", "reference")
PORTRAIT_FACE_WIDTH = 0.42  # the face's share of a portrait's width: 215 px at 512
PORTRAIT_FACE_HEIGHT = 0.45  # how far down a portrait the face's centre sits (room for the shoulders)
BOX_SCALE = 1.5  # the face region's side, in the face's larger extent at rest
FEATHER = 0.1  # the paste's blend band, a fraction of the region's side


@dataclass(frozen=True)
class Framing:
    size: int  # output frames are size x size
    work: int  # the face region is drawn at work x work
    view: tuple[float, float, float]  # x0, y0, side of the output frame, reference units
    box: int  # the face region's side, output pixels
    centre: tuple[float, float]  # the face's centre at rest, reference units

    @classmethod
    def for_avatar(cls, avatar: Avatar, size: int, view: str = "portrait") -> Framing:
        """The face region is drawn at the avatar's resolution (the compositor's cost of a frame),
        or at the size it is shown when that is smaller: pixels nobody sees are not drawn."""
        if view not in VIEWS:
            raise ValueError(f"unknown view '{view}', expected one of {VIEWS}")
        if size <= 0 or size % 2:
            raise ValueError(f"size must be a positive even number of pixels, got {size}")
        low, high = avatar.uv.min(0), avatar.uv.max(0)  # the face's extent in the reference photo
        centre = (low + high) / 2
        side = 1.0
        x0 = y0 = 0.0
        if view == "portrait":
            side = min(1.0, float(high[0] - low[0]) / PORTRAIT_FACE_WIDTH)
            x0 = float(np.clip(centre[0] - side / 2, 0, 1 - side))
            y0 = float(np.clip(centre[1] - PORTRAIT_FACE_HEIGHT * side, 0, 1 - side))
        region = BOX_SCALE * float((high - low).max())  # reference units
        box = min(2 * round(region / side * size / 2), 2 * size)
        work = min(avatar.resolution, box)
        return cls(size, work, (x0, y0, side), box, (float(centre[0]), float(centre[1])))

    def boxes(self, moves: np.ndarray) -> np.ndarray:
        """[N, 2] how far the head has moved from rest (reference units) -> [N, 2] int: each face
        region's top-left corner in output pixels, centred on the face and moving with the head."""
        x0, y0, side = self.view
        centre = (moves + self.centre - (x0, y0)) / side * self.size
        return np.round(centre - self.box / 2).astype(np.int64)

    def windows(self, boxes: np.ndarray) -> Tensor:
        """[N, 2] boxes -> [N, 3] (x0, y0, side) the regions in reference units, for AvatarRenderer."""
        x0, y0, side = self.view
        scale = side / self.size
        corners = torch.as_tensor(boxes * scale + (x0, y0), dtype=torch.float32)
        return torch.cat([corners, torch.full((len(boxes), 1), self.box * scale)], 1)


class PasteBack:
    """Face regions [N, W, W, 3] uint8 -> full frames [N, S, S, 3] uint8 over the still background."""

    def __init__(self, framing: Framing, photo: np.ndarray, device: str | torch.device = "cpu"):
        """photo: the reference frame [R, R, 3] uint8."""
        self.framing = framing
        s = framing.size
        x0, y0, side = framing.view
        pixel = (torch.arange(s, dtype=torch.float32, device=device) + 0.5) / s * side
        uv = torch.stack(torch.meshgrid(x0 + pixel, y0 + pixel, indexing="xy"), -1)[None]  # [1, S, S, 2]
        texture = torch.as_tensor(photo, dtype=torch.float32, device=device).permute(2, 0, 1)
        # [S, S, 3] on CPU, where frames are pasted; contiguous, as are the frames copied from it:
        # a strided frame costs PyAV's from_ndarray (on the event loop) 25 times a contiguous one's
        background = (sample_texture(texture, uv)[0] + 0.5).clamp(0, 255).to(torch.uint8)
        self.background = background.cpu().contiguous()
        t = (torch.arange(framing.box, dtype=torch.float32, device=device) + 0.5) / framing.box
        ramp = (torch.minimum(t, 1 - t) / FEATHER).clamp(0, 1)
        ramp = ramp**2 * (3 - 2 * ramp)  # smoothstep: no visible edge where the blend starts
        self.alpha = (ramp[:, None] * ramp[None, :]).cpu().numpy()  # [B, B] opacity of a region
        self._box_pixels = torch.stack(torch.meshgrid(t, t, indexing="xy"), -1)  # [B, B, 2] (x, y) 0..1
        box = framing.box
        self(torch.zeros(0, box, box, 3, dtype=torch.uint8), np.zeros((0, 2), np.int64))  # compiled now

    def cut(self, frames: Tensor, boxes: np.ndarray) -> Tensor:
        """Whole reference frames [N, W, W, 3] float 0..1 (R2V's: it works on the frame it was
        trained on) -> their face regions [N, B, B, 3] uint8, resampled at the output's pixels."""
        windows = self.framing.windows(boxes).to(frames.device)
        uv = windows[:, None, None, :2] + self._box_pixels * windows[:, None, None, 2:]
        return (sample_texture(frames.permute(0, 3, 1, 2), uv).clamp(0, 1) * 255 + 0.5).to(torch.uint8)

    def __call__(self, regions: Tensor, boxes: np.ndarray) -> np.ndarray:
        """Face regions [N, W, W, 3] uint8 at `boxes` [N, 2] -> frames [N, S, S, 3] uint8."""
        b = self.framing.box
        resized = regions
        if regions.shape[1] != b:
            resized = interpolate(
                regions.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last),
                size=(b, b),
                mode="bilinear",
                antialias=b < regions.shape[1],
            ).permute(0, 2, 3, 1)  # [N, B, B, 3] uint8
        from engine.render import kernels  # here: numba takes a while to import

        frames = np.repeat(self.background.numpy()[None], len(regions), 0)
        # Blended on CPU, where the frames go: the feathered edge only; the interior is copied.
        kernels.paste_into(frames, resized.cpu().contiguous().numpy(), self.alpha, boxes.astype(np.int64))
        return frames
