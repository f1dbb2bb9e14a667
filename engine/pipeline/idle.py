"""The avatar alive with nothing to say: natural blinks, breathing, small head motion, mouth at rest.

Motion is a pure function of the frame index (for a given seed), so any frame can be drawn on
its own, in any order, by any number of sessions sharing one renderer.
"""
from __future__ import annotations

import numpy as np

from engine.avatar.bundle import Avatar, MotionStats, load
from engine.pipeline.frames import FrameSource
from engine.types import BLINK_COL, FPS, FaceParams

HEAD_WAVES = 4  # sinusoids summed per pose axis
HEAD_PERIODS = (3.0, 12.0)  # seconds: slow sway, no jitter
MIN_BLINK_GAP = 1.2  # seconds between blinks, at least
SCHEDULE_BLINKS = 4096  # blinks planned ahead; the schedule repeats after that (hours)
BREATHS_PER_MINUTE = (12.0, 18.0)  # an adult at rest; each avatar's own rate is drawn from this range
BREATH_RISE = 0.05  # model units (~cm): the head rises this much on an inhale
BREATH_PITCH = -0.004  # radians: and the chin lifts a little


def breath_curve(phase: np.ndarray) -> np.ndarray:
    """Chest height over one breath, phase 0..1 -> 0..1: a 40% inhale and a slower exhale, smooth."""
    phase = phase % 1.0
    rising = np.sin(np.clip(phase / 0.4, 0, 1) * np.pi / 2) ** 2
    falling = np.cos(np.clip((phase - 0.4) / 0.6, 0, 1) * np.pi / 2) ** 2
    return np.where(phase < 0.4, rising, falling)


def blink_curve(phase: np.ndarray) -> np.ndarray:
    """Eyelid closure over one blink, phase 0..1: a quick close and a slower reopening."""
    closing = np.clip(phase / 0.35, 0, 1)
    opening = np.clip((1 - phase) / 0.65, 0, 1)
    return np.where(phase < 0.35, np.sin(closing * np.pi / 2), np.sin(opening * np.pi / 2) ** 1.5) * (
        (phase >= 0) & (phase <= 1)
    )


class IdleMotion:
    """Idle FaceParams around a rest pose, from the person's motion statistics."""

    def __init__(self, rest: FaceParams, motion: MotionStats, seed: int | None = None):
        rng = np.random.default_rng(seed)
        self.rest = rest.array[0]
        self.blink_seconds = motion.blink_seconds
        # Each axis: waves with random periods and phases, scaled so the sum has the person's spread.
        self.periods = rng.uniform(*HEAD_PERIODS, size=(HEAD_WAVES, 6))
        self.phases = rng.uniform(0, 2 * np.pi, size=(HEAD_WAVES, 6))
        self.amplitude = np.asarray(motion.pose_std) * np.sqrt(2.0 / HEAD_WAVES)
        mean_gap = 60.0 / motion.blinks_per_minute
        gaps = MIN_BLINK_GAP + rng.exponential(mean_gap - MIN_BLINK_GAP, SCHEDULE_BLINKS)
        self.blink_starts = np.cumsum(gaps) - gaps[0] / 2
        self.schedule_length = self.blink_starts[-1] + gaps[0]
        self.breath_seconds = 60.0 / rng.uniform(*BREATHS_PER_MINUTE)
        self.breath_phase = rng.uniform()

    def params(self, frames: np.ndarray | int) -> FaceParams:
        """FaceParams for video frame indices [N]."""
        t = np.atleast_1d(np.asarray(frames, np.float64)) / FPS
        out = np.tile(self.rest, (len(t), 1))
        waves = np.sin(2 * np.pi * t[:, None, None] / self.periods + self.phases)  # [N, W, 6]
        out[:, :6] += (waves * self.amplitude).sum(1)
        breath = breath_curve(t / self.breath_seconds + self.breath_phase)
        out[:, 0] += BREATH_PITCH * breath
        out[:, 4] -= BREATH_RISE * breath  # y points down: rising is negative
        local = t % self.schedule_length
        last = np.searchsorted(self.blink_starts, local, side="right") - 1
        since = local - np.where(last >= 0, self.blink_starts[np.maximum(last, 0)], -np.inf)
        out[:, BLINK_COL] = blink_curve(since / self.blink_seconds)
        return FaceParams(out)


class IdleAvatar:
    """A frame source for the live server: frame(index) -> [size, size, 3] uint8 of the idle avatar,
    through R2V when the avatar has lite weights (renderer "auto"), else the direct compositor.

    frame(index) stays a pure function of the index, safe to call from several threads in any
    order: idle motion is known for every frame, so each call hands R2V the whole window of
    frames around `index` its input stack needs (engine.pipeline.frames.FrameSource.windows);
    faces already rendered for a neighbouring index come from the source's cache."""

    def __init__(
        self,
        avatar: str | Avatar = "default",
        size: int = 256,
        device: str = "cpu",
        seed: int | None = None,
        renderer: str = "auto",
        backend: str = "eager",
    ):
        avatar = load(avatar) if not isinstance(avatar, Avatar) else avatar
        self.source = FrameSource(avatar, renderer=renderer, backend=backend, size=size, device=device)
        self.size = self.source.size
        self.motion = IdleMotion(avatar.rest_params, avatar.motion, seed)

    def frame(self, index: int) -> np.ndarray:
        window = index + np.arange(-self.source.past, self.source.future + 1)
        return self.source.windows(self.motion.params(window))[0]
