"""speak: audio -> features -> FACIAL-GAN -> frames -> MP4 with the audio, both modes, and the
CLI's errors. Uses a small test feature kind and random GAN weights stored in a copy of the
default avatar, so it runs without trained weights."""
from __future__ import annotations

import argparse
import shutil

import av
import numpy as np
import pytest
import torch

from engine.audio import features as feature_registry
from engine.audio.features import FeatureExtractor, FeatureStream, num_frames
from engine.audio.tts import TtsError, text_to_speech
from engine.avatar.bundle import add_files, load
from engine.pipeline.animator import AnimatorError
from engine.pipeline.speak import Speaker, SpeakError, speak
from engine.speak_cli import add_parser
from engine.types import NUM_PARAMS, PARAM_NAMES, RIG_VERSION, SAMPLE_RATE, frame_pts
from models.facial_gan import FacialGAN, FacialGANConfig, checkpoint

KIND = "test-energy"


class EnergyExtractor(FeatureExtractor):
    """Per frame: log energy and zero-crossing rate (2-d), no look-ahead."""

    kind, dim, lookahead_frames = KIND, 2, 0

    def _offline(self, audio):
        return _rows(audio, 0, num_frames(len(audio)))

    def stream(self):
        return _EnergyStream()


def _rows(audio, first, count):
    out = []
    for i in range(first, first + count):
        frame = audio[frame_pts(i) : frame_pts(i + 1)]
        frame = frame if len(frame) else np.zeros(1, np.float32)
        out.append(
            [
                np.log(np.mean(frame**2) + 1e-6),
                np.mean(np.abs(np.diff(np.sign(frame)))) if len(frame) > 1 else 0.0,
            ]
        )
    return np.array(out, np.float32).reshape(-1, 2)


class _EnergyStream(FeatureStream):
    def __init__(self):
        super().__init__(2)
        self.audio = np.zeros(0, np.float32)
        self.done = 0

    def _process(self, pcm):
        self.audio = np.concatenate([self.audio, pcm])
        ready = 0
        while frame_pts(self.done + ready + 1) <= len(self.audio):
            ready += 1
        rows = _rows(self.audio, self.done, ready)
        self.done += ready
        return rows

    def _finish(self):
        rows = _rows(self.audio, self.done, num_frames(len(self.audio)) - self.done)
        self.done = num_frames(len(self.audio))
        return rows


feature_registry.register(KIND, lambda model: EnergyExtractor())


@pytest.fixture(scope="module")
def speaking_avatar(tmp_path_factory):
    """The default avatar with random FACIAL-GAN weights for the test feature kind."""
    root = tmp_path_factory.mktemp("avatars")
    shutil.copytree(load("default").path, root / "tester")
    torch.manual_seed(0)
    model = FacialGAN(
        FacialGANConfig(feature_dim=2, num_params=NUM_PARAMS, window=32, width=4, unet_channels=(1, 2, 2))
    ).eval()
    meta = {
        "feature_kind": KIND,
        "rig_version": RIG_VERSION,
        "param_names": list(PARAM_NAMES),
        "silence": [float(np.log(1e-6)), 0.0],
    }
    weights = root / "w.pt"
    torch.save(checkpoint(model, meta), weights)
    return add_files(root / "tester", {f"facial_gan_{KIND}": weights})


def _speech(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)


def _probe(path):
    with av.open(str(path)) as container:
        video = sum(1 for _ in container.decode(video=0))
    with av.open(str(path)) as container:
        audio = (
            container.streams.audio[0].duration * container.streams.audio[0].time_base
            if container.streams.audio
            else 0
        )
    return video, float(audio)


@pytest.mark.parametrize("mode", ["offline", "streaming"])
def test_speak_writes_a_video_with_its_audio(speaking_avatar, tmp_path, mode):
    audio = _speech(1.5)
    out = tmp_path / f"{mode}.mp4"
    timings = speak(Speaker(speaking_avatar, KIND), audio, str(out), mode, size=128, renderer="composite")
    frames, audio_seconds = _probe(out)
    assert frames == timings.frames == num_frames(len(audio)) == 45
    assert abs(audio_seconds - 1.5) < 0.05
    assert timings.total > 0 and timings.animate > 0


def test_streaming_and_offline_cover_the_same_frames(speaking_avatar):
    from engine.pipeline.speak import Timings

    speaker = Speaker(speaking_avatar, KIND)
    audio = _speech(2.0)
    offline = speaker.offline(audio, Timings(2.0))
    streamed = np.concatenate([p.array for p in speaker.streaming(audio, Timings(2.0))])
    assert streamed.shape == offline.array.shape == (60, NUM_PARAMS)


def test_a_few_milliseconds_of_audio_still_make_a_frame(speaking_avatar, tmp_path):
    out = tmp_path / "short.mp4"
    speak(
        Speaker(speaking_avatar, KIND), _speech(0.01), str(out), "streaming", size=128, renderer="composite"
    )
    assert _probe(out)[0] == 1


def test_errors(speaking_avatar, tmp_path):
    with pytest.raises(SpeakError, match="empty"):
        speak(Speaker(speaking_avatar, KIND), np.zeros(0, np.float32), str(tmp_path / "x.mp4"))
    with pytest.raises(TtsError, match="empty"):
        text_to_speech("   ")
    with pytest.raises(AnimatorError, match="no FACIAL-GAN weights"):
        Speaker(load("default"), KIND)  # the shipped avatar has no weights for the test kind
    assert not (tmp_path / "x.mp4").exists()


def test_text_to_speech_and_the_cli(speaking_avatar, tmp_path, capsys):
    audio = text_to_speech("Hello, my name is Ava.")
    assert 0.8 < len(audio) / SAMPLE_RATE < 4 and np.abs(audio).max() > 0.05
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "cli.mp4"
    args = parser.parse_args(
        [
            "speak",
            "--avatar",
            str(speaking_avatar.path),
            "--text",
            "Bob.",
            "--out",
            str(out),
            "--features",
            KIND,
            "--size",
            "128",
            "--renderer",
            "composite",
            "--mode",
            "streaming",
        ]
    )
    args.run(args)
    message = capsys.readouterr().err
    assert out.is_file() and "frames at 30 fps" in message and "real-time factor" in message
