"""The shared expression rig: ARKit-style named blendshapes, built procedurally on the topology.

Every shape is a displacement field [478, 3] in model space (x right, y down, z away), defined from
the person's own landmarks (mouth width, face height, eye contours), so one rig definition fits
every identity and a weight means the same motion on every avatar. Displacements are soft: a
region moves fully and its neighbours follow with a Gaussian falloff of their distance to it.

Side suffixes are the person's own: _L is the person's left, the model's +x (the image's right).
Sizes are fractions of the mouth width `m` (~5 cm) or face height `h` (forehead to chin, ~18 cm),
chosen to look like a clear, full expression at weight 1.
"""
from __future__ import annotations

import numpy as np

from engine.face import topology as topo
from engine.types import EXPRESSION_NAMES

LIPS_WHOLE = 0.42  # half-width of the upper lip's middle, which stays whole (mouth widths)
JAW_ANGLE = 0.26  # radians of jaw rotation at jawOpen = 1 (~15 degrees: a wide-open "ah")


class _Geometry:
    """Measurements of one identity that the shape definitions refer to."""

    def __init__(self, v: np.ndarray):
        r = topo.regions()
        self.v = v
        self.m = float(np.linalg.norm(v[topo.MOUTH_CORNER_OUTER[0]] - v[topo.MOUTH_CORNER_OUTER[1]]))
        self.h = float(np.linalg.norm(v[topo.FOREHEAD] - v[topo.CHIN]))
        self.upper_lip = np.setdiff1d(
            np.concatenate([r.lips_outer_upper, r.lips_inner_upper]), self.corners()
        )
        self.lower_lip = np.setdiff1d(
            np.concatenate([r.lips_outer_lower, r.lips_inner_lower]), self.corners()
        )
        self.jaw = self._jaw_weight(r)

    def corners(self, side: str | None = None) -> np.ndarray:
        pairs = {
            "R": [topo.MOUTH_CORNER_OUTER[0], topo.MOUTH_CORNER_INNER[0]],
            "L": [topo.MOUTH_CORNER_OUTER[1], topo.MOUTH_CORNER_INNER[1]],
        }
        return np.array(pairs[side] if side else pairs["R"] + pairs["L"])

    def soft(self, region: np.ndarray, radius: float) -> np.ndarray:
        """[478] weight: 1 on the region, Gaussian in the distance to its nearest vertex outside."""
        d = np.linalg.norm(self.v[:, None] - self.v[region][None], axis=-1).min(1)
        return np.exp(-0.5 * (d / radius) ** 2)

    def side(self, sign: float) -> np.ndarray:
        """[478] smooth 0..1 weight of one side of the face (sign +1: the person's left)."""
        return 1 / (1 + np.exp(-sign * self.v[:, 0] / (0.08 * self.m)))

    def _line(self, contour: np.ndarray) -> np.ndarray:
        """[478] the contour's height at each vertex's x (flat beyond its ends)."""
        line = self.v[contour]
        order = np.argsort(line[:, 0])
        return np.interp(self.v[:, 0], line[order, 0], line[order, 1])

    def _jaw_weight(self, r: topo.Regions) -> np.ndarray:
        """[478] how much each vertex follows the jaw: 1 below the mouth line, 0 above it."""
        y_line = self._line(r.lips_inner_upper)
        w = 1 / (1 + np.exp(-(self.v[:, 1] - y_line) / (0.06 * self.m)))
        # The upper lip stays whole: the rows between its outer and inner contours stay with them
        # (else they slide down past its inner edge and cover the open mouth's upper teeth).
        middle = np.abs(self.v[:, 0] - self.v[self.corners(), 0].mean()) < LIPS_WHOLE * self.m
        w[middle & (self.v[:, 1] >= self._line(r.lips_outer_upper)) & (self.v[:, 1] <= y_line)] = 0.0
        w[self.upper_lip] = 0.0
        w[self.lower_lip] = 1.0
        w[self.corners()] = 0.5
        return w


def jaw_motion(identity: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displacement [M, 3] of points [M, 3] carried fully by the jaw at jawOpen = 1: a rotation
    about a hinge in front of the ears. Used for the face and for what the jaw carries inside
    the mouth (lower teeth, tongue)."""
    g = _Geometry(identity)
    mouth = g.v[g.corners()].mean(0)
    hinge = np.array([0.0, g.v[topo.NOSE_TIP, 1] - 0.05 * g.h, mouth[2] + 0.55 * g.h])
    c, s = np.cos(JAW_ANGLE), np.sin(JAW_ANGLE)
    rx = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return (points - hinge) @ rx.T + hinge - points


def _eye_blink(g: _Geometry, side: str) -> np.ndarray:
    """The upper lid slides down to meet the lower lid (which rises a little); lid skin follows."""
    r = topo.regions()
    upper, lower = r.eye_upper[side], r.eye_lower[side]
    gap = g.v[lower] - g.v[upper]  # contours are paired point by point, outer to inner corner
    moves = np.concatenate([0.85 * gap, -0.15 * gap])
    contour = np.concatenate([upper, lower])
    width = np.linalg.norm(g.v[upper[0]] - g.v[upper[-1]])
    d = np.linalg.norm(g.v[:, None] - g.v[contour][None], axis=-1)
    return moves[d.argmin(1)] * np.exp(-0.5 * (d.min(1) / (0.18 * width)) ** 2)[:, None]


def _brow(g: _Geometry, side: str, part: str) -> np.ndarray:
    """Brow vertices of one side, all or the inner/outer half (by distance from the midline)."""
    brow = topo.regions().brow[side]
    if part == "all":
        return brow
    x = np.abs(g.v[brow, 0])
    return brow[x <= np.median(x)] if part == "inner" else brow[x > np.median(x)]


def _cheek(g: _Geometry, sign: float) -> np.ndarray:
    """The vertex in the middle of one cheek: beside the mouth corner, towards the face's edge."""
    oval = g.v[topo.regions().face_oval]
    half_width = np.abs(oval[:, 0]).max()
    target = np.array([sign * 0.7 * half_width, g.v[g.corners()].mean(0)[1] - 0.15 * g.m])
    return np.array([np.linalg.norm(g.v[: topo.NUM_SURFACE, :2] - target, axis=1).argmin()])


def _move(weight: np.ndarray, direction) -> np.ndarray:
    return weight[:, None] * np.asarray(direction, float)


def build(vertices: np.ndarray) -> np.ndarray:
    """Identity vertices [478, 3] (model space) -> blendshape basis [K, 478, 3], K = len(EXPRESSION_NAMES)."""
    g = _Geometry(vertices)
    m, h = g.m, g.h
    lower, upper = g.jaw, 1 - g.jaw  # keep lower-lip shapes off the upper lip and vice versa
    lips = np.concatenate([g.upper_lip, g.lower_lip, g.corners()])
    r = topo.regions()
    shapes = {"jawOpen": g.jaw[:, None] * jaw_motion(vertices, vertices)}
    shapes["mouthClose"] = -shapes["jawOpen"] * g.soft(lips, 0.12 * m)[:, None]
    shapes["mouthFunnel"] = (
        _move(g.soft(g.upper_lip, 0.12 * m) * upper, [0, -0.07 * m, -0.08 * m])
        + _move(g.soft(g.lower_lip, 0.12 * m) * lower, [0, 0.07 * m, -0.08 * m])
        + _move(g.soft(g.corners(), 0.15 * m) * -np.sign(g.v[:, 0]), [0.06 * m, 0, 0])
    )
    shapes["mouthPucker"] = _move(g.soft(lips, 0.2 * m), [0, 0, -0.12 * m]) + _move(
        g.soft(g.corners(), 0.2 * m) * -np.sign(g.v[:, 0]), [0.16 * m, 0, 0]
    )
    for s, sign in (("L", 1.0), ("R", -1.0)):
        corner = g.soft(g.corners(s), 0.3 * m)
        shapes[f"mouthSmile_{s}"] = _move(corner, [sign * 0.12 * m, -0.12 * m, 0.04 * m])
        shapes[f"mouthFrown_{s}"] = _move(corner, [sign * 0.02 * m, 0.12 * m, 0])
        shapes[f"mouthStretch_{s}"] = _move(corner, [sign * 0.16 * m, 0.04 * m, 0.03 * m])
        press = g.soft(lips, 0.1 * m) * g.side(sign)
        shapes[f"mouthPress_{s}"] = _move(press * upper, [0, 0.06 * m, -0.01 * m]) + _move(
            press * lower, [0, -0.07 * m, -0.01 * m]
        )
    outer_lower = np.setdiff1d(r.lips_outer_lower, g.corners())
    outer_upper = np.setdiff1d(r.lips_outer_upper, g.corners())
    inner_lower = np.setdiff1d(r.lips_inner_lower, g.corners())
    inner_upper = np.setdiff1d(r.lips_inner_upper, g.corners())
    # A roll curls the lip inward: its outer edge goes back over the inner edge, which turns in.
    shapes["mouthRollLower"] = _move(g.soft(outer_lower, 0.06 * m) * lower, [0, -0.09 * m, 0.08 * m]) + _move(
        g.soft(inner_lower, 0.04 * m) * lower, [0, 0.03 * m, 0.04 * m]
    )
    shapes["mouthRollUpper"] = _move(g.soft(outer_upper, 0.06 * m) * upper, [0, 0.09 * m, 0.08 * m]) + _move(
        g.soft(inner_upper, 0.04 * m) * upper, [0, -0.03 * m, 0.04 * m]
    )
    # The chin muscle pushes the lower lip up and out (a pout), unlike the jaw's rotation.
    shapes["mouthShrugLower"] = _move(g.soft(g.lower_lip, 0.2 * m) * lower, [0, -0.05 * m, -0.1 * m])
    shapes["mouthShrugUpper"] = _move(g.soft(g.upper_lip, 0.2 * m) * upper, [0, -0.07 * m, -0.01 * m])
    # f/v: the whole lower lip rides up and back under the upper teeth, the chin following a little.
    shapes["mouthLowerLipTuck"] = _move(g.soft(g.lower_lip, 0.25 * m) * lower, [0, -0.1 * m, 0.1 * m])
    for s, side in (("L", "left"), ("R", "right")):
        sign = 1.0 if s == "L" else -1.0
        shapes[f"eyeBlink_{s}"] = _eye_blink(g, side)
        shapes[f"browDown_{s}"] = _move(
            g.soft(_brow(g, side, "all"), 0.08 * h), [-sign * 0.02 * h, 0.05 * h, -0.01 * h]
        )
        shapes[f"browOuterUp_{s}"] = _move(g.soft(_brow(g, side, "outer"), 0.07 * h), [0, -0.06 * h, 0])
        shapes[f"cheekPuff_{s}"] = _move(g.soft(_cheek(g, sign), 0.35 * m), [sign * 0.1 * m, 0, -0.05 * m])
    inner_brows = np.concatenate([_brow(g, "left", "inner"), _brow(g, "right", "inner")])
    shapes["browInnerUp"] = _move(g.soft(inner_brows, 0.07 * h), [0, -0.06 * h, 0])
    shapes["cheekPuff"] = shapes.pop("cheekPuff_L") + shapes.pop("cheekPuff_R")
    basis = np.stack([shapes[name] for name in EXPRESSION_NAMES])
    basis[:, topo.NUM_SURFACE :] = 0.0  # the irises sit on the eyeballs, which expressions do not move
    return basis
