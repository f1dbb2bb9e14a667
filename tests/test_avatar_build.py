"""build-avatar --video: the whole path on a short talking-head video made here (the built-in
avatar speaking, bench/sample_video.py), with the tiny preset; resuming; refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest

from bench.sample_video import talking_video
from engine.avatar import video_build as avatar_build
from engine.avatar.bundle import load
from engine.avatar.video_build import BuildError, BuildOptions, build
from engine.face.track import NoFaceError
from engine.video import VideoReadError, read_frames, write_mp4

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return talking_video(tmp_path_factory.mktemp("video") / "talking.mp4", seconds=8.0, size=256)


@pytest.fixture(scope="module")
def built(video, tmp_path_factory):
    """(avatar, work directory, log lines) of one tiny build."""
    root = tmp_path_factory.mktemp("build")
    lines: list[str] = []
    avatar = build(
        BuildOptions(video, root / "avatars" / "talker", "talker", "tiny", work=root / "work"), lines.append
    )
    return avatar, root / "work", lines


def test_the_bundle_has_the_person_their_gan_their_r2v_and_a_report(built):
    avatar, work, lines = built
    assert any("short" in line for line in lines)  # 8 s: under 20 s warns
    again = load(avatar.path)
    assert again.name == "talker" and again.resolution == avatar_build.PRESETS["tiny"].resolution
    assert {"facial_gan_builtin", "r2v_lite", "report", "report_curves", "report_frames"} <= set(
        again.extra_files
    )
    assert again.source.startswith("video")
    # The person's own statistics, measured on the video (the speaking avatar blinks and sways).
    assert again.motion.blinks_per_minute > 0 and all(s > 0 for s in again.motion.pose_std)
    report = json.loads((work / "report.json").read_text())
    assert (
        report["renderer"] == "r2v"
        and np.isfinite(report["r2v"]["psnr"])
        and np.isfinite(report["r2v"]["mouth_ssim"])
    )
    assert report["landmarks_reconstructed"]["frames"] > 0
    assert -1 <= report["jaw_open_correlation"] <= 1
    assert set(report["stage_seconds"]) >= {"track", "crop", "fit", "features", "gan", "r2v"}
    assert "landmark distance" in (again.path / again.extra_files["report"]).read_text()


def test_the_avatar_speaks_and_the_server_offers_it(built, tmp_path, monkeypatch):
    from engine.pipeline.speak import Speaker, speak
    from engine.types import SAMPLE_RATE
    from streaming import avatars

    avatar, _, _ = built
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    timings = speak(
        Speaker(avatar), (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), str(tmp_path / "say.mp4")
    )
    assert timings.frames == 30
    monkeypatch.setattr(avatars, "AVATARS_DIR", avatar.path.parent)
    assert "talker" in avatars.bundle_names()


def test_a_rerun_resumes_every_finished_stage(built, video):
    avatar, work, _ = built
    lines: list[str] = []
    build(BuildOptions(video, avatar.path, "talker", "tiny", force=True, work=work), lines.append)
    reused = [line for line in lines if "done before" in line]
    assert len(reused) == 7


def test_a_crash_leaves_no_half_avatar_and_the_rerun_goes_on(video, tmp_path, monkeypatch):
    options = BuildOptions(video, tmp_path / "avatars" / "crash", "crash", "tiny", work=tmp_path / "work")

    def crash(self):
        raise RuntimeError("power cut")

    monkeypatch.setattr(avatar_build.Stages, "gan", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        build(options, lambda line: None)
    assert not options.out.exists()
    assert all((options.work / f"{stage}.done").is_file() for stage in ("track", "crop", "fit", "features"))
    monkeypatch.undo()
    lines: list[str] = []
    build(options, lines.append)
    assert sum("done before" in line for line in lines) == 4 and load(options.out).name == "crash"


def test_refusals(video, built, tmp_path):
    avatar, _, _ = built
    with pytest.raises(BuildError, match="--force"):
        build(BuildOptions(video, avatar.path, "talker", "tiny"), lambda line: None)
    frames = [frame for _, frame in zip(range(90), read_frames(video), strict=False)]
    short = write_mp4(tmp_path / "short.mp4", frames)  # 3 s
    with pytest.raises(BuildError, match="at least 5 s"):
        build(BuildOptions(short, tmp_path / "a", "a", "tiny", work=tmp_path / "w1"), lambda line: None)
    wall = write_mp4(tmp_path / "wall.mp4", [np.full((128, 128, 3), 90, np.uint8)] * 180)
    with pytest.raises(NoFaceError):
        build(BuildOptions(wall, tmp_path / "b", "b", "tiny", work=tmp_path / "w2"), lambda line: None)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoReadError):
        build(
            BuildOptions(tmp_path / "junk.mp4", tmp_path / "c", "c", "tiny", work=tmp_path / "w3"),
            lambda line: None,
        )
    assert not any((tmp_path / name).exists() for name in "abc")


def test_a_silent_video_builds_with_the_general_gan(video, tmp_path):
    frames = [frame for _, frame in zip(range(180), read_frames(video), strict=False)]
    silent = write_mp4(tmp_path / "silent.mp4", frames)  # 6 s, no sound
    lines: list[str] = []
    avatar = build(
        BuildOptions(silent, tmp_path / "mute", "mute", "tiny", work=tmp_path / "work"), lines.append
    )
    assert any("no sound" in line for line in lines)
    assert "facial_gan_builtin" not in avatar.extra_files and "r2v_lite" in avatar.extra_files
