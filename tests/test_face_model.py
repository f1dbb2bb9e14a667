"""The rig, the pose and the fitter: random params -> landmarks -> fit -> the same params."""
import numpy as np
import pytest

from engine.face import rig
from engine.face.fit import fit
from engine.face.model import BLINK_COLS, Camera, FaceModel, Identity
from engine.face.pose import euler, procrustes, rotation
from engine.types import EXPRESSION_NAMES, NUM_EXP, FaceParams

# Stated tolerances of the round trip on exact landmarks.
ANGLE_TOL = np.radians(0.01)
TRANSLATION_TOL = 1e-3  # model units (~cm)
WEIGHT_TOL = 1e-3


def random_params(n: int, seed: int = 0) -> FaceParams:
    """Plausible random frames: a few active shapes each, blinks in canonical form (see fit.py)."""
    rng = np.random.default_rng(seed)
    pose = np.concatenate([rng.uniform(-0.4, 0.4, (n, 3)), rng.uniform(-2, 2, (n, 3))], 1)
    exp = rng.uniform(0, 1, (n, NUM_EXP)) * (rng.random((n, NUM_EXP)) < 0.3)
    blink = rng.uniform(0, 1, n) * (rng.random(n) < 0.5)
    exp[:, BLINK_COLS] = np.minimum(exp[:, BLINK_COLS], 1 - blink[:, None])
    exp[:, BLINK_COLS] -= exp[:, BLINK_COLS].min(1, keepdims=True)
    return FaceParams.from_parts(pose, blink, exp)


def test_euler_round_trip():
    angles = np.random.default_rng(1).uniform(-1.2, 1.2, (100, 3))
    r = rotation(*angles.T)
    assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(euler(r), angles, atol=1e-10)


def test_pose_directions_match_the_documented_convention(face_model):
    def moved(landmark: int, angle: str) -> np.ndarray:
        """Camera-space displacement of a landmark when one angle goes from 0 to 0.3 rad."""
        p = np.zeros((2, 7 + NUM_EXP))
        p[1, ["pitch", "yaw", "roll"].index(angle)] = 0.3
        v = face_model.vertices(FaceParams(p))[:, landmark]
        return v[1] - v[0]

    nose, chin, left_cheek = 1, 152, 454
    assert moved(nose, "yaw")[0] < 0  # yaw > 0: the nose turns to the image's left
    assert moved(chin, "pitch")[2] > 0 and moved(nose, "pitch")[1] > 0  # pitch > 0: chin back, nose down
    assert moved(left_cheek, "roll")[1] > 0  # roll > 0: clockwise on screen, the image-right side drops


def test_procrustes_recovers_a_similarity():
    rng = np.random.default_rng(2)
    source = rng.normal(size=(50, 3))
    r = rotation(0.3, -0.2, 0.1)
    target = 1.7 * source @ r.T + [1, 2, 3]
    r_fit, t_fit, s_fit = procrustes(source, target, scale=True)
    assert np.allclose(r_fit, r) and np.allclose(t_fit, [1, 2, 3]) and s_fit == pytest.approx(1.7)


def test_rig_has_named_distinct_shapes(face_model):
    required = {
        "jawOpen",
        "mouthClose",
        "mouthFunnel",
        "mouthPucker",
        "mouthSmile_L",
        "mouthSmile_R",
        "mouthFrown_L",
        "mouthFrown_R",
        "mouthStretch_L",
        "mouthStretch_R",
        "mouthRollLower",
        "mouthRollUpper",
        "mouthPress_L",
        "mouthPress_R",
        "mouthShrugLower",
        "mouthShrugUpper",
        "mouthLowerLipTuck",
        "eyeBlink_L",
        "eyeBlink_R",
        "browInnerUp",
        "browDown_L",
        "browDown_R",
        "cheekPuff",
    }
    assert required <= set(EXPRESSION_NAMES)
    basis = face_model.basis.reshape(NUM_EXP, -1)
    assert (np.abs(basis).max(1) > 0.25).all()  # every shape visibly moves something (model units ~ cm)
    assert np.linalg.matrix_rank(basis) == NUM_EXP  # and no shape is a mix of the others


def test_rig_sides_and_directions(face_model):
    v = face_model.identity.vertices
    shape = dict(zip(EXPRESSION_NAMES, face_model.basis, strict=True))
    assert shape["jawOpen"][152, 1] > 1.0  # the chin drops (y down) by over a centimetre
    assert np.abs(shape["jawOpen"][10]).max() < 1e-6  # the forehead stays
    # The upper lip stays whole as the jaw opens: its middle rows (11, 12 above the inner edge 13)
    # do not slide down over the open mouth.
    assert np.abs(shape["jawOpen"][[0, 11, 12, 13]]).max() < 1e-6
    assert shape["mouthSmile_L"][291, 1] < 0 and shape["mouthSmile_L"][291, 0] > 0  # left corner: up and out
    assert np.abs(shape["mouthSmile_L"][61]).max() < 0.05  # the right corner stays
    assert v[159, 1] + shape["eyeBlink_R"][159, 1] == pytest.approx(
        v[145, 1] + shape["eyeBlink_R"][145, 1], abs=0.05
    )  # lids meet


def test_rig_scales_with_the_identity(face_model):
    bigger = rig.build(face_model.identity.vertices * 2.0)
    assert np.allclose(bigger, 2.0 * face_model.basis, atol=1e-9)


def test_fit_round_trip_on_exact_landmarks(face_model):
    truth = random_params(24)
    fitted = fit(face_model, face_model.landmarks(truth))
    err = np.abs(fitted.array - truth.array)
    assert err[:, :3].max() < ANGLE_TOL
    assert err[:, 3:6].max() < TRANSLATION_TOL
    assert err[:, 6:].max() < WEIGHT_TOL


def test_fit_is_stable_under_tracking_noise(face_model):
    truth = random_params(12, seed=3)
    noisy = face_model.landmarks(truth) + np.random.default_rng(4).normal(0, 0.3, (12, 478, 3))  # 0.3 px
    fitted = fit(face_model, noisy)
    err = np.abs(fitted.array - truth.array)
    assert err[:, :3].max() < np.radians(1.0)
    # Weights of the subtlest shapes (a few mm at full strength) trade off against noise, so the
    # check is on the typical weight and on the face the fit rebuilds.
    assert np.median(err[:, 6:]) < 0.02 and np.percentile(err[:, 6:], 95) < 0.16
    rebuilt = face_model.landmarks(fitted)[..., :2] - face_model.landmarks(truth)[..., :2]
    assert np.sqrt((rebuilt**2).mean()) < 0.3  # pixels, below the noise that went in


def test_identity_from_landmarks_reproduces_the_photo(avatar):
    landmarks = avatar.identity.camera.to_landmarks(
        FaceModel(avatar.identity).vertices(avatar.reference_params)
    )[0]
    identity, params = Identity.from_landmarks(landmarks, avatar.identity.camera)
    again = FaceModel(identity).landmarks(params)[0]
    assert np.abs(again - landmarks).max() < 1e-4  # pixels
    eye_span = np.linalg.norm(identity.vertices[263] - identity.vertices[33])
    assert eye_span == pytest.approx(
        9.0, rel=0.02
    )  # set in the image plane; the corners differ a little in depth


def test_camera_resize_keeps_the_view():
    cam = Camera.with_fov(256, 256)
    p = np.array([[1.0, -2.0, 100.0]])
    assert np.allclose(cam.resized(512, 512).project(p)[:, :2], 2 * cam.project(p)[:, :2])
