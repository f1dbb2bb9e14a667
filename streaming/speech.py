"""What turns speech into face parameters for one avatar: a feature extractor and an animator,
shared by the avatar's sessions (each runs its own feature stream and animator per utterance).

The real one is the avatar's trained FACIAL-GAN on its feature kind (`SpeechModel.load`); when a
trained model is missing, loading raises SpeechUnavailable with the reason, and the server serves
the avatar idle and refuses speech input with that reason: never a mouth made up without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np

from engine.audio.features import FeatureError, FeatureExtractor, extractor
from engine.avatar.bundle import Avatar
from engine.pipeline.animator import AnimatorError, Gan, StreamConfig, StreamingAnimator
from engine.pipeline.idle import IdleMotion
from engine.types import FaceParams


class SpeechUnavailable(RuntimeError):
    """An avatar whose speech models are missing: it can idle but not speak."""


class Animator(Protocol):
    """engine.pipeline.animator.StreamingAnimator's interface: features in, final frames out."""

    def push(self, features: np.ndarray) -> FaceParams:
        """features [n, F] -> the FaceParams of the frames that became final, in order from frame 0."""
        ...

    def flush(self) -> FaceParams:
        """The remaining frames at the end of the input."""
        ...


# (first session frame of the utterance, the idle motion) -> a new animator for the utterance
AnimatorFactory = Callable[[int, IdleMotion], Animator]


@dataclass(frozen=True)
class SpeechModel:
    """Speech -> face parameters for one avatar, shared by its sessions (each runs its own streams)."""

    extractor: FeatureExtractor
    new_animator: AnimatorFactory
    animator_latency_frames: int  # frames of features the animator waits for beyond a frame's own
    description: str = ""

    def __post_init__(self) -> None:
        if self.extractor.lookahead_frames is None:
            raise SpeechUnavailable(
                f"'{self.extractor.kind}' features need the whole input and cannot run live"
            )

    @property
    def wait_frames(self) -> int:
        """Frames of audio, from a frame's start, that must be in before its face is final."""
        lookahead = self.extractor.lookahead_frames
        assert lookahead is not None, "checked when made"
        return lookahead + self.animator_latency_frames + 1

    @classmethod
    def load(cls, avatar: Avatar, lookahead: int, stride: int) -> SpeechModel:
        """The avatar's feature extractor and FACIAL-GAN (its own or the general weights); raises
        SpeechUnavailable with one sentence when a trained model is missing or broken."""
        try:
            return cls.facial(
                extractor(avatar.feature_kind),
                Gan.for_avatar(avatar, avatar.feature_kind),
                avatar.rest_params,
                StreamConfig(lookahead, stride),
            )
        except (FeatureError, AnimatorError) as e:
            raise SpeechUnavailable(str(e)) from None

    @classmethod
    def facial(
        cls, features: FeatureExtractor, gan: Gan, rest: FaceParams, config: StreamConfig
    ) -> SpeechModel:
        """Features -> FACIAL-GAN's streaming animator around the avatar's rest face."""
        # Made now, in the avatar's setup, not in a session's first frames.
        features.prepare_streaming()
        gan.tail(config.update_frames)

        def new_animator(first_frame: int, idle: IdleMotion) -> Animator:
            return StreamingAnimator(
                gan, rest, config, cast(IdleMotion, _IdleFrom(idle, first_frame))
            )  # it calls params() only

        description = (
            f"'{features.kind}' features, FACIAL-GAN look-ahead {config.lookahead} stride {config.stride}"
        )
        return cls(features, new_animator, config.latency_frames, description)


class _IdleFrom:
    """The session's idle motion as an animator sees it: it numbers its frames from 0, the
    session from the clock's start (so idle sway in speech pauses continues the idle around it)."""

    def __init__(self, idle: IdleMotion, first_frame: int) -> None:
        self.idle, self.first_frame = idle, first_frame

    def params(self, frames: np.ndarray | int) -> FaceParams:
        return self.idle.params(np.asarray(frames) + self.first_frame)
