"""engine/video.py's reader: resampling to FPS by timestamp, downscaling, bad files."""
from __future__ import annotations

import wave
from fractions import Fraction

import av
import numpy as np
import pytest

from engine.types import FPS
from engine.video import VideoReadError, probe_video, read_frames, write_mp4

LEVEL_STEP = 8  # source frame k is a flat grey of level k * LEVEL_STEP


def grey(k: int, height: int = 64, width: int = 96) -> np.ndarray:
    return np.full((height, width, 3), k * LEVEL_STEP, np.uint8)


def source_index(frame: np.ndarray) -> int:
    return int(round(frame.mean() / LEVEL_STEP))


def write_vfr(path, pts_ms: list[int], duration_ms: int) -> None:
    """An H.264 MP4 whose frame k (grey(k)) starts at pts_ms[k] milliseconds."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for k, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(grey(k), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            frame.duration = (pts_ms[k + 1] if k + 1 < len(pts_ms) else duration_ms) - pts
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_constant_rate_passes_through(tmp_path):
    path = write_mp4(tmp_path / "a.mp4", [grey(k) for k in range(30)])
    frames = list(read_frames(path))
    assert [source_index(f) for f in frames] == list(range(30))
    assert frames[0].shape == (64, 96, 3) and frames[0].dtype == np.uint8
    info = probe_video(path)
    assert (info.width, info.height, info.frames, info.has_audio) == (96, 64, 30, False)
    assert info.seconds == pytest.approx(1.0)


def test_25_fps_is_resampled_by_timestamp(tmp_path):
    path = write_mp4(tmp_path / "a.mp4", [grey(k) for k in range(25)], fps=25)
    frames = list(read_frames(path))
    assert len(frames) == probe_video(path).frames == 30
    # output frame i shows the source frame on screen at i / 30 s: k = floor(i * 25 / 30)
    assert [source_index(f) for f in frames] == [i * 25 // 30 for i in range(30)]


def test_variable_frame_rate_is_resampled_by_timestamp(tmp_path):
    pts = [0, 20, 70, 100, 180, 200, 250, 400, 410, 500]
    path = tmp_path / "vfr.mp4"
    write_vfr(path, pts, duration_ms=600)
    frames = list(read_frames(path))
    expected = [max(k for k, p in enumerate(pts) if p <= 1000 * i / FPS) for i in range(len(frames))]
    assert [source_index(f) for f in frames] == expected
    assert len(frames) == probe_video(path).frames
    assert 16 <= len(frames) <= 18  # about 0.5 to 0.6 s, however the muxer records the last frame


def test_huge_frames_are_downscaled(tmp_path):
    image = np.zeros((1000, 2000, 3), np.uint8)
    image[:, 1000:] = 200  # left half black, right half light
    path = write_mp4(tmp_path / "big.mp4", [image] * 3)
    frames = list(read_frames(path, max_side=500))
    assert len(frames) == 3 and frames[0].shape == (250, 500, 3)
    assert frames[0][:, :240].mean() < 5 and abs(frames[0][:, 260:].mean() - 200) < 5
    assert next(read_frames(path, max_side=4000)).shape == (1000, 2000, 3)  # never upscaled


def test_audio_is_reported(tmp_path):
    path = write_mp4(tmp_path / "a.mp4", [grey(k) for k in range(30)], audio=np.zeros(16000, np.float32))
    assert probe_video(path).has_audio


def test_bad_files_say_why(tmp_path):
    with pytest.raises(VideoReadError, match="no such file"):
        probe_video(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video" * 100)
    with pytest.raises(VideoReadError, match="not a readable video"):
        next(read_frames(garbage))
    sound = tmp_path / "sound.wav"
    with wave.open(str(sound), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(np.zeros(1600, np.int16).tobytes())
    with pytest.raises(VideoReadError, match="no video stream"):
        probe_video(sound)


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_display_rotation_is_applied(tmp_path, degrees):
    image = np.zeros((64, 96, 3), np.uint8)
    image[:16, :16] = 255  # a white corner, top left as stored
    path = tmp_path / "turned.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        stream.set_display_rotation(degrees)
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    frame = next(read_frames(path))
    upright = np.rot90(image, degrees // 90)  # np.rot90 turns counter-clockwise, as the display matrix
    assert (
        frame.shape == upright.shape
        and (probe_video(path).height, probe_video(path).width) == upright.shape[:2]
    )
    assert np.abs(frame.astype(int) - upright).mean() < 8
