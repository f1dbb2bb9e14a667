"""The 3-D face of one person: identity shape + shared expression rig + 6-DoF pose -> vertices.

Spaces:
- model space: the person's neutral face seen from the front, origin at the head pivot, axes
  x right, y down, z away from the camera (as the camera's), units ~ cm (outer eye corners 9 apart).
- camera space: a pinhole camera at the origin looking down +z; the image has x right, y down.
- landmarks: [478, 3] (u, v, w): pixel position and depth relative to the mean landmark depth,
  in pixels at that depth (MediaPipe's convention, with its z re-centred).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.face import rig, topology
from engine.face.pose import euler, rotation
from engine.types import EXPRESSION_NAMES, NUM_EXP, FaceParams

EYE_SPAN = 9.0  # model units between the outer eye corners (~ an adult's, in cm)
PIVOT_OFFSET = np.array([0.0, 4.0, 7.0])  # head pivot from the face's centroid: below and behind
BLINK_COLS = [EXPRESSION_NAMES.index("eyeBlink_L"), EXPRESSION_NAMES.index("eyeBlink_R")]


@dataclass(frozen=True)
class Camera:
    """A pinhole camera with square pixels and its principal point at the image centre."""

    focal: float  # pixels
    width: int
    height: int

    @classmethod
    def with_fov(cls, width: int, height: int, fov_degrees: float = 20.0) -> Camera:
        return cls(max(width, height) / (2 * math.tan(math.radians(fov_degrees) / 2)), width, height)

    def resized(self, width: int, height: int) -> Camera:
        """The same view rendered at another resolution (scaled uniformly, centred)."""
        return Camera(self.focal * min(width / self.width, height / self.height), width, height)

    def project(self, points: np.ndarray) -> np.ndarray:
        """Camera-space points [..., 3] -> screen [..., 3]: (u, v) pixels and z = depth."""
        z = points[..., 2:3]
        uv = points[..., :2] * self.focal / z + np.array([self.width, self.height]) / 2
        return np.concatenate([uv, z], -1)

    def to_landmarks(self, points: np.ndarray) -> np.ndarray:
        """Camera-space points [..., 478, 3] -> landmarks (u, v, w) as a tracker reports them."""
        screen = self.project(points)
        depth = points[..., 2].mean(-1, keepdims=True)
        return np.concatenate(
            [screen[..., :2], ((points[..., 2] - depth) * self.focal / depth)[..., None]], -1
        )

    def from_landmarks(self, landmarks: np.ndarray, depth: float) -> np.ndarray:
        """Landmarks [N, 3] -> camera-space points [N, 3], given the mean depth of the face."""
        z = depth * (1 + landmarks[:, 2] / self.focal)
        xy = (landmarks[:, :2] - np.array([self.width, self.height]) / 2) * (z / self.focal)[:, None]
        return np.concatenate([xy, z[:, None]], 1)


@dataclass(frozen=True)
class Identity:
    """A person's neutral face and where it sits in their camera."""

    vertices: np.ndarray  # [478, 3] model space
    home: np.ndarray  # [3] camera-space position of the pivot when the pose translation is zero
    camera: Camera

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray, camera: Camera) -> tuple[Identity, FaceParams]:
        """Lifts one photo's landmarks [478, 3] into an identity; also returns the photo's own
        FaceParams (its head rotation, zero translation and expression)."""
        eye_px = float(np.linalg.norm(landmarks[263, :2] - landmarks[33, :2]))
        points = camera.from_landmarks(landmarks, depth=camera.focal * EYE_SPAN / eye_px)
        right = points[263] - points[33]  # toward the image's right: the model's +x
        down = points[topology.CHIN] - points[topology.FOREHEAD]
        x = right / np.linalg.norm(right)
        y = down - (down @ x) * x
        y /= np.linalg.norm(y)
        r = np.stack([x, y, np.cross(x, y)], 1)  # columns: model axes in camera space
        pivot = points[: topology.NUM_SURFACE].mean(0) + r @ PIVOT_OFFSET
        pose = np.concatenate([euler(r), np.zeros(3)])[None]
        photo = FaceParams.from_parts(pose, np.zeros(1), np.zeros((1, NUM_EXP)))
        return cls((points - pivot) @ r, pivot, camera), photo


class FaceModel:
    """Identity + rig: FaceParams -> camera-space vertices. Linear in the rig weights."""

    def __init__(self, identity: Identity):
        self.identity = identity
        self.basis = rig.build(identity.vertices)  # [K, 478, 3]

    @staticmethod
    def eye_closure(params: FaceParams) -> np.ndarray:
        """[N, 2] how closed each eye is (left, right): the blink plus that eye's own eyeBlink."""
        return np.minimum(1.0, params.exp[:, BLINK_COLS] + params.blink[:, None])

    @classmethod
    def rig_weights(cls, params: FaceParams) -> np.ndarray:
        """[N, K] weights with the blink folded into each eye's eyeBlink."""
        w = params.exp.copy()
        w[:, BLINK_COLS] = cls.eye_closure(params)
        return w

    def shape(self, weights: np.ndarray) -> np.ndarray:
        """Rig weights [N, K] -> model-space vertices [N, 478, 3]."""
        return self.identity.vertices + np.einsum("nk,kvc->nvc", weights, self.basis)

    def head_transform(self, params: FaceParams) -> tuple[np.ndarray, np.ndarray]:
        """The head's rigid motion, model -> camera space: R [N, 3, 3], t [N, 3]."""
        r = rotation(params.pose[:, 0], params.pose[:, 1], params.pose[:, 2])
        return r, self.identity.home + params.pose[:, 3:6]

    def vertices(self, params: FaceParams) -> np.ndarray:
        """FaceParams (N frames) -> camera-space vertices [N, 478, 3]."""
        return posed(self.shape(self.rig_weights(params)), *self.head_transform(params))

    def landmarks(self, params: FaceParams, camera: Camera | None = None) -> np.ndarray:
        """FaceParams -> landmarks [N, 478, 3] as a tracker would report them."""
        return (camera or self.identity.camera).to_landmarks(self.vertices(params))



def posed(points: np.ndarray, r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Model-space points [N, V, 3] moved by R [N, 3, 3], t [N, 3] into camera space."""
    return np.einsum("nij,nvj->nvi", r, points) + t[:, None]
