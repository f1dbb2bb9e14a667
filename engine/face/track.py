"""Face tracking with MediaPipe's face mesh (models ship inside the mediapipe wheel; offline).

Returns landmarks in this project's convention: [478, 3] (u, v, w) in pixels, w = depth relative
to the mean landmark depth (MediaPipe's z, re-centred), see engine/face/model.py.
"""
from __future__ import annotations

import numpy as np

from engine.errors import EngineError
from engine.face.topology import EYE_CORNERS, LOWER_LIP_MID_INNER, NUM_LANDMARKS, UPPER_LIP_MID_INNER


def eye_span(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks [..., 478, 3] -> the image distance between the outer eye corners [...]: the
    face's scale in a frame."""
    outer = landmarks[..., EYE_CORNERS["left"][0], :2] - landmarks[..., EYE_CORNERS["right"][0], :2]
    return np.linalg.norm(outer, axis=-1)


def lip_gap(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks [..., 478, 3] -> the inner lips' gap over the eye span [...]."""
    gap = landmarks[..., LOWER_LIP_MID_INNER, :2] - landmarks[..., UPPER_LIP_MID_INNER, :2]
    return np.linalg.norm(gap, axis=-1) / eye_span(landmarks)


class NoFaceError(EngineError):
    """The image shows no face the tracker can find."""


class Tracker:
    """One MediaPipe face-mesh session; `video=True` tracks across frames (faster, steadier)."""

    def __init__(self, video: bool = False, min_confidence: float = 0.5):
        import mediapipe as mp  # heavy import, only where tracking is needed

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=not video,
            refine_landmarks=True,  # + the 10 iris points
            max_num_faces=1,
            min_detection_confidence=min_confidence,
        )

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()

    def landmarks(self, image: np.ndarray) -> np.ndarray:
        """RGB uint8 [H, W, 3] -> landmarks [478, 3]; raises NoFaceError when there is no face."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {image.dtype} {list(image.shape)}")
        result = self._mesh.process(np.ascontiguousarray(image))
        if not result.multi_face_landmarks:
            raise NoFaceError("no face found in the image")
        h, w = image.shape[:2]
        points = np.array([[p.x * w, p.y * h, p.z * w] for p in result.multi_face_landmarks[0].landmark])
        points[:, 2] -= points[:, 2].mean()
        return points


def track_frames(frames: np.ndarray, video: bool = True) -> np.ndarray:
    """Frames [N, H, W, 3] uint8 -> landmarks [N, 478, 3], NaN where no face was found. `video`:
    consecutive frames tracked as a clip; otherwise each on its own (no smoothing across frames)."""
    out = np.full((len(frames), NUM_LANDMARKS, 3), np.nan)
    with Tracker(video=video) as tracker:
        for i, frame in enumerate(frames):
            try:
                out[i] = tracker.landmarks(np.ascontiguousarray(frame))
            except NoFaceError:
                pass
    return out
