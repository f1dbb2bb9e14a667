"""The MediaPipe face-mesh topology: 468 surface vertices + 10 iris points, triangles, regions.

The wheel ships no mesh file, only the tessellation's edge list; the triangles are its 3-cycles
(minus the few 3-cycles that are not faces), oriented consistently. The mesh has four boundary
loops: the face oval and three holes (the mouth between the inner lips, and the two eyes), which
the renderer fills with a mouth interior and eyeballs.

Sides: "right"/"left" are the person's own (MediaPipe's naming): the right eye is on the image's left.
"""
from __future__ import annotations

import importlib.util
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import cast

import numpy as np

NUM_SURFACE = 468
NUM_LANDMARKS = 478  # with refine_landmarks=True: + 5 points per iris
RIGHT_IRIS = np.arange(468, 473)  # centre first
LEFT_IRIS = np.arange(473, 478)

# Landmarks with a fixed meaning, used to anchor the rig and the pose frame.
NOSE_TIP = 1
FOREHEAD = 10
CHIN = 152
MOUTH_CORNER_OUTER = (61, 291)  # right, left
MOUTH_CORNER_INNER = (78, 308)
UPPER_LIP_MID_INNER = 13
LOWER_LIP_MID_INNER = 14
EYE_CORNERS = {"right": (33, 133), "left": (263, 362)}  # (outer, inner)


@dataclass(frozen=True)
class Regions:
    """Named vertex index arrays; contours are ordered from the right corner to the left corner."""

    lips_outer_upper: np.ndarray
    lips_outer_lower: np.ndarray
    lips_inner_upper: np.ndarray
    lips_inner_lower: np.ndarray
    eye_upper: dict[str, np.ndarray]  # side -> upper-lid contour, outer corner to inner corner
    eye_lower: dict[str, np.ndarray]
    brow: dict[str, np.ndarray]
    face_oval: np.ndarray  # closed loop
    nose: np.ndarray

    @property
    def lips(self) -> np.ndarray:
        return np.unique(
            np.concatenate(
                [self.lips_outer_upper, self.lips_outer_lower, self.lips_inner_upper, self.lips_inner_lower]
            )
        )

    @property
    def mouth_hole(self) -> np.ndarray:
        """The inner-lip loop bounding the mouth opening: upper contour, then lower reversed."""
        return np.concatenate([self.lips_inner_upper, self.lips_inner_lower[::-1][1:-1]])

    def eye_hole(self, side: str) -> np.ndarray:
        return np.concatenate([self.eye_upper[side], self.eye_lower[side][::-1][1:-1]])


@cache
def _connections():
    """MediaPipe's face-mesh edge lists. The module is plain Python data, loaded from its file so
    that mediapipe's package (its native graph runtime) is not imported just for the topology."""
    package = importlib.util.find_spec("mediapipe")
    if package is None or not package.submodule_search_locations:
        raise ImportError("the face-mesh topology comes from the mediapipe package, which is not installed")
    path = Path(package.submodule_search_locations[0]) / "python" / "solutions" / "face_mesh_connections.py"
    spec = importlib.util.spec_from_file_location("face_mesh_connections", path)
    if spec is None or spec.loader is None:
        raise ImportError("mediapipe's face-mesh connections module cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _edges(connections) -> set[tuple[int, int]]:
    return {tuple(sorted(e)) for e in connections}


@cache
def triangles() -> np.ndarray:
    """[F, 3] int64 faces of the 468-vertex surface, consistently oriented (counter-clockwise in
    the image for a face looking at the camera)."""
    edges = _edges(_connections().FACEMESH_TESSELATION)
    adjacent = defaultdict(set)
    for a, b in edges:
        adjacent[a].add(b)
        adjacent[b].add(a)
    cycles = {tuple(sorted((a, b, c))) for a, b in edges for c in adjacent[a] & adjacent[b]}
    # A 3-cycle that is not a face has every edge shared by three triangles; real faces do not.
    uses = Counter(e for t in cycles for e in itertools.combinations(t, 2))
    faces = sorted(t for t in cycles if not all(uses[e] == 3 for e in itertools.combinations(t, 2)))
    return _orient(cast(list[tuple[int, int, int]], faces))  # cycles are sorted 3-tuples


def _orient(faces: list[tuple[int, int, int]]) -> np.ndarray:
    """Flip faces so that neighbours traverse their shared edge in opposite directions."""
    by_edge = defaultdict(list)
    for i, f in enumerate(faces):
        for e in itertools.combinations(f, 2):
            by_edge[tuple(sorted(e))].append(i)
    oriented: dict[int, tuple[int, int, int]] = {0: faces[0]}
    stack = [0]
    while stack:
        i = stack.pop()
        a, b, c = oriented[i]
        for u, v in ((a, b), (b, c), (c, a)):
            for j in by_edge[tuple(sorted((u, v)))]:
                if j in oriented:
                    continue
                x, y, z = faces[j]
                directed = {(x, y), (y, z), (z, x)}
                oriented[j] = (x, z, y) if (u, v) in directed else (x, y, z)
                stack.append(j)
    out = np.array([oriented[i] for i in range(len(faces))], np.int64)
    # The seed's orientation is arbitrary; this sign was fixed once against a frontal face
    # (tests/test_face_topology.py checks it on the built-in avatar's landmarks).
    return out[:, [0, 2, 1]]


def _loops(connections) -> list[list[int]]:
    """The closed contours in an edge set, each as an ordered vertex list."""
    adjacent = defaultdict(list)
    for a, b in _edges(connections):
        adjacent[a].append(b)
        adjacent[b].append(a)
    loops, seen = [], set()
    for start in sorted(adjacent):
        if start in seen:
            continue
        loop = [start]
        while True:
            seen.add(loop[-1])
            nxt = [n for n in adjacent[loop[-1]] if n not in seen]
            if not nxt:
                break
            loop.append(nxt[0])
        loops.append(loop)
    return loops


def _halves(loop: list[int], corner_a: int, corner_b: int, upper_hint: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a closed contour at two corners into (upper, lower), each ordered corner_a -> corner_b."""
    i = loop.index(corner_a)
    loop = loop[i:] + loop[:i]
    j = loop.index(corner_b)
    one, other = loop[: j + 1], [corner_a] + loop[j:][::-1]
    return (np.array(one), np.array(other)) if upper_hint in one else (np.array(other), np.array(one))


def _vertices(connections) -> np.ndarray:
    return np.array(sorted(set(itertools.chain(*connections))))


@cache
def regions() -> Regions:
    c = _connections()
    outer, inner = sorted(_loops(c.FACEMESH_LIPS), key=lambda loop: MOUTH_CORNER_INNER[0] in loop)
    outer_up, outer_low = _halves(outer, *MOUTH_CORNER_OUTER, upper_hint=0)
    inner_up, inner_low = _halves(inner, *MOUTH_CORNER_INNER, upper_hint=UPPER_LIP_MID_INNER)
    eye_upper, eye_lower = {}, {}
    for side, contour, upper_hint in (
        ("right", c.FACEMESH_RIGHT_EYE, 159),
        ("left", c.FACEMESH_LEFT_EYE, 386),
    ):
        eye_upper[side], eye_lower[side] = _halves(
            _loops(contour)[0], *EYE_CORNERS[side], upper_hint=upper_hint
        )
    return Regions(
        lips_outer_upper=outer_up,
        lips_outer_lower=outer_low,
        lips_inner_upper=inner_up,
        lips_inner_lower=inner_low,
        eye_upper=eye_upper,
        eye_lower=eye_lower,
        brow={"right": _vertices(c.FACEMESH_RIGHT_EYEBROW), "left": _vertices(c.FACEMESH_LEFT_EYEBROW)},
        face_oval=np.array(_loops(c.FACEMESH_FACE_OVAL)[0]),
        nose=_vertices(c.FACEMESH_NOSE),
    )
