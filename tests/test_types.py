import numpy as np
import pytest

from engine.types import (
    FPS,
    NUM_EXP,
    NUM_PARAMS,
    PARAM_NAMES,
    SAMPLE_RATE,
    FaceParams,
    FaceParamsError,
    frame_at,
    frame_pts,
)


def test_column_order_is_pose_blink_expression():
    assert PARAM_NAMES[:7] == ("pitch", "yaw", "roll", "tx", "ty", "tz", "blink")
    assert NUM_PARAMS == 7 + NUM_EXP and NUM_EXP >= 20


def test_frame_pts_never_drifts():
    # One hour of frames lands exactly on the hour: pts is derived from the index, not summed.
    assert frame_pts(FPS * 3600) == SAMPLE_RATE * 3600
    assert frame_pts(1) == 533 and frame_pts(2) == 1066 and frame_pts(3) == 1600


@pytest.mark.parametrize("index", [0, 1, 2, 3, 29, 30, 31, 12345, FPS * 3600])
def test_frame_at_inverts_frame_pts(index):
    start, end = frame_pts(index), frame_pts(index + 1)
    assert frame_at(start) == index and frame_at(end - 1) == index and frame_at(end) == index + 1


def test_frame_at_finds_the_frame_that_holds_a_sample():
    starts = np.arange(FPS * 3600 + 1, dtype=np.int64) * SAMPLE_RATE // FPS  # frame_pts, an hour
    pts = np.random.default_rng(0).integers(0, SAMPLE_RATE * 3600, 20_000)
    expected = np.searchsorted(starts, pts, side="right") - 1
    assert [frame_at(int(p)) for p in pts] == expected.tolist()


def test_save_load_round_trip(tmp_path):
    params = FaceParams(np.random.default_rng(0).normal(size=(5, NUM_PARAMS)))
    params.save(str(tmp_path / "p.npz"))
    assert np.array_equal(FaceParams.load(str(tmp_path / "p.npz")).array, params.array)


def test_load_matches_columns_by_name(tmp_path):
    np.savez(tmp_path / "p.npz", params=np.array([[0.5, 0.1]]), names=np.array(["jawOpen", "yaw"]))
    loaded = FaceParams.load(str(tmp_path / "p.npz"))
    assert loaded.exp[0, 0] == pytest.approx(0.5) and loaded.pose[0, 1] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "array, message",
    [(np.zeros((3, 5)), "shape"), (np.full((2, NUM_PARAMS), np.nan), "NaN"), (np.zeros(NUM_PARAMS), "shape")],
)
def test_bad_arrays_are_refused(array, message):
    with pytest.raises(FaceParamsError, match=message):
        FaceParams(array)


def test_bad_files_are_refused(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FaceParamsError, match="not a readable"):
        FaceParams.load(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    with pytest.raises(FaceParamsError, match="no 'params'"):
        FaceParams.load(str(tmp_path / "other.npz"))
    np.savez(tmp_path / "names.npz", params=np.zeros((1, 1)), names=np.array(["smirk"]))
    with pytest.raises(FaceParamsError, match="smirk"):
        FaceParams.load(str(tmp_path / "names.npz"))
