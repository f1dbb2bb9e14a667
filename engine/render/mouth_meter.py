"""How open an avatar's mouth is in frames of video, measured as a viewer would: MediaPipe tracks
each frame and the inner lips' gap over the eye span is compared with the avatar's own renders.

0 = the avatar at rest, 1 = its jaw half open (jawOpen 0.5). Head motion does not move the
measure (it is relative to the face), nor does the renderer (compositor or R2V), nor the teeth a
smiling photo shows at rest. Used by the live tests and the latency benchmark.
"""
from __future__ import annotations

import numpy as np

from engine.avatar.bundle import Avatar
from engine.face.track import lip_gap, track_frames
from engine.types import EXP_START, EXPRESSION_NAMES, FaceParams

REFERENCE_JAW = 0.5


class MouthMeter:
    """frames [N, S, S, 3] uint8 of `avatar` -> openness [N] (NaN where no face is found)."""

    def __init__(self, avatar: Avatar, size: int):
        from engine.render.renderer import AvatarRenderer

        opened = avatar.rest_params.array.copy()
        opened[0, EXP_START + EXPRESSION_NAMES.index("jawOpen")] = REFERENCE_JAW
        renders = (
            AvatarRenderer(avatar, size)
            .composite(FaceParams(np.concatenate([avatar.rest_params.array, opened])))
            .frames
        )
        rest, open_ = self.gaps((renders.clamp(0, 1) * 255 + 0.5).byte().numpy())
        self.rest, self.scale = rest, open_ - rest

    @staticmethod
    def gaps(frames: np.ndarray) -> np.ndarray:
        """[N] inner-lip gaps over the eye span. Each frame is tracked on its own: the tracker's
        video mode smooths across frames, which would blur the quick closures being measured."""
        return lip_gap(track_frames(frames, video=False))

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return (self.gaps(frames) - self.rest) / self.scale
