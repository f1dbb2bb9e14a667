"""Building an avatar bundle from one photo (the video path comes with the avatar-builder issue).

The photo is cropped to a square portrait around the face (the face about 40% of the height, room
for hair and shoulders), resized to the avatar's resolution and tracked; its landmarks become the
identity, and the photo itself is the texture and the reference frame. Its rest closes the photo's
lips (engine/face/rest.py): a smile with teeth rests with the lips together.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from engine.avatar.bundle import Avatar, MotionStats, save
from engine.face.model import Camera, Identity
from engine.face.rest import closed_rest
from engine.face.topology import CHIN, FOREHEAD
from engine.face.track import Tracker

BUILTIN_SOURCE = "skimage.data.astronaut(): NASA portrait of Eileen Collins, public domain"
CROP_FACE_HEIGHTS = 2.4  # crop side, in forehead-to-chin heights


def portrait_crop(image: np.ndarray, landmarks: np.ndarray, resolution: int) -> np.ndarray:
    """A square crop around the face, shifted down a little to keep the neck, resized."""
    h, w = image.shape[:2]
    face_height = float(np.linalg.norm(landmarks[CHIN, :2] - landmarks[FOREHEAD, :2]))
    side = int(min(CROP_FACE_HEIGHTS * face_height, h, w))
    cx, cy = landmarks[:, 0].mean(), landmarks[:, 1].mean() + 0.15 * face_height
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    crop = Image.fromarray(image[y0 : y0 + side, x0 : x0 + side])
    return np.asarray(crop.resize((resolution, resolution), Image.Resampling.LANCZOS))


def from_image(
    image: np.ndarray, out: str | Path, name: str, resolution: int = 256, source: str = ""
) -> Avatar:
    """RGB uint8 photo [H, W, 3] -> a bundle written atomically to `out`. Raises NoFaceError."""
    with Tracker() as tracker:
        reference = portrait_crop(image, tracker.landmarks(image), resolution)
        landmarks = tracker.landmarks(reference)
    camera = Camera.with_fov(resolution, resolution)
    identity, photo_params = Identity.from_landmarks(landmarks, camera)
    avatar = Avatar(
        name=name,
        path=Path(out),
        resolution=resolution,
        feature_kind="builtin",
        identity=identity,
        uv=landmarks[:, :2] / resolution,
        reference=reference,
        reference_params=photo_params,
        rest_params=closed_rest(identity, photo_params),
        motion=MotionStats(),
        source=source,
    )
    save(avatar, out)
    return avatar


def builtin(out: str | Path) -> Avatar:
    """The built-in avatar "default", from scikit-image's public-domain astronaut portrait."""
    from skimage import data

    return from_image(data.astronaut(), out, name="default", source=BUILTIN_SOURCE)
