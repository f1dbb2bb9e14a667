"""The data that flows between stages, and the constants every stage agrees on.

One media clock per session counts audio samples at SAMPLE_RATE. Video frame i starts at sample
i * SAMPLES_PER_FRAME, so audio and video share one time base and cannot drift.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.errors import EngineError

SAMPLE_RATE = 16_000  # Hz, mono float32 PCM everywhere inside the engine
FPS = 30


def frame_pts(index: int) -> int:
    """Start of video frame `index` on the media clock, in samples. A frame is 533.33 samples, so
    this is computed from the index each time (rounded down), never accumulated, and cannot drift."""
    return index * SAMPLE_RATE // FPS


def frame_at(pts: int) -> int:
    """The video frame whose span [frame_pts(i), frame_pts(i + 1)) holds sample `pts`: the inverse
    of frame_pts (frame_at(frame_pts(i)) == i), exact in integers."""
    return ((pts + 1) * FPS - 1) // SAMPLE_RATE  # the last i with i * SAMPLE_RATE // FPS <= pts


# ---- FaceParams column order ------------------------------------------------------------------
# A sequence of face parameters is an array [N, 7 + K]:
#   0..5  pose: pitch, yaw, roll (radians; rotation of the head about its pivot, 0 = facing the
#         camera; pitch > 0 tilts the chin down, yaw > 0 turns the face to the image's right,
#         roll > 0 tilts the head clockwise in the image) and tx, ty, tz (model units ~ cm; offset of
#         the head from the avatar's home position in camera axes: x right, y down, z away)
#   6     blink: 0 open ... 1 closed, both eyes (FACIAL's AU45)
#   7..   exp[K]: expression rig weights, names below, 0 = neutral, 1 = full shape. eyeBlink_L/R add
#         to `blink` per eye (a wink); the eyelid closes by min(1, blink + eyeBlink_X).
POSE_NAMES = ("pitch", "yaw", "roll", "tx", "ty", "tz")
EXPRESSION_NAMES = (
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthSmile_L",
    "mouthSmile_R",
    "mouthFrown_L",
    "mouthFrown_R",
    "mouthStretch_L",
    "mouthStretch_R",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthPress_L",
    "mouthPress_R",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthLowerLipTuck",
    "eyeBlink_L",
    "eyeBlink_R",
    "browInnerUp",
    "browDown_L",
    "browDown_R",
    "browOuterUp_L",
    "browOuterUp_R",
    "cheekPuff",
)
RIG_VERSION = 1  # bump when EXPRESSION_NAMES or a shape's definition changes
PARAM_NAMES = POSE_NAMES + ("blink",) + EXPRESSION_NAMES
NUM_EXP = len(EXPRESSION_NAMES)
NUM_PARAMS = len(PARAM_NAMES)
BLINK_COL = 6
EXP_START = 7
# "_L"/"_R" are the person's own left/right (ARKit convention): _L is on the image's right side.


@dataclass(frozen=True)
class AudioChunk:
    """Mono float32 PCM at SAMPLE_RATE. `pts` = index of its first sample on the session clock."""

    pcm: np.ndarray  # [S] float32 in [-1, 1]
    pts: int


@dataclass(frozen=True)
class FeatureFrame:
    """One FPS frame of speech features; `pts` in samples (= frame_pts of its frame index)."""

    values: np.ndarray  # [F] float32
    pts: int


class FaceParamsError(EngineError):
    """A face-parameter sequence that is malformed (wrong shape, NaN, unknown columns)."""


@dataclass(frozen=True)
class FaceParams:
    """A sequence of N frames of face parameters, column order as PARAM_NAMES."""

    array: np.ndarray  # [N, NUM_PARAMS] float32

    def __post_init__(self) -> None:
        a = np.asarray(self.array)
        if a.ndim != 2 or a.shape[1] != NUM_PARAMS:
            raise FaceParamsError(f"face parameters must have shape [N, {NUM_PARAMS}], got {list(a.shape)}")
        if not np.isfinite(a).all():
            bad = int(np.argwhere(~np.isfinite(a))[0][0])
            raise FaceParamsError(f"face parameters contain NaN or infinity (first at frame {bad})")
        object.__setattr__(self, "array", np.ascontiguousarray(a, dtype=np.float32))

    @classmethod
    def neutral(cls, n: int = 1) -> FaceParams:
        return cls(np.zeros((n, NUM_PARAMS), np.float32))

    @classmethod
    def from_parts(cls, pose: np.ndarray, blink: np.ndarray, exp: np.ndarray) -> FaceParams:
        """pose [N, 6], blink [N], exp [N, NUM_EXP]."""
        return cls(np.concatenate([pose, np.asarray(blink)[:, None], exp], axis=1))

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int | slice) -> FaceParams:
        return FaceParams(self.array[index : index + 1] if isinstance(index, int) else self.array[index])

    @property
    def pose(self) -> np.ndarray:  # [N, 6]
        return self.array[:, :6]

    @property
    def blink(self) -> np.ndarray:  # [N]
        return self.array[:, BLINK_COL]

    @property
    def exp(self) -> np.ndarray:  # [N, NUM_EXP]
        return self.array[:, EXP_START:]

    def save(self, path: str) -> None:
        """An .npz with `params` [N, NUM_PARAMS], the column `names`, `fps` and `rig_version`."""
        np.savez(path, params=self.array, names=np.array(PARAM_NAMES), fps=FPS, rig_version=RIG_VERSION)

    @classmethod
    def load(cls, path: str) -> FaceParams:
        """Reads an .npz written by save(); columns are matched by name when `names` is present."""
        try:
            with np.load(path, allow_pickle=False) as f:
                if "params" not in f:
                    raise FaceParamsError(f"{path}: no 'params' array in the file")
                params = f["params"]
                names = tuple(str(n) for n in f["names"]) if "names" in f else PARAM_NAMES
        except (OSError, ValueError, EOFError) as e:
            raise FaceParamsError(f"{path}: not a readable .npz parameter file ({e})") from None
        if names != PARAM_NAMES:
            unknown = sorted(set(names) - set(PARAM_NAMES))
            if unknown or params.ndim != 2 or params.shape[1] != len(names):
                raise FaceParamsError(
                    f"{path}: unknown or mismatched parameter columns {unknown or list(names)}"
                )
            full = np.zeros((params.shape[0], NUM_PARAMS), np.float32)
            full[:, [PARAM_NAMES.index(n) for n in names]] = params
            params = full
        try:
            return cls(params)
        except FaceParamsError as e:
            raise FaceParamsError(f"{path}: {e}") from None
