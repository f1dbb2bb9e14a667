"""What is drawn for one avatar: the face surface, two eyeballs and a mouth interior.

The face mesh has holes at the eyes and the mouth. Behind them:
- eyeballs: a fan from each iris centre to the eye contour at rest, set back a little; they turn
  with the head only, so closing lids slide over them;
- the mouth interior: an upper-teeth strip fixed to the skull, a lower-teeth strip and a tongue
  carried by the jaw, and a dark cavity wall behind them, stretched between skull and jaw.
Every vertex has a texture coordinate in the reference photo and a `photo` weight: 1 where the
reference photo shows that point (skin, eyes, and teeth where the photo's lips are apart), else
the vertex shows its own procedural colour (teeth, cavity, tongue the photo does not show).

Where the photo's lips are apart, its inner lip contour runs along the edge of the teeth, and a
texture lookup there mixes in teeth texels: lips that close would show a pale line of the photo's
teeth between them. So the inner contour's texture point moves off the opening onto the lip body;
the photo's teeth show only on the teeth behind the lips.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.avatar.bundle import Avatar
from engine.face import rig, topology
from engine.face.model import FaceModel, posed
from engine.types import EXPRESSION_NAMES, FaceParams

TEETH = (0.93, 0.90, 0.84)
CAVITY = (0.20, 0.06, 0.07)
TONGUE = (0.70, 0.33, 0.36)
EYE_DEPTH = 0.12  # model units the eyeball sits behind its contour
LIPS_APART = 0.2  # model units: an inner-lip gap this wide in the photo shows what is behind the lips
LIP_PULL = 1.0  # reference texels: a bilinear lookup's reach, off the photo's mouth opening
JAW = EXPRESSION_NAMES.index("jawOpen")


@dataclass(frozen=True)
class Part:
    """Extra geometry in model space: points, how much the jaw carries them, faces, colours."""

    points: np.ndarray  # [M, 3]
    jaw: np.ndarray  # [M] 0 skull ... 1 jaw
    faces: np.ndarray  # [F, 3] local indices
    color: np.ndarray  # [M, 3] procedural colour
    photo: np.ndarray  # [M] 1 where the reference photo shows the point


class RenderMesh:
    """The avatar's full drawable mesh: vertices(params) [N, V, 3] camera space, faces [F, 3],
    per-vertex uv [V, 2], photo weight [V], colour [V, 3] and `inner` [V] (0 on the outline)."""

    def __init__(self, avatar: Avatar):
        self.model = FaceModel(avatar.identity)
        rest = avatar.identity.vertices
        parts = [_eyeball(rest, "right"), _eyeball(rest, "left"), *_mouth_interior(rest)]
        self.extra = np.concatenate([p.points for p in parts])
        self.extra_jaw = np.concatenate([p.jaw for p in parts])[:, None] * rig.jaw_motion(rest, self.extra)
        offsets = np.cumsum([topology.NUM_LANDMARKS] + [len(p.points) for p in parts])
        self.faces = np.concatenate(
            [topology.triangles()] + [p.faces + o for p, o in zip(parts, offsets[:-1], strict=True)]
        )
        self.surface_faces = len(topology.triangles())
        self.color = np.concatenate([np.ones((topology.NUM_LANDMARKS, 3))] + [p.color for p in parts])
        self.photo = np.concatenate([np.ones(topology.NUM_LANDMARKS)] + [p.photo for p in parts])
        # 0 on the face's outline, 1 inside: across the outermost ring of triangles the face
        # blends into the motion of its surroundings, so the edge never shows as a seam.
        self.inner = np.ones(len(self.color))
        self.inner[topology.regions().face_oval] = 0.0

        # Texture coordinates: where each vertex appears in the reference photo.
        camera = avatar.identity.camera
        reference = self.vertices(avatar.reference_params)[0]
        self.uv = camera.project(reference)[:, :2] / [camera.width, camera.height]
        self.uv[: topology.NUM_LANDMARKS] = avatar.uv
        inner, uv = _inner_lip_uv(avatar)
        self.uv[inner] = uv

    def vertices(self, params: FaceParams) -> np.ndarray:
        """[N, V, 3] camera space: the rigged surface, then the extra parts moved by head and jaw."""
        r, t = self.model.head_transform(params)
        surface = posed(self.model.shape(self.model.rig_weights(params)), r, t)
        extra = self.extra + params.exp[:, JAW, None, None] * self.extra_jaw
        return np.concatenate([surface, posed(extra, r, t)], 1)


def _lips_apart(rest: np.ndarray) -> np.ndarray:
    """[P] 0..1 per inner-lip pair (corner to corner): how far apart the lips are at rest, where the
    reference photo shows teeth or the mouth's inside between them."""
    regions = topology.regions()
    gap = rest[regions.lips_inner_lower, 1] - rest[regions.lips_inner_upper, 1]
    return np.clip(gap / LIPS_APART, 0.0, 1.0)


def _inner_lip_uv(avatar: Avatar) -> tuple[np.ndarray, np.ndarray]:
    """The inner lip contours' vertex indices [K] and texture coordinates [K, 2]: where the photo's
    lips are apart, each point moves LIP_PULL texels (at most half way) towards its outer-contour
    point, onto the lip body, so no lookup on the lips reaches the teeth texels of the opening."""
    regions = topology.regions()
    uv, texels = avatar.uv, np.array(avatar.reference.shape[1::-1], float)  # texels: (width, height)
    inner = np.concatenate([regions.lips_inner_upper, regions.lips_inner_lower])
    outer = np.concatenate([regions.lips_outer_upper, regions.lips_outer_lower])
    apart = np.tile(_lips_apart(avatar.identity.vertices), 2)
    across = (uv[outer] - uv[inner]) * texels  # [K, 2] in texels, from the opening across the lip
    length = np.linalg.norm(across, axis=1, keepdims=True).clip(1e-9)
    pull = np.minimum(LIP_PULL, length / 2) * apart[:, None]
    return inner, uv[inner] + across / length * pull / texels


def _eyeball(rest: np.ndarray, side: str) -> Part:
    ring = topology.regions().eye_hole(side)
    centre = (topology.RIGHT_IRIS if side == "right" else topology.LEFT_IRIS)[0]
    points = np.concatenate([rest[centre][None], rest[ring]]) + [0, 0, EYE_DEPTH]
    n = len(ring)
    faces = np.stack([np.zeros(n, int), 1 + np.arange(n), 1 + (np.arange(n) + 1) % n], 1)
    return Part(points, np.zeros(len(points)), faces, np.ones((len(points), 3)), np.ones(len(points)))


def _strip(rows: list[np.ndarray]) -> np.ndarray:
    """Faces joining consecutive rows of equally many points: [2 (R-1) (C-1), 3]."""
    n = len(rows[0])
    faces = []
    for r in range(len(rows) - 1):
        a, b = r * n + np.arange(n - 1), (r + 1) * n + np.arange(n - 1)
        faces += [np.stack([a, b, a + 1], 1), np.stack([a + 1, b, b + 1], 1)]
    return np.concatenate(faces)


def _part(rows: list[np.ndarray], jaw: list[float], colors: list, photo: list[np.ndarray | float]) -> Part:
    """A strip through rows of points; per row: jaw weight, colour, photo weight (or one per column)."""
    n = len(rows[0])

    def per_point(values: list, *shape: int) -> np.ndarray:
        return np.concatenate([np.broadcast_to(np.asarray(v, float), (n, *shape)) for v in values])

    return Part(np.concatenate(rows), per_point(jaw), _strip(rows), per_point(colors, 3), per_point(photo))


def _mouth_interior(rest: np.ndarray) -> list[Part]:
    """Teeth strips split at the middle of the lips' opening at rest (so a smiling photo's own teeth
    stay where they are), a tongue and a cavity wall. Units: model units (~cm); y down, z away."""
    regions = topology.regions()
    upper, lower = rest[regions.lips_inner_upper], rest[regions.lips_inner_lower]
    middle = (upper + lower) / 2
    # Where the lips are apart at rest (a smile), the photo shows the teeth: keep its pixels there.
    apart = _lips_apart(rest)

    def row(
        base: np.ndarray, dy: float = 0.0, dz: float = 0.0, shrink: float = 1.0, y: np.ndarray | None = None
    ) -> np.ndarray:
        out = base.mean(0) + (base - base.mean(0)) * [shrink, 1, 1] + [0.0, dy, dz]
        if y is not None:
            out[:, 1] = y
        return out

    # Each strip's far part (past the middle) sits farther back, so at rest it hides behind the
    # other strip's photo part; as the jaw opens it comes into view.
    upper_tip = np.maximum(middle[:, 1], upper[:, 1] + 1.0)
    lower_tip = np.minimum(middle[:, 1], lower[:, 1] - 0.8)
    upper_teeth = _part(
        [row(upper, -0.6, 0.5), row(upper, dz=0.5), row(middle, dz=0.5), row(middle, dz=0.9, y=upper_tip)],
        jaw=[0.0] * 4,
        colors=[TEETH] * 4,
        photo=[0.0, apart, apart, 0.0],
    )
    lower_teeth = _part(
        [row(lower, 0.6, 0.6), row(lower, dz=0.6), row(middle, dz=0.6), row(middle, dz=1.0, y=lower_tip)],
        jaw=[1.0] * 4,
        colors=[TEETH] * 4,
        photo=[0.0, apart, apart, 0.0],
    )
    tongue = _part(
        [row(lower, 0.1, 1.3, 0.75), row(lower, -0.4, 2.3, 0.6)],
        jaw=[1.0, 1.0],
        colors=[TONGUE, CAVITY],
        photo=[0.0, 0.0],
    )
    # The cavity's roof stays with the skull and its floor rides the jaw.
    cavity = _part(
        [row(upper, -1.2, 2.6, 1.1), row(lower, 1.2, 2.6, 1.1)],
        jaw=[0.0, 1.0],
        colors=[CAVITY] * 2,
        photo=[0.0, 0.0],
    )
    return [upper_teeth, lower_teeth, tongue, cavity]
