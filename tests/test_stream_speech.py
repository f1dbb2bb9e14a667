"""SpeechModel: the avatar's trained models or one clear reason why not, and FACIAL-GAN's
streaming animator placed on the session's frames."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.avatar.bundle import MotionStats
from engine.pipeline.animator import Gan, StreamConfig
from engine.pipeline.idle import IdleMotion
from engine.types import NUM_PARAMS, FaceParams
from models.facial_gan import FacialGAN, FacialGANConfig
from streaming.probe import LoudnessExtractor
from streaming.speech import SpeechModel, SpeechUnavailable

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def silent_gan() -> Gan:
    """A small FACIAL-GAN that says nothing: offsets 0, so the animator adds the idle motion."""
    torch.manual_seed(0)
    model = FacialGAN(
        FacialGANConfig(feature_dim=1, num_params=NUM_PARAMS, window=32, width=4, unet_channels=(1, 2, 2))
    )
    torch.nn.init.zeros_(model.frame.fc2.weight)
    torch.nn.init.zeros_(model.frame.fc2.bias)
    model.param_mean.zero_()
    return Gan(model.eval(), "loudness", np.zeros(1, np.float32))


def test_missing_speech_models_are_one_clear_error(avatar):
    with pytest.raises(SpeechUnavailable, match="unknown feature kind 'nonexistent'"):
        SpeechModel.load(dataclasses.replace(avatar, feature_kind="nonexistent"), 2, 2)


def test_an_extractor_that_needs_the_whole_input_cannot_run_live():
    extractor = LoudnessExtractor()
    extractor.lookahead_frames = None
    with pytest.raises(SpeechUnavailable, match="whole input"):
        SpeechModel(extractor, lambda first, idle: None, 0)


@pytest.mark.parametrize("lookahead, stride", [(0, 1), (2, 2), (1, 3)])
def test_a_frame_waits_for_the_features_and_the_animator_look_ahead(lookahead, stride):
    speech = SpeechModel.facial(
        LoudnessExtractor(), silent_gan(), FaceParams.neutral(), StreamConfig(lookahead, stride)
    )
    assert speech.wait_frames == 0 + (lookahead + stride - 1) + 1


def test_the_animator_continues_the_sessions_idle_motion_from_its_first_frame():
    idle = IdleMotion(FaceParams.neutral(), MotionStats(), seed=3)
    speech = SpeechModel.facial(LoudnessExtractor(), silent_gan(), FaceParams.neutral(), StreamConfig(2, 2))
    first = 1234
    animator = speech.new_animator(first, idle)
    out = np.concatenate([animator.push(np.zeros((60, 1), np.float32)).array, animator.flush().array])
    expected = idle.params(np.arange(first, first + len(out))).array
    assert len(out) == 60
    assert np.allclose(out[:, :6], expected[:, :6], atol=1e-5)  # the head sways as the session's idle
    assert np.allclose(out[:, 6], expected[:, 6], atol=1e-5)  # and blinks with it
