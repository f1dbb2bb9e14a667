"""Landmarks -> FaceParams: head pose by Procrustes, rig weights by bounded least squares.

Per frame, alternating a few times: lift the landmarks into 3-D at the current depth estimate,
align the current face shape to them (similarity Procrustes; its scale corrects the depth), then
solve the rig weights (in [0, 1]) for the residual in model space. The model is linear in the
weights, so with exact landmarks the fit recovers the parameters.

Tracked landmarks are not exact, and two things keep their errors out of the weights:
- depth counts DEPTH_WEIGHT of an image coordinate: a tracker's depth is a guess from one image,
  and at full weight the fit explained jaw drops with lip shapes that move less in depth;
- `mouth_prior` > 0 makes every lip shape (the mouth* weights, not the jaw) cost as much as that
  displacement of the model's points: where the landmarks cannot tell a jaw drop from a lip shape,
  the jaw wins. Fits of a tracked video use it; 0 keeps the exact recovery.
`python -m bench fit` measures what a tracked video's fit recovers.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear

from engine.face.model import BLINK_COLS, Camera, FaceModel
from engine.face.pose import euler, procrustes
from engine.types import EXPRESSION_NAMES, NUM_EXP, FaceParams

DEPTH_WEIGHT = 0.3  # a landmark's depth against its image coordinates (see above)
LIP_SHAPES = np.array([name.startswith("mouth") for name in EXPRESSION_NAMES])
MOUTH_SHAPES = LIP_SHAPES | (np.array(EXPRESSION_NAMES) == "jawOpen")


def fit(
    model: FaceModel,
    landmarks: np.ndarray,
    camera: Camera | None = None,
    iterations: int = 6,
    mouth_prior: float = 0.0,
    lower: np.ndarray | float = 0.0,
) -> FaceParams:
    """landmarks [N, 478, 3] (u, v, w) in `camera` (default: the identity's) -> FaceParams [N].
    Rig weights lie in [lower, 1] (lower [K] or one for all; below 0: less of a shape than the
    identity has, for an identity that is not at rest)."""
    solver = _Solver(model, camera or model.identity.camera, iterations, mouth_prior, lower)
    return FaceParams(np.stack([solver.frame(frame) for frame in np.asarray(landmarks, np.float64)]))


class _Solver:
    """What every frame's fit shares: made once per `fit` call."""

    def __init__(
        self, model: FaceModel, camera: Camera, iterations: int, mouth_prior: float, lower: np.ndarray | float
    ) -> None:
        self.model, self.camera, self.iterations, self.lower = model, camera, iterations, lower
        self.axis_weight = np.tile([1.0, 1.0, DEPTH_WEIGHT], model.basis.shape[1])  # [478*3]
        # The weighted basis [478*3, K], and below it one row per weight: its prior (zero: no prior).
        self.system = np.concatenate(
            [
                model.basis.reshape(NUM_EXP, -1).T * self.axis_weight[:, None],
                np.diag(mouth_prior * LIP_SHAPES),
            ]
        )
        # Align on the parts that expressions barely move (nose bridge, forehead, temples), so the
        # pose is nearly right from the first pass and the alternation converges in a few steps.
        mobility = np.linalg.norm(model.basis, axis=-1).max(0)
        self.rigid = 1 / (1 + (mobility / 0.05) ** 2)

    def frame(self, landmarks: np.ndarray) -> np.ndarray:
        """landmarks [478, 3] -> one FaceParams row."""
        model, camera = self.model, self.camera
        weights = np.zeros(NUM_EXP)
        depth = float(model.identity.home[2])
        for _ in range(self.iterations):
            shape = model.shape(weights[None])[0]
            _, _, scale = procrustes(shape, camera.from_landmarks(landmarks, depth), self.rigid, scale=True)
            depth /= scale  # lifted points scale with the assumed depth
            target = camera.from_landmarks(landmarks, depth)
            r, t, _ = procrustes(shape, target, self.rigid)
            residual = ((target - t) @ r - model.identity.vertices).reshape(-1)  # back in model space
            rhs = np.concatenate([residual * self.axis_weight, np.zeros(NUM_EXP)])
            weights = lsq_linear(self.system, rhs, bounds=(self.lower, 1.0), method="bvls").x
        closure = weights[BLINK_COLS]
        blink = closure.min()  # both eyes closing together is a blink; the rest is a wink
        weights[BLINK_COLS] = closure - blink
        pose = np.concatenate([euler(r), t - model.identity.home])
        return np.concatenate([pose, [blink], weights]).astype(np.float32)
