"""The shipped general FACIAL-GAN with the built-in features, end to end as a user runs it:
`python -m engine speak --text "Hello, my name is Ava, and I love bubbles"` makes a video in which
the lips close on every p/b/m and the mouth opens on the vowels, in both modes (the mouth at rest in
silence: tests/test_browser.py and `python -m bench quality`). The video is measured as a viewer
would (engine.render.mouth_meter); espeak-ng's phoneme events say where the bilabials are."""
from __future__ import annotations

import subprocess
import sys

import av
import numpy as np
import pytest
from audio_signals import espeak_in_a_fresh_process

from engine.render.mouth_meter import MouthMeter
from engine.types import FPS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCE = "Hello, my name is Ava, and I love bubbles."
CLOSED = 0.1  # openness (0 rest, 1 jaw half open): her lips rest together, so closed is about 0


@pytest.fixture(scope="module")
def bilabials() -> list[int]:
    """Centre frames of the sentence's p/b/m."""
    _, segments = espeak_in_a_fresh_process(SENTENCE)
    centres = [round((s + e) / 2 * FPS) for p, s, e in segments if p in ("M", "B", "P")]
    assert len(centres) == 4  # my, name, bubbles (b, b)
    return centres


@pytest.mark.parametrize("mode", ["offline", "streaming"])
def test_speak_closes_the_lips_on_bilabials_and_opens_them_on_vowels(bilabials, avatar, tmp_path, mode):
    out = tmp_path / "ava.mp4"
    command = [
        sys.executable,
        "-m",
        "engine",
        "speak",
        "--avatar",
        "default",
        "--text",
        SENTENCE,
        "--out",
        str(out),
        "--mode",
        mode,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=280
    )  # a fresh process, as a user's
    assert result.returncode == 0, result.stderr
    with av.open(str(out)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    openness = MouthMeter(avatar, frames.shape[1])(frames)
    assert np.isfinite(openness).all()
    nearest = np.array([openness[max(0, c - 1) : c + 2].min() for c in bilabials])
    assert (nearest <= CLOSED).sum() >= 3, nearest  # bench lipsync's target is 90%; it reaches 87-92%
    assert openness[bilabials[0] : bilabials[-1]].max() > 0.6  # about jawOpen 0.3 on the vowels
