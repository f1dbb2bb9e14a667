"""`python -m engine` as a user runs it: real processes, real files, exit codes and messages."""
import json
import subprocess
import sys

import av
import numpy as np
import pytest

from engine.types import NUM_PARAMS, SAMPLE_RATE, FaceParams


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=300
    )


def probe(path) -> dict:
    with av.open(str(path)) as c:
        video = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return {"frames": frames, "size": (video.width, video.height), "audio": bool(c.streams.audio)}


def test_animate_params_with_audio(tmp_path, avatar):
    params = np.repeat(avatar.reference_params.array, 45, axis=0)
    params[15:30, 7] = 1.0  # jawOpen
    FaceParams(params).save(str(tmp_path / "seq.npz"))
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    import wave

    with wave.open(str(tmp_path / "a.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(SAMPLE_RATE)
        w.writeframes((0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes())
    out = tmp_path / "out.mp4"
    result = run(
        "animate",
        "--avatar",
        "default",
        "--params",
        str(tmp_path / "seq.npz"),
        "--audio",
        str(tmp_path / "a.wav"),
        "--out",
        str(out),
        "--size",
        "128",
    )
    assert result.returncode == 0, result.stderr
    info = probe(out)
    assert len(info["frames"]) == 45 and info["size"] == (128, 128) and info["audio"]
    rest, open_ = info["frames"][5].astype(float), info["frames"][22].astype(float)
    assert (
        np.abs(open_ - rest).mean() > 0.5 and np.abs(open_[:20] - rest[:20]).mean() < 2
    )  # the mouth moved, the top did not


@pytest.mark.slow
def test_animate_demo_is_playable_and_shows_every_motion(tmp_path, avatar):
    from engine.pipeline.demo import demo_sequence

    out = tmp_path / "demo.mp4"
    result = run("animate", "--avatar", "default", "--demo", "--out", str(out), "--size", "128")
    assert result.returncode == 0, result.stderr
    frames = np.stack(probe(out)["frames"]).astype(np.float32)
    demo = demo_sequence(avatar.reference_params)
    assert len(frames) == len(demo)
    # The peak frame of every rig shape, the deepest blink and each pose extreme visibly differ
    # from the rest frame: at least 20 pixels change by more than 12 grey levels.
    peaks = list(demo.array[:, 6:].argmax(0)) + list(np.abs(demo.pose - demo.pose[0]).argmax(0))
    for peak in peaks:
        changed = (np.abs(frames[peak] - frames[0]).max(-1) > 12).sum()
        assert changed >= 20, f"frame {peak} looks like the rest frame"


def _write(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda d: ["--params", str(d / "missing.npz")], "not a readable"),
        (lambda d: ["--params", _write(d / "shape.npz", params=np.zeros((10, 5)))], "shape"),
        (lambda d: ["--params", _write(d / "nan.npz", params=np.full((10, NUM_PARAMS), np.nan))], "NaN"),
        (lambda d: ["--params", _write(d / "empty.npz", params=np.zeros((0, NUM_PARAMS)))], "no frames"),
        (lambda d: ["--demo", "--avatar", "nobody"], "unknown avatar"),
        (lambda d: ["--demo", "--audio", str(d / "missing.wav")], "cannot decode audio"),
    ],
)
def test_animate_bad_input(tmp_path, make_args, message):
    out = tmp_path / "out.mp4"
    result = run("animate", *make_args(tmp_path), "--out", str(out))
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".*mp4"))


def test_animate_unwritable_output(tmp_path):
    result = run("animate", "--demo", "--out", str(tmp_path / "no" / "such" / "dir.mp4"))
    assert result.returncode == 2 and "does not exist" in result.stderr


def test_build_avatar_from_photo_and_bad_photos(tmp_path):
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "me.jpg")
    photo = ("build-avatar", "--image", str(tmp_path / "me.jpg"), "--out", str(tmp_path / "me"))
    result = run(
        *photo, "--preset", "tiny", "--work", str(tmp_path / "work")
    )  # R2V on synthesised pairs, a few steps
    assert result.returncode == 0, result.stderr
    assert "r2v_lite" in json.loads((tmp_path / "me" / "avatar.json").read_text())["files"]
    result = run(*photo, "--preset", "none")
    assert result.returncode == 2 and "--force" in result.stderr  # an avatar is never overwritten by accident
    assert run(*photo, "--preset", "none", "--force").returncode == 0

    Image.fromarray(np.full((240, 240, 3), 90, np.uint8)).save(tmp_path / "wall.png")
    (tmp_path / "text.jpg").write_text("not an image")
    for photo, message in (("wall.png", "no face"), ("text.jpg", "not a readable image")):
        result = run("build-avatar", "--image", str(tmp_path / photo), "--out", str(tmp_path / "bad"))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / "bad").exists()


def test_a_bug_shows_its_traceback_instead_of_passing_for_bad_input(monkeypatch):
    """Only the engine's own errors (and file errors) become one line and exit status 2."""
    from engine import cli

    def broken(args):
        raise ValueError("a bug")

    monkeypatch.setattr(cli, "animate", broken)
    with pytest.raises(ValueError, match="a bug"):
        cli.main(["animate", "--demo", "--out", "x.mp4"])
