"""Scores for phone posteriors: phone error rate, lip-shape-group (viseme) confusion and its summary."""
from __future__ import annotations

import numpy as np

from engine.audio.phones import PHONE_INDEX, SILENCE, VISEME_OF_PHONE, VISEMES

BILABIAL = VISEMES.index("bilabial")


def decode(phone_per_frame: np.ndarray, min_run: int = 1) -> list[int]:
    """Best-path phone string: runs of the same argmax (at least `min_run` frames), silence dropped."""
    out: list[int] = []
    start = 0
    for i in range(1, len(phone_per_frame) + 1):
        if i == len(phone_per_frame) or phone_per_frame[i] != phone_per_frame[start]:
            p = int(phone_per_frame[start])
            if i - start >= min_run and p != PHONE_INDEX[SILENCE] and (not out or out[-1] != p):
                out.append(p)
            start = i
    return out


def edit_distance(a: list[int], b: list[int]) -> int:
    row = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        prev, row = row, np.empty_like(row)
        row[0] = i
        for j, y in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (x != y))
    return int(row[-1])


def viseme_confusion(reference_phones: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """reference phone per frame [N], phone probabilities [N, NUM_PHONES] -> counts [V, V]
    (rows: reference group, columns: predicted group = the group with the most probability)."""
    group_probs = np.zeros((len(probabilities), len(VISEMES)))
    np.add.at(group_probs.T, VISEME_OF_PHONE, probabilities.T)
    predicted = group_probs.argmax(axis=1)
    confusion = np.zeros((len(VISEMES), len(VISEMES)), np.int64)
    np.add.at(confusion, (VISEME_OF_PHONE[reference_phones], predicted), 1)
    return confusion


def summary(confusion: np.ndarray, phone_errors: int, reference_phones: int) -> dict:
    """Phone error rate, viseme frame accuracy, bilabial recall and precision, majority baseline."""
    total = confusion.sum()
    return {
        "phone_error_rate": phone_errors / max(reference_phones, 1),
        "viseme_accuracy": float(np.trace(confusion) / max(total, 1)),
        "majority_baseline": float(confusion.sum(axis=1).max() / max(total, 1)),
        "bilabial_recall": float(confusion[BILABIAL, BILABIAL] / max(confusion[BILABIAL].sum(), 1)),
        "bilabial_precision": float(confusion[BILABIAL, BILABIAL] / max(confusion[:, BILABIAL].sum(), 1)),
        "frames": int(total),
        "reference_phones": reference_phones,
    }
