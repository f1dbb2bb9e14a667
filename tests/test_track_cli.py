"""`python -m engine track`, run through its own parser (engine/cli.py wires it in)."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from engine import track_cli
from engine.errors import EngineError
from engine.face.track import NoFaceError
from engine.render.renderer import AvatarRenderer
from engine.types import FPS, NUM_PARAMS, FaceParams
from engine.video import VideoReadError, read_frames, write_mp4


def track(*argv: str) -> None:
    parser = argparse.ArgumentParser()
    track_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["track", *argv])
    args.run(args)


@pytest.fixture(scope="module")
def two_faces(avatar, tmp_path_factory, one_torch_thread):
    """2 s of the avatar beside a smaller copy of itself."""
    params = FaceParams(np.tile(avatar.reference_params.array, (2 * FPS, 1)))
    frames = np.full((len(params), 256, 512, 3), 128, np.uint8)
    for size, x, y in ((256, 0, 0), (160, 304, 48)):
        drawn = AvatarRenderer(avatar, size).composite(params).frames
        frames[:, y : y + size, x : x + size] = (drawn.clamp(0, 1) * 255).round().byte().numpy()
    return write_mp4(tmp_path_factory.mktemp("video") / "two.mp4", frames)


def test_track_writes_the_file_preview_and_summary(two_faces, tmp_path, capsys):
    out, preview = tmp_path / "TRACK.npz", tmp_path / "preview.mp4"
    track("--video", str(two_faces), "--out", str(out), "--preview", str(preview))
    with np.load(out) as f:
        n = len(f["valid"])
        assert n == 2 * FPS and f["params"].shape == (n, NUM_PARAMS) and f["landmarks"].shape == (n, 478, 3)
        assert f["valid"].all() and 0 <= f["reference"] < n and int(f["fps"]) == FPS
        assert (f["faces"] == 2).sum() > 0.9 * n
    assert len(list(read_frames(preview))) == n
    err = capsys.readouterr().err
    assert f"{n} frames" in err and "100.0%" in err and "blinks" in err and "pose std" in err
    assert "warning:" in err and "more than one face" in err


def test_bad_input_is_one_clear_error(tmp_path):
    garbage = tmp_path / "garbage.mov"
    garbage.write_bytes(b"not a video" * 100)
    with pytest.raises(VideoReadError, match="garbage.mov"):
        track("--video", str(garbage), "--out", str(tmp_path / "T.npz"))
    with pytest.raises(VideoReadError, match="no such file"):
        track("--video", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "T.npz"))
    grey = write_mp4(tmp_path / "grey.mp4", [np.full((64, 64, 3), 100, np.uint8)] * 5)
    with pytest.raises(NoFaceError):
        track("--video", str(grey), "--out", str(tmp_path / "T.npz"))
    assert issubclass(VideoReadError, EngineError) and issubclass(NoFaceError, EngineError)  # exit 2
    assert not (tmp_path / "T.npz").exists()
