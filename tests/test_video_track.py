"""Tracking videos rendered from the built-in avatar with known FaceParams, and fitting them."""
from __future__ import annotations

import numpy as np
import pytest

from engine.face.fit import fit
from engine.face.model import Camera, FaceModel, Identity
from engine.face.track import NoFaceError
from engine.face.video_track import (
    at_rest,
    blink_events,
    fit_clip,
    load_track,
    save_track,
    smooth,
    track_video,
    write_preview,
)
from engine.render.renderer import AvatarRenderer
from engine.types import BLINK_COL, EXP_START, EXPRESSION_NAMES, FPS, FaceParams
from engine.video import VideoReadError, read_frames, write_mp4

SIZE = 256
BLINKS = (1.2, 2.6)  # seconds at which a 0.2 s blink starts
PRESS = (3.1, 3.3)  # seconds the lips press together (the jaw is closed then): a p/b/m, not the rest


def known_params(avatar, n: int) -> FaceParams:
    """The avatar at rest for half a second, then a swaying head, talking jaw, two blinks and a
    lip press."""
    t = np.arange(n) / FPS
    p = np.tile(avatar.reference_params.array[0], (n, 1)).astype(np.float64)
    ramp = np.clip((t - 0.5) / 0.5, 0, 1)
    p[:, 1] += np.radians(10) * ramp * np.sin(2 * np.pi * 0.4 * t)
    p[:, 0] += np.radians(6) * ramp * np.sin(2 * np.pi * 0.55 * t + 1)
    p[:, EXP_START] = 0.7 * ramp * np.sin(np.pi * 2.5 * t) ** 2  # jawOpen
    for start in BLINKS:
        p[:, BLINK_COL] = np.maximum(p[:, BLINK_COL], np.clip(1 - np.abs(t - start - 0.1) / 0.1, 0, 1))
    pressed = (t >= PRESS[0]) & (t < PRESS[1])
    p[pressed, EXP_START + EXPRESSION_NAMES.index("mouthClose")] = 0.5
    p[pressed, EXP_START + EXPRESSION_NAMES.index("mouthPress_L")] = p[
        pressed, EXP_START + EXPRESSION_NAMES.index("mouthPress_R")
    ] = 1.0
    p[pressed, EXP_START] = 0.0
    return FaceParams(p)


def render(avatar, params: FaceParams, size: int = SIZE) -> np.ndarray:
    """[N, size, size, 3] uint8 frames of the avatar."""
    frames = AvatarRenderer(avatar, size).composite(params).frames
    return (frames.clamp(0, 1) * 255).round().byte().numpy()


@pytest.fixture(scope="module")
def clip(avatar, tmp_path_factory, one_torch_thread):
    """A 4 s video with known parameters, tracked and fitted once."""
    truth = known_params(avatar, 4 * FPS)
    frames = render(avatar, truth)
    path = write_mp4(tmp_path_factory.mktemp("clip") / "clip.mp4", frames)
    track = track_video(path)
    fitted = fit_clip(track.landmarks, track.valid, Camera.with_fov(track.width, track.height))
    return path, frames, truth, track, fitted


def test_landmarks_follow_the_rendered_face(clip, face_model):
    _, _, truth, track, _ = clip
    assert track.valid.all() and (track.faces == 1).all()
    assert track.landmarks.shape == (len(truth), 478, 3) and (track.width, track.height) == (SIZE, SIZE)
    rendered = face_model.landmarks(truth, Camera.with_fov(SIZE, SIZE))
    assert np.linalg.norm(track.landmarks[:, :468, :2] - rendered[:, :468, :2], axis=-1).mean() < 3.0


def test_landmarks_are_in_source_pixels_when_downscaled(clip):
    path, _, _, track, _ = clip
    small = track_video(path, max_side=SIZE // 2)
    assert (small.width, small.height) == (SIZE, SIZE)
    assert np.abs(small.landmarks[:, :468, :2] - track.landmarks[:, :468, :2]).mean() < 2.0


def test_fit_recovers_pose_jaw_and_blinks(clip):
    _, _, truth, _, fitted = clip
    ref = fitted.reference
    assert ref < 0.5 * FPS  # the still mouth at rest, not the pressed lips (the smallest lip gap)
    turn = np.degrees(
        (fitted.params.pose[:, :3] - fitted.params.pose[ref, :3]) - (truth.pose[:, :3] - truth.pose[ref, :3])
    )
    assert np.abs(turn[:, :2]).max() < 4.0  # pitch, yaw relative to the reference frame
    assert np.corrcoef(fitted.params.exp[:, 0], truth.exp[:, 0])[0, 1] > 0.85
    found = [start for start, _ in blink_events(fitted.params.blink, fitted.valid)]
    assert len(found) == len(BLINKS)
    assert np.abs(np.array(found) - np.array(BLINKS) * FPS).max() <= 2
    assert fitted.params.blink.max() > 0.8  # calibrated: a full blink reads near 1
    assert (fitted.confidence > 0.5).all() and (fitted.confidence <= 1).all()
    assert fitted.params.pose[ref, 0] == pytest.approx(
        truth.pose[ref, 0], abs=np.radians(4)
    )  # pitch of the camera view


def test_an_identity_taken_from_an_open_mouth_is_moved_to_the_clip_rest(avatar, face_model):
    camera = Camera.with_fov(SIZE, SIZE)
    talking = known_params(avatar, 4 * FPS)
    opened = talking.array[[int(0.6 * FPS)]].copy()  # the jaw open by some
    opened[0, EXP_START] = 0.4
    lifted, _ = Identity.from_landmarks(face_model.landmarks(FaceParams(opened), camera)[0], camera)
    rested = FaceModel(at_rest(lifted, face_model.landmarks(talking, camera), camera))
    jaw = fit(rested, face_model.landmarks(talking, camera), camera).exp[:, 0]
    assert np.abs(jaw - talking.exp[:, 0]).max() < 0.05  # against the rest: the true jaw, not jaw - 0.4


def test_lost_frames_are_interpolated_and_marked(clip):
    _, _, _, track, whole = clip
    valid = track.valid.copy()
    valid[50:60] = False
    fitted = fit_clip(track.landmarks, valid, Camera.with_fov(SIZE, SIZE))
    assert (fitted.valid == valid).all() and (fitted.confidence[50:60] == 0).all()
    gap = fitted.params.array[49:61]
    expected = gap[0] + (gap[-1] - gap[0]) * np.linspace(0, 1, 12)[:, None]
    assert np.allclose(gap, expected, atol=1e-5)


def test_blank_frames_are_exactly_the_invalid_ones(avatar, tmp_path):
    frames = render(avatar, known_params(avatar, 45))
    frames[20:30] = 0
    track = track_video(write_mp4(tmp_path / "blank.mp4", frames))
    assert np.flatnonzero(~track.valid).tolist() == list(range(20, 30))
    assert (track.landmarks[20:30] == 0).all() and (track.faces[20:30] == 0).all()


def test_the_larger_of_two_faces_is_tracked(avatar, tmp_path):
    params = known_params(avatar, 20)
    large, small = render(avatar, params), render(avatar, params, size=160)
    frames = np.full((len(params), SIZE, 2 * SIZE, 3), 128, np.uint8)
    frames[:, :, :SIZE] = large
    frames[:, 48:208, SIZE + 48 : SIZE + 208] = small
    track = track_video(write_mp4(tmp_path / "two.mp4", frames))
    assert track.valid.all() and (track.faces == 2).mean() > 0.9
    assert (track.landmarks[:, :, 0] < SIZE).all()  # on the left, larger face


def test_no_face_and_unreadable_files(tmp_path):
    with pytest.raises(NoFaceError, match="no face"):
        track_video(write_mp4(tmp_path / "grey.mp4", [np.full((128, 128, 3), 90, np.uint8)] * 10))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00not a video" * 50)
    with pytest.raises(VideoReadError):
        track_video(garbage)


def test_smoothing_keeps_three_frame_events_and_stays_in_runs():
    x = np.zeros((12, 1, 1), np.float32)
    x[3:6] = 1.0  # a 3-frame blink
    x[9:] = 5.0  # after a lost frame
    valid = np.ones(12, bool)
    valid[8] = False
    y = smooth(x, valid)[:, 0, 0]
    assert y[4] == 1.0 and y[3] == y[5] == 0.75
    assert (y[9:] == 5.0).all() and y[7] == 0.0  # nothing leaks across the lost frame


def test_track_file_round_trip(clip, tmp_path):
    _, _, _, track, fitted = clip
    path = tmp_path / "TRACK.npz"
    save_track(path, track, fitted)
    track2, fitted2 = load_track(path)
    assert np.array_equal(fitted2.params.array, fitted.params.array) and fitted2.reference == fitted.reference
    assert (
        np.array_equal(track2.landmarks, track.landmarks)
        and fitted2.identity.camera == fitted.identity.camera
    )
    assert np.allclose(
        FaceModel(fitted2.identity).landmarks(fitted2.params[:3]),
        FaceModel(fitted.identity).landmarks(fitted.params[:3]),
    )
    assert np.array_equal(FaceParams.load(str(path)).array, fitted.params.array)


def test_preview_is_written_and_decodable(clip, tmp_path):
    path, frames, _, track, fitted = clip
    out = tmp_path / "preview.mp4"
    write_preview(out, path, track, fitted)
    preview = list(read_frames(out))
    assert len(preview) == len(track) and preview[0].shape == frames[0].shape
    assert np.abs(preview[10].astype(int) - frames[10]).max() > 100  # something is drawn
