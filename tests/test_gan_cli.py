"""`train-gan`: the general command on a prepared data file, personal fine-tuning into an avatar
bundle, and the errors. A small test feature kind stands in for the real extractors."""
from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest
import torch

from engine.audio import features as feature_registry
from engine.audio.features import FeatureExtractor, num_frames
from engine.avatar.bundle import load
from engine.errors import UsageError
from engine.pipeline.animator import Gan
from engine.train.gan import data as gan_data
from engine.train.gan import train as gan
from engine.train.gan.cli import add_parser
from engine.types import NUM_PARAMS, SAMPLE_RATE, FaceParams, frame_pts
from models.facial_gan import FacialGANConfig, checkpoint

KIND = "test-level"


class LevelExtractor(FeatureExtractor):
    """One feature per frame: the frame's mean absolute level (offline only)."""

    kind, dim, lookahead_frames = KIND, 1, 0

    def _offline(self, audio):
        n = num_frames(len(audio))
        return np.array(
            [
                [np.abs(audio[frame_pts(i) : frame_pts(i + 1)]).mean() if frame_pts(i) < len(audio) else 0.0]
                for i in range(n)
            ]
        )

    def stream(self):
        raise NotImplementedError


feature_registry.register(KIND, lambda model: LevelExtractor())


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(*argv):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["train-gan", *argv])
    args.run(args)


def _general_weights(path):
    config = FacialGANConfig(
        feature_dim=1, num_params=NUM_PARAMS, window=32, width=4, unet_channels=(1, 2, 2), disc_width=8
    )
    generator = gan.FacialGAN(config).eval()
    torch.save(gan.shipped(checkpoint(generator, gan.meta(KIND, np.zeros(1)))), path)


def test_personal_fine_tuning_goes_into_the_bundle(tmp_path):
    shutil.copytree(load("default").path, tmp_path / "person")
    frames = 90
    audio = (
        0.2 * np.sin(np.arange(frame_pts(frames)) * 0.05) * (np.arange(frame_pts(frames)) % 8000 < 4000)
    ).astype(np.float32)
    params = np.tile(load("default").reference_params.array, (frames, 1))
    params[:, 7] += 0.3 * (np.abs(LevelExtractor().offline(audio)[:, 0]) > 0.05)  # the jaw opens with sound
    np.savez(tmp_path / "track.npz", params=params, audio=audio)
    _general_weights(tmp_path / "general.pt")
    _run("--avatar", str(tmp_path / "person"), "--dataset", str(tmp_path / "track.npz"), "--features", KIND,
         "--init", str(tmp_path / "general.pt"), "--steps", "3", "--checkpoint", str(tmp_path / "p.ckpt"))
    avatar = load(tmp_path / "person")
    assert avatar.extra_files[f"facial_gan_{KIND}"] == f"facial_gan_{KIND}.pt"
    tuned = Gan.for_avatar(avatar, KIND)
    assert tuned.feature_kind == KIND
    state = gan.load(tmp_path / "p.ckpt")
    assert state["step"] == 3 and state["train_config"]["first_frame"] and state["train_config"]["lr"] == 1e-5
    assert state["meta"]["avatar"] == avatar.name  # the name in avatar.json (this copy: "default")


def test_personal_errors(tmp_path):
    shutil.copytree(load("default").path, tmp_path / "person")
    with pytest.raises(UsageError, match="needs --dataset"):
        _run("--avatar", str(tmp_path / "person"), "--features", KIND)
    FaceParams.neutral(40).save(str(tmp_path / "track.npz"))
    with pytest.raises(UsageError, match="no 'audio'"):
        _run(
            "--avatar", str(tmp_path / "person"), "--dataset", str(tmp_path / "track.npz"), "--features", KIND
        )
    np.savez(
        tmp_path / "with_audio.npz",
        params=np.zeros((40, NUM_PARAMS)),
        audio=np.zeros(SAMPLE_RATE, np.float32),
    )
    with pytest.raises(UsageError, match="no general weights"):
        _run(
            "--avatar",
            str(tmp_path / "person"),
            "--dataset",
            str(tmp_path / "with_audio.npz"),
            "--features",
            KIND,
            "--init",
            str(tmp_path / "none.pt"),
        )


def test_general_training_from_a_data_file(tmp_path):
    rng = np.random.default_rng(0)
    items = [
        gan_data.Example(
            f"v{k}",
            k == 2,
            rng.random((160, 1), dtype=np.float32),
            rng.normal(size=(160, NUM_PARAMS)).astype(np.float32) * 0.1,
        )
        for k in range(3)
    ]
    gan_data.save(tmp_path / "data.npz", items)
    ship = tmp_path / "facial_gan_test.pt"
    general = ["--general", "--features", KIND, "--preset", "cpu-small", "--data", str(tmp_path / "data.npz")]
    files = ["--batch", "2", "--checkpoint", str(tmp_path / "g.ckpt"), "--ship", str(ship)]
    _run(*general, "--steps", "2", *files)
    shipped = Gan.load(ship)
    assert (
        shipped.model.config.width == gan.PRESETS["cpu-small"][0].width
        and shipped.model.config.feature_dim == 1
    )
    state = gan.load(tmp_path / "g.ckpt")
    assert state["step"] == 2 and state["history"][-1]["held_out_l2"] > 0
    _run(*general, "--steps", "3", *files, "--resume")
    assert gan.load(tmp_path / "g.ckpt")["step"] == 3
