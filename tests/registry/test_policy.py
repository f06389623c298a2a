"""Automatic promotion and rollback decisions on hand-made statistics."""

from __future__ import annotations

from feedback.stats import ModelThumbs, Rate, pairwise_win_rates
from registry.policy import promotion_decision, rollback_decision


def outcomes(canary_wins: int, champion_wins: int, ties: int = 0) -> list[tuple[str, str, str]]:
    # the canary v0002 on the left half the time, so positions do not matter
    rows = []
    for i in range(canary_wins):
        rows.append(("v0002", "v0001", "A") if i % 2 else ("v0001", "v0002", "B"))
    for i in range(champion_wins):
        rows.append(("v0001", "v0002", "A") if i % 2 else ("v0002", "v0001", "B"))
    rows += [("v0001", "v0002", "tie")] * ties
    return rows


def test_promotes_only_when_the_ci_lower_bound_clears_half() -> None:
    # 30 wins of 40: rate 0.75, Wilson 95% low = 0.598 > 0.5
    strong = pairwise_win_rates(outcomes(30, 10))
    decision = promotion_decision(strong, "v0001", "v0002", gate_passed=True, min_comparisons=20)
    assert decision.act and "30-10" in decision.reason
    # the same rate on 8 votes: too few
    assert not promotion_decision(pairwise_win_rates(outcomes(6, 2)), "v0001", "v0002", True, 20).act
    # 22 of 40: rate 0.55, low 0.398: not enough
    weak = promotion_decision(pairwise_win_rates(outcomes(22, 18)), "v0001", "v0002", True, 20)
    assert not weak.act and "not above 0.50" in weak.reason
    # a failed gate blocks even a clear winner
    assert not promotion_decision(strong, "v0001", "v0002", gate_passed=False, min_comparisons=20).act
    assert not promotion_decision([], "v0001", "v0002", True, 20).act


def thumbs(version: str, up: int, down: int) -> ModelThumbs:
    return ModelThumbs(version, up, down, Rate.of(up, up + down), {})


def test_rolls_back_when_thumbs_down_rises_by_more_than_the_margin() -> None:
    stats = [thumbs("v0001", 80, 20), thumbs("v0002", 60, 40)]  # 20% -> 40% down
    decision = rollback_decision(stats, "v0002", "v0001", margin=0.1, min_votes=50)
    assert decision.act and "40%" in decision.reason
    assert not rollback_decision(stats, "v0002", "v0001", margin=0.25, min_votes=50).act  # 0.4 <= 0.2 + 0.25
    assert not rollback_decision(stats, "v0002", "v0001", margin=0.1, min_votes=200).act  # too few votes
