import itertools
from collections import Counter

from engine.face import topology


def test_triangles_form_the_face_surface():
    faces = topology.triangles()
    assert faces.shape == (852, 3) and faces.min() == 0 and faces.max() == topology.NUM_SURFACE - 1
    uses = Counter(tuple(sorted(e)) for f in faces for e in itertools.combinations(f, 2))
    assert set(uses.values()) == {1, 2}  # a manifold: every edge inside is shared by exactly two faces
    boundary = {v for e, n in uses.items() if n == 1 for v in e}
    r = topology.regions()
    # Four boundary loops: the face's outline and the holes of the mouth and both eyes.
    assert boundary == set(r.face_oval) | set(r.mouth_hole) | set(r.eye_hole("left")) | set(
        r.eye_hole("right")
    )


def test_faces_wind_counter_clockwise_on_a_frontal_face(avatar):
    uv = avatar.uv  # the built-in photo's landmarks, a near-frontal face
    a, b, c = (uv[topology.triangles()[:, i]] for i in range(3))
    cross = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    assert (cross < 0).mean() > 0.95  # y points down: negative is counter-clockwise on screen


def test_regions_are_ordered_contours(avatar):
    r = topology.regions()
    uv = avatar.uv
    assert len(r.lips_inner_upper) == len(r.lips_inner_lower) == 11
    for side in ("left", "right"):
        upper, lower = r.eye_upper[side], r.eye_lower[side]
        assert upper[0] == lower[0] and upper[-1] == lower[-1]  # they meet at the corners
        assert uv[upper[1:-1], 1].mean() < uv[lower[1:-1], 1].mean()  # upper lid above the lower
    assert uv[r.lips_outer_upper, 1].mean() < uv[r.lips_outer_lower, 1].mean()
    assert (
        uv[r.brow["left"], 0].mean() > uv[r.brow["right"], 0].mean()
    )  # the person's left is on the image's right
    assert len(r.face_oval) == 36 and len(r.nose) > 10
