"""6-DoF head pose: Euler angles <-> rotation matrices, and Procrustes alignment.

Axes are the camera's (x right, y down, z away from the camera). R = Rz(roll) @ Ry(yaw) @ Rx(pitch):
pitch > 0 nods the chin down, yaw > 0 turns the nose to the image's left, roll > 0 tilts clockwise.
"""
from __future__ import annotations

import numpy as np


def rotation(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Angles [...] in radians -> rotation matrices [..., 3, 3]."""
    cp, sp, cy, sy, cr, sr = (
        np.cos(pitch),
        np.sin(pitch),
        np.cos(yaw),
        np.sin(yaw),
        np.cos(roll),
        np.sin(roll),
    )
    return np.stack(
        [
            np.stack([cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp], -1),
            np.stack([sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp], -1),
            np.stack([-sy, cy * sp, cy * cp], -1),
        ],
        -2,
    )


def euler(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> [..., 3] (pitch, yaw, roll); exact for |yaw| < 90 degrees."""
    pitch = np.arctan2(matrix[..., 2, 1], matrix[..., 2, 2])
    yaw = np.arcsin(np.clip(-matrix[..., 2, 0], -1.0, 1.0))
    roll = np.arctan2(matrix[..., 1, 0], matrix[..., 0, 0])
    return np.stack([pitch, yaw, roll], -1)


def procrustes(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None, scale: bool = False
):
    """Best R, t (and s) with target ~ s * source @ R.T + t, by weighted least squares (Umeyama).

    source, target: [N, 3]; weights: [N]. Returns (R [3, 3], t [3], s)."""
    w = np.ones(len(source)) if weights is None else weights
    w = w / w.sum()
    mu_s, mu_t = w @ source, w @ target
    a, b = source - mu_s, target - mu_t
    cov = (b * w[:, None]).T @ a
    u, sigma, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.array([1.0, 1.0, d])
    r = (u * fix) @ vt
    s = (sigma * fix).sum() / (w @ (a * a).sum(1)) if scale else 1.0
    return r, mu_t - s * r @ mu_s, s
