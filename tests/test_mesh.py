"""The render mesh's texture at the lips (engine/render/mesh.py), judged on the compositor's pixels:
lips that meet show lip, never the reference photo's teeth, and an opening jaw still shows them.

The built-in avatar's photo smiles with its teeth showing between the inner lips. To see where a
frame takes colour from those teeth, the photo's mouth opening is painted pure blue: a pixel of the
mouth that is bluer than it is red draws about a fifth of its colour or more from there
(lips, skin, teeth and the cavity are all redder than blue).
"""
from dataclasses import replace

import numpy as np
import pytest
from matplotlib.path import Path

from engine.face import topology
from engine.face.model import FaceModel
from engine.face.rest import inner_lip_gaps
from engine.render.renderer import AvatarRenderer
from engine.types import PARAM_NAMES, FaceParams

SIZE = 256  # the avatar's resolution: the face region is drawn at it, and R2V trains on it
# A p/b/m closure as the shipped FACIAL-GAN draws one: the jaw a little open, the lips pressed.
CLOSURE = {"jawOpen": 0.26, "mouthClose": 0.73, "mouthPress_L": 1.0, "mouthPress_R": 1.0}


@pytest.fixture(scope="module")
def marked(avatar):
    """A renderer of the built-in avatar whose photo has its mouth opening (the texels whose centres
    lie inside its inner-lip contour) painted blue."""
    h, w = avatar.reference.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w]
    contour = Path(avatar.uv[topology.regions().mouth_hole] * [w, h])
    opening = contour.contains_points(np.stack([xs.ravel(), ys.ravel()], 1) + 0.5).reshape(h, w)
    reference = avatar.reference.copy()
    reference[opening] = (0, 0, 255)
    return AvatarRenderer(replace(avatar, reference=reference), SIZE)


def _with(params: FaceParams, **weights: float) -> np.ndarray:
    row = params.array.copy()
    for name, value in weights.items():
        row[0, PARAM_NAMES.index(name)] = value
    return row


def _teeth_and_dark(renderer: AvatarRenderer, params: FaceParams) -> tuple[np.ndarray, np.ndarray]:
    """[N] pixels around each frame's mouth drawn from the photo's teeth, and [N] dark ones."""
    frames = renderer.composite(params).frames.numpy()
    lips = renderer.screen(params).numpy()[:, topology.regions().lips, :2]
    teeth, dark = [], []
    for frame, points in zip(frames, lips, strict=True):
        (x0, y0), (x1, y1) = points.min(0).astype(int) - 4, points.max(0).astype(int) + 5
        mouth = frame[y0:y1, x0:x1]
        teeth.append(np.count_nonzero(mouth[..., 2] > mouth[..., 0]))
        dark.append(np.count_nonzero(mouth.mean(-1) < 0.25))
    return np.array(teeth), np.array(dark)


def test_closed_lips_show_no_teeth(avatar, marked):
    rest = avatar.rest_params
    params = FaceParams(np.concatenate([rest.array, _with(rest, **CLOSURE)]))
    gaps = inner_lip_gaps(FaceModel(avatar.identity), params)[:, 3:6]
    assert (gaps < 0.05).all()  # both frames have the middle of the lips together (model cm)
    teeth, _ = _teeth_and_dark(marked, params)
    assert teeth.tolist() == [0, 0]  # at rest and at a p/b/m closure


def test_an_opening_jaw_shows_teeth_and_the_dark_inside(avatar, marked):
    rest = avatar.rest_params
    params = FaceParams(np.concatenate([_with(rest, jawOpen=0.15), _with(rest, jawOpen=0.5)]))
    teeth, dark = _teeth_and_dark(marked, params)
    assert teeth[0] > 30  # parted lips: the photo's teeth between them
    assert teeth[1] > 100 and dark[1] > 20  # wider than the photo's smile: teeth and the cavity behind
    reference = _teeth_and_dark(marked, avatar.reference_params)[0][0]
    assert teeth[1] > 0.6 * reference  # about as much of the photo's teeth as the photo itself shows
