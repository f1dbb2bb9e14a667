"""A scripted FaceParams sequence that shows the whole face engine: every rig shape in turn,
blinks, head turns, nods, tilts and shifts, then a few syllables' worth of talking mouth."""
from __future__ import annotations

import numpy as np

from engine.types import BLINK_COL, EXP_START, EXPRESSION_NAMES, FPS, POSE_NAMES, FaceParams

SHAPE_SECONDS = 0.7
POSE_MOVES = {"yaw": 0.35, "pitch": 0.25, "roll": 0.2, "tx": 1.5, "ty": 1.0, "tz": 3.0}


def _bump(seconds: float) -> np.ndarray:
    """0 -> 1 -> 0, smooth, lasting `seconds`."""
    return np.sin(np.linspace(0, np.pi, round(seconds * FPS) | 1)) ** 2  # odd: the middle frame is the peak


def demo_sequence(rest: FaceParams) -> FaceParams:
    """Around the avatar's rest parameters: rig shapes, blinks, pose moves, talking; ~30 s."""
    rest_row = rest.array[0]
    segments: list[np.ndarray] = [np.tile(rest_row, (FPS // 2, 1))]

    def segment(column: int, curve: np.ndarray) -> None:
        rows = np.tile(rest_row, (len(curve), 1))
        rows[:, column] += curve
        segments.append(rows)

    for k in range(len(EXPRESSION_NAMES)):
        segment(EXP_START + k, _bump(SHAPE_SECONDS))
    for _ in range(3):
        segment(BLINK_COL, _bump(0.25))
        segments.append(np.tile(rest_row, (FPS // 3, 1)))
    for name, amount in POSE_MOVES.items():
        swing = np.sin(np.linspace(0, 2 * np.pi, 2 * FPS))  # one way, then the other
        segment(POSE_NAMES.index(name), amount * swing)
    # Talking: the jaw opening and closing at a syllable rate with lips rounding now and then.
    t = np.arange(4 * FPS) / FPS
    talk = np.tile(rest_row, (len(t), 1))
    talk[:, EXP_START + EXPRESSION_NAMES.index("jawOpen")] = 0.6 * np.sin(np.pi * 4 * t) ** 2
    talk[:, EXP_START + EXPRESSION_NAMES.index("mouthFunnel")] = 0.8 * (np.sin(np.pi * 0.75 * t) > 0.7)
    segments.append(talk)
    segments.append(np.tile(rest_row, (FPS // 2, 1)))
    return FaceParams(np.concatenate(segments))
