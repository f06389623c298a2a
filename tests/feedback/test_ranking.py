"""Bradley–Terry: the MM step and the fixed point by hand, the bootstrap seeded and sensible."""

from __future__ import annotations

import pytest

from feedback.ranking import bradley_terry, fit, mm_step, strongly_connected

# wins[i][j]: how often i beat j. a-b: 2-1, a-c: 4-1, b-c: 2-1. These are exactly the expected
# results under strengths (4, 2, 1): P(a beats b) = 4/6 of 3 games = 2, P(a beats c) = 4/5 of 5 = 4,
# P(b beats c) = 2/3 of 3 = 2. So (4, 2, 1) solves the likelihood equations W_i = sum_j N_ij p_i/(p_i+p_j):
#   a: 6 = 3·4/6 + 5·4/5 = 2 + 4;  b: 3 = 3·2/6 + 3·2/3 = 1 + 2;  c: 2 = 5·1/5 + 3·1/3 = 1 + 1.
WINS = [[0, 2, 4], [1, 0, 2], [1, 1, 0]]
OUTCOMES = [
    *[("a", "b", "A")] * 2,
    ("a", "b", "B"),
    *[("c", "a", "B")] * 4,  # a on the right wins
    ("c", "a", "A"),
    *[("b", "c", "A")] * 2,
    ("b", "c", "B"),
]


def test_one_mm_step_by_hand() -> None:
    # from p = (1, 1, 1): p_i <- W_i / sum_j N_ij / (p_i + p_j)
    #   a: 6 / (3/2 + 5/2) = 1.5;  b: 3 / (3/2 + 3/2) = 1;  c: 2 / (5/2 + 3/2) = 0.5
    assert mm_step(WINS, [1, 1, 1]) == [1.5, 1.0, 0.5]
    # at the fixed point a step changes nothing
    assert mm_step(WINS, [4, 2, 1]) == pytest.approx([4, 2, 1])


def test_fit_finds_the_fixed_point_with_geometric_mean_one() -> None:
    # (4, 2, 1) / cbrt(4·2·1) = (2, 1, 0.5)
    assert fit(WINS) == pytest.approx([2.0, 1.0, 0.5], rel=1e-8)


def test_no_finite_strengths_without_a_prior_when_a_version_never_lost() -> None:
    never_lost = [[0, 3], [0, 0]]
    assert not strongly_connected(never_lost) and strongly_connected(WINS)
    with pytest.raises(ValueError, match="prior > 0"):
        fit(never_lost)
    # one virtual tie: a has 3.5 wins and b 0.5 of 4 games, so p_a / p_b = 7 -> (sqrt 7, 1/sqrt 7)
    assert fit(never_lost, prior=1) == pytest.approx([7**0.5, 7**-0.5], rel=1e-8)
    with pytest.raises(ValueError, match="zero diagonal"):
        fit([[1, 0], [0, 0]])


def test_ranking_from_outcomes_matches_the_hand_fit() -> None:
    ranking = bradley_terry(OUTCOMES, resamples=0, prior=0)
    assert [(r.model_version, r.rank, r.comparisons) for r in ranking] == [
        ("a", 1, 8),
        ("b", 2, 6),
        ("c", 3, 8),
    ]
    assert [r.strength for r in ranking] == pytest.approx([2.0, 1.0, 0.5], rel=1e-8)
    assert all(r.low == r.high == r.strength for r in ranking)  # no bootstrap, no interval


def test_ties_count_half_and_both_bad_and_self_comparisons_are_left_out() -> None:
    outcomes = [("x", "y", "A"), ("x", "y", "B"), ("x", "y", "tie"), ("y", "x", "tie")]
    noise = [("x", "y", "both_bad")] * 5 + [("x", "x", "A")] * 5
    for data in (outcomes, outcomes + noise):
        ranking = bradley_terry(data, resamples=0, prior=0)
        assert [r.strength for r in ranking] == pytest.approx([1.0, 1.0])
        assert [r.comparisons for r in ranking] == [4, 4]
    # x: 1 win + 2 ties = 2 of 3 points against y's 1: odds 2 -> (sqrt 2, 1/sqrt 2)
    ranking = bradley_terry([("x", "y", "A"), ("x", "y", "tie"), ("y", "x", "tie")], resamples=0, prior=0)
    assert [r.strength for r in ranking] == pytest.approx([2**0.5, 2**-0.5], rel=1e-8)
    assert bradley_terry([("x", "x", "A"), ("x", "y", "both_bad")]) == []


def test_the_prior_shrinks_toward_equal() -> None:
    plain = bradley_terry(OUTCOMES, resamples=0, prior=0)
    shrunk = bradley_terry(OUTCOMES, resamples=0, prior=2)
    assert [r.model_version for r in shrunk] == ["a", "b", "c"]
    assert 1 < shrunk[0].strength < plain[0].strength and plain[2].strength < shrunk[2].strength < 1


def test_bootstrap_intervals_are_seeded_contain_the_estimate_and_shrink_with_data() -> None:
    ranking = bradley_terry(OUTCOMES, resamples=500, seed=7)
    assert all(r.low < r.strength < r.high for r in ranking)
    assert bradley_terry(OUTCOMES, resamples=500, seed=7) == ranking  # deterministic
    assert bradley_terry(OUTCOMES, resamples=500, seed=8) != ranking  # and the seed matters
    bigger = bradley_terry(OUTCOMES * 20, resamples=500, seed=7)
    for small, large in zip(ranking, bigger, strict=True):
        assert large.low < large.strength < large.high
        assert large.high - large.low < (small.high - small.low) / 2
    # with 20x the data the prior barely matters: close to the maximum-likelihood (2, 1, 0.5)
    assert [r.strength for r in bigger] == pytest.approx([2.0, 1.0, 0.5], rel=0.05)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="prior > 0"):
        bradley_terry(OUTCOMES, resamples=10, prior=0)
    with pytest.raises(ValueError, match="resamples"):
        bradley_terry(OUTCOMES, resamples=-1)
    with pytest.raises(ValueError, match="confidence"):
        bradley_terry(OUTCOMES, confidence=1.5)


def test_version_names_are_only_names() -> None:
    # a version called "tie" (or "A") is a version like any other
    outcomes = [("tie", "A", "A"), ("tie", "A", "A"), ("A", "tie", "A")]
    ranking = bradley_terry(outcomes, resamples=0, prior=0)
    assert [(r.model_version, r.comparisons) for r in ranking] == [("tie", 3), ("A", 3)]
    assert ranking[0].strength / ranking[1].strength == pytest.approx(2.0)  # 2 wins to 1
