"""Landmarks -> FaceParams: head pose by Procrustes, rig weights by bounded least squares.

Per frame, alternating a few times: lift the landmarks into 3-D at the current depth estimate,
align the current face shape to them (similarity Procrustes; its scale corrects the depth), then
solve the rig weights in [0, 1] for the residual in model space. The model is linear in the
weights, so with exact landmarks the fit recovers the parameters.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear

from engine.face.model import BLINK_COLS, Camera, FaceModel
from engine.face.pose import euler, procrustes
from engine.types import FaceParams, NUM_EXP


def fit(model: FaceModel, landmarks: np.ndarray, camera: Camera | None = None, iterations: int = 6) -> FaceParams:
    """landmarks [N, 478, 3] (u, v, w) in `camera` (default: the identity's) -> FaceParams [N]."""
    camera = camera or model.identity.camera
    rows = [_fit_frame(model, frame, camera, iterations) for frame in np.asarray(landmarks, np.float64)]
    return FaceParams(np.stack(rows))


def _fit_frame(model: FaceModel, landmarks: np.ndarray, camera: Camera, iterations: int) -> np.ndarray:
    basis = model.basis.reshape(NUM_EXP, -1).T  # [478*3, K]
    # Align on the parts that expressions barely move (nose bridge, forehead, temples), so the
    # pose is nearly right from the first pass and the alternation converges in a few steps.
    mobility = np.linalg.norm(model.basis, axis=-1).max(0)
    rigid = 1 / (1 + (mobility / 0.05) ** 2)
    weights = np.zeros(NUM_EXP)
    depth = float(model.identity.home[2])
    for _ in range(iterations):
        shape = model.shape(weights[None])[0]
        _, _, scale = procrustes(shape, camera.from_landmarks(landmarks, depth), rigid, scale=True)
        depth /= scale  # lifted points scale with the assumed depth
        target = camera.from_landmarks(landmarks, depth)
        r, t, _ = procrustes(shape, target, rigid)
        residual = ((target - t) @ r - model.identity.vertices).reshape(-1)  # back in model space
        weights = lsq_linear(basis, residual, bounds=(0.0, 1.0), method="bvls").x
    closure = weights[BLINK_COLS]
    blink = closure.min()  # both eyes closing together is a blink; the rest is a wink
    weights[BLINK_COLS] = closure - blink
    pose = np.concatenate([euler(r), t - model.identity.home])
    return np.concatenate([pose, [blink], weights]).astype(np.float32)
