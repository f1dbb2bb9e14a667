"""A mouth that reads as speech, judged on the rendered pixels (MediaPipe, as bench lipsync does):
the built-in avatar rests with its lips together though her photo smiles with parted lips, and a
sentence dense in bilabials, spoken through `python -m engine speak`, opens the mouth on the vowels
between the bilabials, closes it at them, and opens it as far as the voice is loud."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from audio_signals import espeak_in_a_fresh_process

from bench.lipsync import CLOSED, OPEN, Clip, Measured, correlation, envelope, events, lip_gaps
from engine.face.model import FaceModel
from engine.face.rest import closed_rest, inner_lip_gaps
from engine.pipeline.frames import to_uint8_tensor
from engine.pipeline.idle import IdleMotion
from engine.render.renderer import AvatarRenderer
from engine.types import FaceParams
from engine.video import read_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCE = "Maybe baby puppies bob by the pool."


def _frames(renderer: AvatarRenderer, params: FaceParams) -> np.ndarray:
    return to_uint8_tensor(renderer.composite(params).frames).numpy()


def test_the_builtin_avatar_rests_with_closed_lips(avatar):
    renderer = AvatarRenderer(avatar, 512)
    both = FaceParams(np.concatenate([avatar.reference_params.array, avatar.rest_params.array]))
    photo, rest = lip_gaps(_frames(renderer, both))
    assert photo > 0.04  # her photo smiles with parted lips and teeth
    assert rest < 0.1 * photo
    idle = IdleMotion(avatar.rest_params, avatar.motion, seed=1).params(np.arange(0, 300, 30))
    assert (lip_gaps(_frames(renderer, idle)) < 0.1 * photo).all()  # blinking, breathing, swaying: closed


def test_the_rest_is_computed_from_the_reference_and_stored(avatar):
    assert np.allclose(closed_rest(avatar.identity, avatar.reference_params).array, avatar.rest_params.array)
    gaps = inner_lip_gaps(FaceModel(avatar.identity), avatar.rest_params)[0]
    assert np.abs(gaps[3:6]).max() < 0.05  # the middle of the lips touches (model cm)
    touching = FaceParams(avatar.rest_params.array)
    assert np.allclose(closed_rest(avatar.identity, touching).array, touching.array, atol=0.02)  # stays


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, list]:
    return espeak_in_a_fresh_process(SENTENCE)


@pytest.mark.parametrize("mode", ["offline", "streaming"])
def test_speak_opens_between_bilabials_and_closes_at_them(speech, tmp_path, mode):
    out = tmp_path / "s.mp4"
    command = [sys.executable, "-m", "engine", "speak", "--avatar", "default", "--text", SENTENCE,
               "--out", str(out), "--mode", mode]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=280)  # a fresh process
    assert result.returncode == 0, result.stderr
    frames = np.stack(list(read_frames(out)))
    pcm, segments = speech
    clip = Clip("maybe baby", "synthetic", pcm, segments)
    measured = Measured(clip, mode, lip_gaps(frames), envelope(pcm, len(frames)), frames)
    found = events(measured)
    assert len(found["closures"]) >= 8 and len(found["nuclei"]) >= 4  # m, b, b, b, p, p, b, b, b, p
    # bench lipsync's target is 90% of each
    assert np.mean(np.array(found["closures"]) < CLOSED) >= 0.9, found["closures"]
    assert np.mean(np.array(found["nuclei"]) >= OPEN) >= 0.9, found["nuclei"]
    r, lag = correlation([measured])  # the lips follow the voice's loudness, its syllables included
    assert r >= 0.5 and abs(lag) <= 2, (r, lag)
