"""Tracking a talking-head video: face-mesh landmarks on every FPS frame, then FaceParams per frame.

`track_video` runs MediaPipe's face mesh in video mode on the clip resampled to FPS (engine/video.py)
and keeps the largest face of each frame; `fit_clip` lifts the person's identity from their most
neutral frame, moves its mouth to the clip's rest (`at_rest`) and fits every frame with
engine/face/fit.py; `save_track` writes TRACK.npz:

    params        [N, NUM_PARAMS] float32 FaceParams, columns named by `names` (FaceParams.load reads
                  the file); lost frames hold parameters interpolated from their neighbours
    names         [NUM_PARAMS] str, engine/types.py's PARAM_NAMES
    fps, rig_version
    valid         [N] bool: a face was tracked in that frame
    confidence    [N] float32 in 0..1 (see fit_clip), 0 where lost
    faces         [N] int: faces seen in the frame (the largest is tracked)
    landmarks     [N, 478, 3] float32: tracked landmarks (u, v, w) in the source video's pixels,
                  smoothed; zero where lost
    width, height the source video's size in pixels
    reference     index of the frame the identity was lifted from (its mouth then moved to rest)
    blink_scale   the factor the fitted blink column was calibrated by (see calibrate_blink)
    identity_vertices [478, 3], identity_home [3], camera_focal, camera_width, camera_height:
                  the engine.face.model.Identity, in the source video's camera
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.face import topology
from engine.face.fit import MOUTH_SHAPES, fit
from engine.face.model import Camera, FaceModel, Identity
from engine.face.topology import NUM_LANDMARKS, NUM_SURFACE
from engine.face.track import NoFaceError, eye_span
from engine.types import BLINK_COL, FPS, PARAM_NAMES, POSE_NAMES, RIG_VERSION, FaceParams
from engine.video import probe_video, read_frames, write_mp4

Progress = Callable[[int, int], None]  # (done, total)

MAX_FACES = 3  # tracked per frame; the largest is kept
TRACK_MAX_SIDE = 1280  # frames are downscaled to this for tracking (the mesh model sees ~192 px anyway)
# Temporal smoothing, [1, 2, 1] / 4 over consecutive valid frames. The tracker's jitter is
# independent from frame to frame, so this cuts it to sqrt(6) / 4 = 61%; the kernel reaches only one
# frame each side, so the middle frame of any event lasting 3 frames (a 100 ms blink, a quick lip
# closure) keeps its full depth, and only single-frame spikes (mostly tracker glitches) are halved.
SMOOTHING = np.array([0.25, 0.5, 0.25])
# fit() alternates pose and rig weights; on a tracked 300-frame test video 2 rounds gave the same
# parameters as 6 (largest differences: 0.01 degree, 0.005 rig weight) at a quarter of the time.
FIT_ITERATIONS = 2
# Depth: one camera resolves the face's distance only to ~0.5% (its size in pixels); fitted tz
# jitters by a few mm, far beyond how much a talking head moves in depth (FACIAL-GAN's general data:
# 0.1 mm std), so a clip's tz is held at its median rather than learnt as motion.
TZ = POSE_NAMES.index("tz")
BLINK_FLOOR = 0.1  # fitted blink values below this are open eyes (tracker noise)
MAX_BLINK_SCALE = 3.0
FIT_CHUNK = 100  # frames per fit() call between progress reports
# Confidence = exp(-(e / CONFIDENCE_SCALE)^2), e = RMS distance between the fitted model's and the
# tracked landmarks (2-D, the 468 surface points) over the face's size (RMS distance of the tracked
# points from their centroid): 2.5% -> 0.78, 5% -> 0.37, 10% -> 0.02.
CONFIDENCE_SCALE = 0.05
# Reference-frame choice: these amounts of head turn, lip motion (the lips' mean displacement per
# frame over the eye span, averaged over +-STILL_FRAMES) and eye closure count the same against a
# frame. A still mouth is the rest between words; the smallest lip gap would be a pressed p/b/m.
NEUTRAL_TURN = np.radians(10.0)
NEUTRAL_LIP_MOTION = 0.01
NEUTRAL_EYE_CLOSURE = 0.2
STILL_FRAMES = 7
MOUTH_PRIOR = 1.0  # engine.face.fit: where landmarks cannot tell a jaw drop from lip shapes, the jaw
REST_FRAMES = 200  # frames of a clip that its mouth's rest is estimated from
REST_PERCENTILE = 5
PREVIEW_MAX_SIDE = 720
AXIS_LENGTH = 6.0  # model units (~ cm) of the pose axes drawn in the preview
EYELIDS = ((159, 145), (386, 374))  # (upper, lower) mid-lid points, right and left eye


@dataclass
class VideoTrack:
    """Landmarks of the largest face in every FPS frame of a video."""

    landmarks: np.ndarray  # [N, 478, 3] float32 (u, v, w) in source pixels; zero where not valid
    valid: np.ndarray  # [N] bool
    faces: np.ndarray  # [N] int: faces seen
    width: int
    height: int

    def __len__(self) -> int:
        return len(self.valid)

    def save(self, path: str | os.PathLike) -> None:
        write_npz(
            path,
            landmarks=self.landmarks,
            valid=self.valid,
            faces=self.faces,
            width=self.width,
            height=self.height,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> VideoTrack:
        with np.load(path, allow_pickle=False) as f:
            return cls(f["landmarks"], f["valid"], f["faces"], int(f["width"]), int(f["height"]))


@dataclass
class ClipFit:
    """FaceParams for every frame of a tracked clip, in the identity's camera."""

    identity: Identity
    reference: int  # frame the identity was lifted from
    params: FaceParams  # [N]; lost frames interpolated from their neighbours
    confidence: np.ndarray  # [N] float32 in 0..1, 0 where lost
    valid: np.ndarray  # [N] bool
    blink_scale: float  # the fitted blink was multiplied by this (calibrate_blink), then capped at 1


def track_video(
    path: str | os.PathLike, progress: Progress | None = None, max_side: int = TRACK_MAX_SIDE
) -> VideoTrack:
    """MediaPipe face mesh (video mode, 478 points) on every FPS frame of the video at `path`.
    Raises VideoReadError for an unreadable file, NoFaceError when no frame shows a face."""
    import mediapipe as mp  # heavy import, only where tracking is needed

    info = probe_video(path)
    points, faces = [], []
    mesh = mp.solutions.face_mesh.FaceMesh(
        static_image_mode=False, max_num_faces=MAX_FACES, refine_landmarks=True
    )
    with mesh:
        for frame in read_frames(path, max_side=max_side):
            found = mesh.process(frame).multi_face_landmarks or []
            faces.append(len(found))
            points.append(
                _largest(found, frame.shape[1], frame.shape[0], info.width, info.height) if found else None
            )
            if progress:
                progress(len(points), max(info.frames, len(points)))
    valid = np.array([p is not None for p in points], bool)
    if not valid.any():
        raise NoFaceError(f"{path}: no face found in any of its {len(points)} frames")
    landmarks = np.zeros((len(points), NUM_LANDMARKS, 3), np.float32)
    landmarks[valid] = np.stack([p for p in points if p is not None])
    return VideoTrack(smooth(landmarks, valid), valid, np.array(faces, np.int32), info.width, info.height)


def _largest(found, frame_width: int, frame_height: int, width: int, height: int) -> np.ndarray:
    """The largest face (by landmark bounding box) as landmarks [478, 3] in source pixels."""
    candidates = [np.array([(p.x, p.y, p.z) for p in face.landmark]) for face in found]
    face = max(candidates, key=lambda c: np.prod(c[:, :2].max(0) - c[:, :2].min(0)))
    # MediaPipe's coordinates are fractions of the frame; its z is in units of the frame's width.
    pixels: np.ndarray = face * np.array([width, height, width], np.float64)
    pixels[:, 2] -= pixels[:, 2].mean()
    return pixels.astype(np.float32)


def runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of consecutive True values in valid [N]."""
    edges = np.diff(np.concatenate([[0], valid.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def smooth(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """SMOOTHING over time within each run of valid frames (ends repeated): [N, ...] -> [N, ...]."""
    out = landmarks.copy()
    for start, stop in runs(valid):
        x = landmarks[start:stop]
        padded = np.concatenate([x[:1], x, x[-1:]])
        out[start:stop] = SMOOTHING[0] * padded[:-2] + SMOOTHING[1] * padded[1:-1] + SMOOTHING[2] * padded[2:]
    return out


def neutral_frame(landmarks: np.ndarray, valid: np.ndarray, camera: Camera) -> int:
    """Index of the most neutral valid frame: facing the camera, the mouth at rest (still), eyes open."""
    index = np.flatnonzero(valid)
    lm = landmarks[index].astype(np.float64)
    turn = np.array([np.hypot(*Identity.from_landmarks(frame, camera)[1].pose[0, :2]) for frame in lm])
    aperture = sum(np.linalg.norm(lm[:, u, :2] - lm[:, d, :2], axis=-1) for u, d in EYELIDS) / eye_span(lm)
    closure = np.clip(1 - aperture / np.percentile(aperture, 90), 0, 1)  # against the clip's open eyes
    cost = (
        turn / NEUTRAL_TURN
        + lip_motion(landmarks, valid)[index] / NEUTRAL_LIP_MOTION
        + closure / NEUTRAL_EYE_CLOSURE
    )
    return int(index[np.argmin(cost)])


def lip_motion(landmarks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """[N] how much the lips move around each valid frame: their mean displacement from frame to
    frame (head motion removed: centred, over the eye span), averaged over +-STILL_FRAMES within
    its run of valid frames; a run of one frame counts as still. NaN where not valid."""
    lips = landmarks[:, topology.regions().lips, :2].astype(np.float64)
    shape = (lips - lips.mean(1, keepdims=True)) / eye_span(landmarks)[:, None, None].clip(1e-9)
    motion = np.full(len(valid), np.nan)
    for start, stop in runs(valid):
        step = np.linalg.norm(np.diff(shape[start:stop], axis=0), axis=-1).mean(1)  # [n - 1]
        per_frame = np.concatenate([step[:1], step]) if len(step) else np.zeros(1)
        kernel = np.ones(2 * STILL_FRAMES + 1)
        motion[start:stop] = np.convolve(per_frame, kernel, "same") / np.convolve(
            np.ones_like(per_frame), kernel, "same"
        )
    return motion


def fit_clip(
    landmarks: np.ndarray, valid: np.ndarray, camera: Camera, progress: Progress | None = None
) -> ClipFit:
    """Tracked landmarks [N, 478, 3] (in `camera`'s pixels) and valid [N] -> the clip's ClipFit."""
    valid = np.asarray(valid, bool)
    if not valid.any():
        raise NoFaceError("no tracked face in any frame to fit")
    reference = neutral_frame(landmarks, valid, camera)
    index = np.flatnonzero(valid)
    identity, _ = Identity.from_landmarks(landmarks[reference].astype(np.float64), camera)
    model = FaceModel(at_rest(identity, landmarks[index[:: max(1, len(index) // REST_FRAMES)]], camera))
    fitted = []
    for start in range(0, len(index), FIT_CHUNK):
        fitted.append(
            fit(model, landmarks[index[start : start + FIT_CHUNK]], camera, FIT_ITERATIONS, MOUTH_PRIOR).array
        )
        if progress:
            progress(min(start + FIT_CHUNK, len(index)), len(index))
    fitted = np.concatenate(fitted)
    confidence = np.zeros(len(valid), np.float32)
    confidence[index] = fit_confidence(model, FaceParams(fitted), landmarks[index], camera)
    params = np.stack([np.interp(np.arange(len(valid)), index, column) for column in fitted.T], 1)
    params[:, TZ] = np.median(fitted[:, TZ])
    blink_scale = calibrate_blink(params[:, BLINK_COL], valid)
    params[:, BLINK_COL] = np.minimum(1.0, params[:, BLINK_COL] * blink_scale)
    return ClipFit(identity, reference, FaceParams(params), confidence, valid, blink_scale)


def at_rest(identity: Identity, landmarks: np.ndarray, camera: Camera) -> Identity:
    """The identity with its mouth moved to the clip's rest: a frame's mouth is rarely at rest
    (lips parted, pressed, a smile), so its jaw and lip shapes are fitted to `landmarks` [M, 478, 3]
    of the clip, allowed below the identity's own, and each shape's REST_PERCENTILE over the clip,
    where below 0, is taken out of the identity's face."""
    model = FaceModel(identity)
    weights = fit(
        model, landmarks, camera, FIT_ITERATIONS, MOUTH_PRIOR, lower=np.where(MOUTH_SHAPES, -1.0, 0.0)
    ).exp
    rest = np.minimum(np.percentile(weights, REST_PERCENTILE, axis=0), 0) * MOUTH_SHAPES
    return Identity(model.shape(rest[None])[0], identity.home, identity.camera)


def fit_confidence(model: FaceModel, params: FaceParams, landmarks: np.ndarray, camera: Camera) -> np.ndarray:
    """[N] in 0..1: how well the fitted model reproduces landmarks [N, 478, 3] (CONFIDENCE_SCALE)."""
    tracked = landmarks[:, :NUM_SURFACE, :2]
    error = np.linalg.norm(model.landmarks(params, camera)[:, :NUM_SURFACE, :2] - tracked, axis=-1)
    size = np.sqrt(((tracked - tracked.mean(1, keepdims=True)) ** 2).sum(-1).mean(1))
    relative = np.sqrt((error**2).mean(1)) / size
    return np.exp(-((relative / CONFIDENCE_SCALE) ** 2)).astype(np.float32)


def blink_events(blink: np.ndarray, valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each blink in blink [N]: runs of valid frames above half the clip's blink
    height (its 99th percentile), and above BLINK_FLOOR so that a clip without blinks has none."""
    if not valid.any():
        return []
    threshold = max(BLINK_FLOOR, 0.5 * float(np.percentile(blink[valid], 99)))
    return runs((blink > threshold) & valid)


def calibrate_blink(blink: np.ndarray, valid: np.ndarray) -> float:
    """The scale that brings the clip's typical blink (median peak) to 1. MediaPipe's eyelid points
    stop short of meeting (on the test videos a full blink reads 0.37), so blinks would otherwise
    be learnt half-closed; 1.0 when the clip shows no blink, at most MAX_BLINK_SCALE so that
    tracker noise in a clip without blinks is not blown up into blinks."""
    peaks = [blink[start:stop].max() for start, stop in blink_events(blink, valid)]
    return min(MAX_BLINK_SCALE, 1.0 / float(np.median(peaks))) if peaks else 1.0


def save_track(path: str | os.PathLike, track: VideoTrack, clip: ClipFit) -> None:
    """TRACK.npz with the keys in this module's docstring."""
    camera = clip.identity.camera
    write_npz(
        path,
        params=clip.params.array,
        names=np.array(PARAM_NAMES),
        fps=FPS,
        rig_version=RIG_VERSION,
        valid=clip.valid,
        confidence=clip.confidence,
        faces=track.faces,
        landmarks=track.landmarks,
        width=track.width,
        height=track.height,
        reference=clip.reference,
        identity_vertices=clip.identity.vertices,
        identity_home=clip.identity.home,
        blink_scale=clip.blink_scale,
        camera_focal=camera.focal,
        camera_width=camera.width,
        camera_height=camera.height,
    )


def write_npz(path: str | os.PathLike, **arrays) -> None:
    """np.savez to exactly `path` (no .npz appended), appearing only when complete."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_track(path: str | os.PathLike) -> tuple[VideoTrack, ClipFit]:
    """Reads a TRACK.npz written by save_track."""
    params = FaceParams.load(str(path))
    with np.load(path, allow_pickle=False) as f:
        track = VideoTrack(f["landmarks"], f["valid"], f["faces"], int(f["width"]), int(f["height"]))
        camera = Camera(float(f["camera_focal"]), int(f["camera_width"]), int(f["camera_height"]))
        identity = Identity(f["identity_vertices"], f["identity_home"], camera)
        return track, ClipFit(
            identity, int(f["reference"]), params, f["confidence"], f["valid"], float(f["blink_scale"])
        )


def write_preview(
    path: str | os.PathLike,
    video: str | os.PathLike,
    track: VideoTrack,
    clip: ClipFit,
    max_side: int = PREVIEW_MAX_SIDE,
) -> None:
    """An MP4 of the video with the tracked contours, the head's pose axes (x red, y green, z blue)
    and the blink value drawn over each frame; frames where the face was lost say so."""
    rotation, pivot = FaceModel(clip.identity).head_transform(clip.params)
    axes = pivot[:, None] + AXIS_LENGTH * rotation.transpose(0, 2, 1)  # [N, 3, 3]: the tip of each axis
    ends = clip.identity.camera.project(np.concatenate([pivot[:, None], axes], 1))[..., :2]  # [N, 4, 2]

    def frames():
        for i, frame in enumerate(read_frames(video, max_side=max_side)):
            if i >= len(track):
                break
            h, w = frame.shape[:2]
            image = np.ascontiguousarray(frame[: h - h % 2, : w - w % 2])  # H.264 wants even sizes
            scale = w / track.width
            _draw(image, track.landmarks[i] * scale, ends[i] * scale, clip, i)
            yield image

    write_mp4(path, frames())


def _draw(image: np.ndarray, landmarks: np.ndarray, axis_ends: np.ndarray, clip: ClipFit, i: int) -> None:
    import cv2

    font, size = cv2.FONT_HERSHEY_SIMPLEX, max(0.4, image.shape[0] / 720)
    if not clip.valid[i]:
        cv2.putText(image, "face lost", (10, int(30 * size)), font, size, (255, 60, 60), 2, cv2.LINE_AA)
        return
    r = topology.regions()
    closed = [r.face_oval, r.mouth_hole, r.eye_hole("right"), r.eye_hole("left")]
    lips = np.concatenate([r.lips_outer_upper, r.lips_outer_lower[::-1][1:-1]])
    contours = [np.round(landmarks[c, :2]).astype(np.int32) for c in [*closed, lips]]
    cv2.polylines(image, contours, True, (80, 255, 80), 1, cv2.LINE_AA)
    origin, *tips = np.round(axis_ends).astype(int)
    for tip, color in zip(tips, [(255, 0, 0), (0, 255, 0), (0, 120, 255)], strict=False):
        cv2.line(image, tuple(origin), tuple(tip), color, 2, cv2.LINE_AA)
    blink = float(clip.params.blink[i])
    y = image.shape[0] - 12
    cv2.rectangle(image, (10, y - 10), (110, y), (255, 255, 255), 1)
    cv2.rectangle(image, (10, y - 10), (10 + int(100 * blink), y), (255, 220, 0), -1)
    cv2.putText(
        image,
        f"blink {blink:.2f} conf {clip.confidence[i]:.2f}",
        (118, y),
        font,
        0.8 * size,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
