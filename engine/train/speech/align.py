"""Forced alignment: a known phone sequence placed on frames by Viterbi over a model's log posteriors.

The sequence is the words' phones in order, with an optional silence before, between and after
words; every phone takes at least one frame.
"""
from __future__ import annotations

import numpy as np

from engine.audio.phones import PHONE_INDEX, SILENCE


def alignment_states(words: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """-> phone index per state [S], whether the state may be skipped [S] (the silences)."""
    phones, optional = [PHONE_INDEX[SILENCE]], [True]
    for word in words:
        for p in word:
            phones.append(PHONE_INDEX[p])
            optional.append(False)
        phones.append(PHONE_INDEX[SILENCE])
        optional.append(True)
    return np.array(phones), np.array(optional)


def align(log_probs: np.ndarray, words: list[list[str]]) -> np.ndarray | None:
    """log_probs [T, NUM_PHONES] -> phone index per frame [T], or None when T is too short."""
    phones, optional = alignment_states(words)
    num_states, num_frames = len(phones), len(log_probs)
    if num_frames < int((~optional).sum()):
        return None
    skip_allowed = np.zeros(num_states, bool)
    skip_allowed[2:] = optional[1:-1]  # state s may be entered from s-2 when s-1 is a silence
    score = np.full(num_states, -np.inf)
    score[0] = log_probs[0, phones[0]]
    score[1] = log_probs[0, phones[1]]
    back = np.zeros((num_frames, num_states), np.int8)  # 0 stay, 1 from s-1, 2 from s-2
    for t in range(1, num_frames):
        from_prev = np.concatenate([[-np.inf], score[:-1]])
        from_skip = np.where(skip_allowed, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        candidates = np.stack([score, from_prev, from_skip])
        back[t] = np.argmax(candidates, axis=0)
        score = candidates.max(axis=0) + log_probs[t, phones]
    state = num_states - 1 if score[-1] >= score[-2] else num_states - 2
    if not np.isfinite(score[state]):
        return None
    path = np.empty(num_frames, np.int64)
    for t in range(num_frames - 1, -1, -1):
        path[t] = state
        state -= back[t, state]
    return phones[path]
