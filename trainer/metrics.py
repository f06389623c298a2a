"""Evaluation numbers as pure functions: pairwise accuracy, calibration, AUC, length drift."""

from __future__ import annotations

import math
from collections.abc import Sequence


def pairwise_accuracy(margins: Sequence[float]) -> float:
    """Share of pairs whose chosen answer scores higher (margin = r_chosen - r_rejected); ties count half."""
    if not margins:
        return float("nan")
    return sum(1.0 if m > 0 else 0.5 if m == 0 else 0.0 for m in margins) / len(margins)


def win_probabilities(margins: Sequence[float]) -> list[float]:
    """Bradley–Terry probability that the chosen answer wins: σ(margin)."""
    return [1.0 / (1.0 + math.exp(-m)) if m > -700 else 0.0 for m in margins]


def expected_calibration_error(margins: Sequence[float], bins: int = 10) -> float:
    """ECE of the model's pairwise predictions: the predicted winner's probability max(p, 1-p) against
    how often that prediction is right, averaged over equal-width confidence bins weighted by count."""
    if not margins:
        return float("nan")
    probs = win_probabilities(margins)
    groups: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for p in probs:
        confidence = max(p, 1.0 - p)  # in [0.5, 1]
        correct = 1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0
        index = min(bins - 1, int((confidence - 0.5) * 2 * bins))
        groups[index].append((confidence, correct))
    total = len(probs)
    ece = 0.0
    for group in groups:
        if group:
            mean_conf = sum(c for c, _ in group) / len(group)
            accuracy = sum(a for _, a in group) / len(group)
            ece += abs(accuracy - mean_conf) * len(group) / total
    return ece


def brier_score(margins: Sequence[float]) -> float:
    """Mean squared error of σ(margin) against the outcome (the chosen answer won: 1)."""
    if not margins:
        return float("nan")
    return sum((1.0 - p) ** 2 for p in win_probabilities(margins)) / len(margins)


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def length_drift(new_lengths: Sequence[int], old_lengths: Sequence[int]) -> float:
    """Relative change of the mean response length: mean(new) / mean(old) - 1."""
    if not new_lengths or not old_lengths:
        return float("nan")
    old = sum(old_lengths) / len(old_lengths)
    return (sum(new_lengths) / len(new_lengths)) / old - 1.0 if old else float("nan")
