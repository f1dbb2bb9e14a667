"""The face an avatar rests with: its reference, lips relaxed and closed.

A photo often shows parted lips (a smile with teeth). Speech and idle motion start from the rest,
so a rest with the photo's open mouth reads as "talking" in silence and hides the closures of
p/b/m. The rest is the reference plus a rig offset that brings the inner lips together:
mouthPress_L/R (both lips towards each other) and mouthClose (the lower lip up, as the jaw
closing), the least motion (bounded least squares with a small ridge) that seals every inner-lip
pair. Lips that already touch get no offset. Computed when an avatar is built; stored in its bundle.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear

from engine.face import topology as topo
from engine.face.model import FaceModel, Identity
from engine.types import EXP_START, EXPRESSION_NAMES, FaceParams

CLOSING_SHAPES = ("mouthPress_L", "mouthPress_R", "mouthClose")
MAX_WEIGHT = 3.0
# Corner to corner: the middle of the lips, where a gap shows, counts most; near the corners the
# lips may overlap a little.
PAIR_WEIGHTS = (0.1, 0.2, 0.5, 1.0, 1.0, 1.0, 0.5, 0.2, 0.1)
RIDGE = 0.05  # per weight, against the gap's units (model cm): prefers the smallest offset


def inner_lip_gaps(face: FaceModel, params: FaceParams) -> np.ndarray:
    """[N, 9] vertical gaps (model units, > 0 open) of the inner-lip pairs, corners excluded.
    MediaPipe's inner contours pair point by point from one corner to the other."""
    r = topo.regions()
    v = face.vertices(params)
    upper, lower = r.lips_inner_upper[1:-1], r.lips_inner_lower[1:-1]
    return v[:, lower, 1] - v[:, upper, 1]  # y points down


def closed_rest(identity: Identity, reference: FaceParams) -> FaceParams:
    """reference (one frame) -> the same face with its inner lips together: the rest."""
    face = FaceModel(identity)
    gap = inner_lip_gaps(face, reference)[0]
    columns = [EXP_START + EXPRESSION_NAMES.index(name) for name in CLOSING_SHAPES]
    unit = np.repeat(reference.array, len(columns), axis=0)
    for row, col in enumerate(columns):
        unit[row, col] += 1.0
    effect = (inner_lip_gaps(face, FaceParams(unit)) - gap).T  # [pairs, shapes]: the rig is linear
    pair_weight = np.array(PAIR_WEIGHTS)[:, None]
    a = np.vstack([pair_weight * effect, RIDGE * np.eye(len(columns))])
    b = np.concatenate([-pair_weight[:, 0] * np.maximum(gap, 0), np.zeros(len(columns))])
    solution = lsq_linear(a, b, bounds=(0.0, MAX_WEIGHT)).x
    rest = reference.array.copy()
    rest[0, columns] += solution
    return FaceParams(rest)
