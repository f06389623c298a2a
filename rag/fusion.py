"""Combining the dense and the lexical ranking into one. Pure functions over row ids and scores."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None
) -> dict[int, float]:
    """score(d) = Σ_i w_i / (k + rank_i(d)), ranks starting at 1; a list that lacks d adds nothing."""
    weights = weights if weights is not None else [1.0] * len(rankings)
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, row in enumerate(ranking, start=1):
            fused[row] = fused.get(row, 0.0) + weight / (k + rank)
    return fused


def min_max(scores: Mapping[int, float]) -> dict[int, float]:
    """Scale scores to 0..1 within the candidate set (all equal -> all 1)."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return dict.fromkeys(scores, 1.0)
    return {row: (s - low) / (high - low) for row, s in scores.items()}


def weighted_fusion(
    dense: Mapping[int, float], lexical: Mapping[int, float], dense_weight: float = 0.5
) -> dict[int, float]:
    """α·minmax(dense) + (1-α)·minmax(lexical); a candidate missing from one list scores 0 there."""
    d, b = min_max(dense), min_max(lexical)
    return {
        row: dense_weight * d.get(row, 0.0) + (1.0 - dense_weight) * b.get(row, 0.0)
        for row in set(d) | set(b)
    }


def top(scores: Mapping[int, float], n: int) -> list[tuple[int, float]]:
    """The n best (row, score) pairs, ties broken by row id for determinism."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:n]
