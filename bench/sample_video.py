"""A talking-head video made here: the built-in avatar saying generated sentences (espeak-ng ->
FACIAL-GAN -> the direct compositor), with its sound. The avatar builder's tests and benchmark
take it as "a video of a person talking": its face, motion, blinks and speech are all real input
to the builder, and nothing has to be downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.types import SAMPLE_RATE

PAUSE_S = 0.4  # between sentences


def talking_speech(seconds: float, seed: int = 0, voice: str = "en-us") -> np.ndarray:
    """[S] float32 at SAMPLE_RATE: `seconds` of generated sentences with pauses between them."""
    from engine.audio.tts import text_to_speech
    from engine.train.speech.sentences import sentences

    pieces, total, count = [], 0, 0
    while total < seconds * SAMPLE_RATE:
        for text in sentences(8, seed + count):
            speech = text_to_speech(text, voice)
            pieces += [speech, np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)]
            total += len(speech) + int(PAUSE_S * SAMPLE_RATE)
        count += 8
    return np.concatenate(pieces)[: int(seconds * SAMPLE_RATE)]


def talking_video(
    out: str | os.PathLike, seconds: float, size: int = 256, seed: int = 0, voice: str = "en-us"
) -> Path:
    """Writes `seconds` of the default avatar talking at size x size, 30 fps, with AAC sound; its
    face parameters are
    `Speaker(load("default"), seed=seed).offline(talking_speech(seconds, seed, voice))`."""
    from engine.avatar.bundle import load
    from engine.pipeline.speak import Speaker, speak

    speak(
        Speaker(load("default"), seed=seed),
        talking_speech(seconds, seed, voice),
        str(out),
        "offline",
        size,
        renderer="composite",
    )
    return Path(out)
