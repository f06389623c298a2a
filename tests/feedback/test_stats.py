"""The statistics as pure functions, against hand-computed values."""

from __future__ import annotations

import pytest

from feedback.stats import (
    Z95,
    Rate,
    clustered_rate,
    pairwise_win_rates,
    position_bias,
    reason_histograms,
    thumbs_rates,
    wilson_interval,
)


def test_wilson_interval_of_8_out_of_10() -> None:
    # p = 0.8, n = 10, z² = 3.841459: scale = 1 + z²/n = 1.384146
    # center = (0.8 + z²/20) / scale = 0.992073 / 1.384146 = 0.716740
    # half   = z * sqrt(0.8 * 0.2 / 10 + z²/400) / scale = 1.959964 * 0.160011 / 1.384146 = 0.226578
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.716740 - 0.226578, abs=1e-6) == pytest.approx(0.490162, abs=1e-6)
    assert high == pytest.approx(0.943318, abs=1e-6)


def test_wilson_interval_at_the_edges() -> None:
    # s = 0: the interval is [0, z²/(n + z²)]; s = n: [n/(n + z²), 1]
    z2 = Z95 * Z95
    assert wilson_interval(0, 10) == (0.0, pytest.approx(z2 / (10 + z2)))  # (0, 0.27753)
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + z2)), 1.0)  # (0.72247, 1), exactly 1
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low, high = wilson_interval(50, 100)  # symmetric around one half
    assert low == pytest.approx(1 - high) and high == pytest.approx(0.596, abs=1e-3)
    lo1, hi1 = wilson_interval(8, 10)
    lo2, hi2 = wilson_interval(80, 100)  # more trials, narrower interval around the same rate
    assert lo1 < lo2 < 0.8 < hi2 < hi1
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_thumbs_rates_overall_and_per_day() -> None:
    counts = [
        ("m1", "2026-11-23", 6, 2),
        ("m1", "2026-11-24", 2, 0),
        ("m2", "2026-11-23", 1, 3),
        ("m1", "2026-11-23", 0, 0),  # rows for the same day add up
    ]
    m1, m2 = thumbs_rates(counts)
    assert (m1.model_version, m1.up, m1.down) == ("m1", 8, 2)
    assert m1.overall.rate == 0.8
    assert (m1.overall.low, m1.overall.high) == pytest.approx((0.490162, 0.943318), abs=1e-6)
    assert list(m1.by_day) == ["2026-11-23", "2026-11-24"]
    assert m1.by_day["2026-11-23"] == Rate.of(6, 8)
    assert m1.by_day["2026-11-24"].rate == 1.0
    assert (m2.model_version, m2.overall.rate) == ("m2", 0.25)
    assert thumbs_rates([]) == []


def test_pairwise_win_rates_count_ties_half_and_both_bad_apart() -> None:
    outcomes = [
        *[("m1", "m2", "A")] * 2,  # m1 on the left wins twice
        ("m2", "m1", "B"),  # m1 on the right wins
        ("m2", "m1", "A"),  # m2 wins
        *[("m1", "m2", "tie")] * 2,
        ("m2", "m1", "both_bad"),
        ("m1", "m1", "A"),  # one version against itself: not about versions
        ("m3", "m1", "B"),
    ]
    m1_m2, m1_m3 = pairwise_win_rates(outcomes)
    assert (m1_m2.model_a, m1_m2.model_b) == ("m1", "m2")
    assert (m1_m2.wins_a, m1_m2.wins_b, m1_m2.ties, m1_m2.both_bad) == (3, 1, 2, 1)
    # (3 wins + 2 ties / 2) of 6 decided = 4/6; Wilson(4, 6) by the same formula as above
    assert m1_m2.win_rate_a.rate == pytest.approx(4 / 6)
    assert (m1_m2.win_rate_a.low, m1_m2.win_rate_a.high) == pytest.approx((0.299993, 0.903229), abs=1e-6)
    assert (m1_m3.model_a, m1_m3.model_b, m1_m3.wins_a, m1_m3.wins_b) == ("m1", "m3", 1, 0)


def test_a_pair_with_only_both_bad_has_no_rate() -> None:
    (only,) = pairwise_win_rates([("m1", "m2", "both_bad")])
    assert (
        only.both_bad == 1
        and only.win_rate_a.rate is None
        and (only.win_rate_a.low, only.win_rate_a.high) == (0, 1)
    )


def test_position_bias() -> None:
    # 30 of 40 decisive choices went left: Wilson(30, 40) = [0.598, 0.858], 50% is outside
    biased = position_bias(["A"] * 30 + ["B"] * 10 + ["tie"] * 5 + ["both_bad"] * 3)
    assert (biased.decisive, biased.left_wins, biased.left_rate.rate) == (40, 30, 0.75)
    assert biased.left_rate.low == pytest.approx(0.598, abs=1e-3) and biased.biased is True
    fair = position_bias(["A"] * 22 + ["B"] * 18)
    assert fair.biased is False and fair.left_rate.low < 0.5 < fair.left_rate.high
    assert position_bias(["tie"]).biased is False and position_bias([]).decisive == 0
    with pytest.raises(ValueError):
        position_bias(["left"])


def test_reason_histograms() -> None:
    m1, m2 = reason_histograms(
        [("m1", ["incorrect", "outdated"]), ("m1", []), ("m1", ["incorrect"]), ("m2", ["unsafe"])]
    )
    assert (m1.model_version, m1.down_votes, m1.without_reason) == ("m1", 3, 1)
    assert m1.counts == {
        "incorrect": 2,
        "outdated": 1,
        "incomplete": 0,
        "not_helpful": 0,
        "wrong_source": 0,
        "too_long": 0,
        "unsafe": 0,
    }
    assert list(m1.counts) == list(m2.counts)  # every reason, in one fixed order
    assert (m2.down_votes, m2.counts["unsafe"]) == (1, 1)


def test_rate_of_either_side_of_a_pair() -> None:
    # m2 wins 3, m1 wins 1, one tie: m1 has 1.5 of 5 (30%), m2 3.5 of 5 (70%)
    outcomes = [
        ("m1", "m2", "B"),
        ("m2", "m1", "A"),
        ("m1", "m2", "B"),
        ("m1", "m2", "A"),
        ("m1", "m2", "tie"),
    ]
    (pair,) = pairwise_win_rates(outcomes)
    a, b = pair.rate_of("m1"), pair.rate_of("m2")
    assert a == pair.win_rate_a and a.rate == pytest.approx(0.3)
    direct = Rate.of(3.5, 5)  # m2's rate computed as if it were model_a
    assert b.successes == 3.5 and b.trials == 5 and b.rate == pytest.approx(0.7)
    assert (b.low, b.high) == (pytest.approx(direct.low), pytest.approx(direct.high))
    with pytest.raises(ValueError, match="m3"):
        pair.rate_of("m3")


def test_clustered_rate_counts_questions_not_judgements() -> None:
    # three questions judged 3, 1 and 2 times (an empty one is skipped): means 2/3, 1/2, 0 -> 7/6 of 3
    rate = clustered_rate([[1.0, 1.0, 0.0], [0.5], [0.0, 0.0], []])
    assert (rate.successes, rate.trials) == (pytest.approx(7 / 6), 3)
    assert rate.rate == pytest.approx(7 / 18)  # 0.3889
    # Wilson at p = 7/18, n = 3: center 1.02913 / 2.28049 = 0.45128, half-width 0.84512 / 2.28049 = 0.37059
    assert (rate.low, rate.high) == (pytest.approx(0.08069, abs=1e-4), pytest.approx(0.82187, abs=1e-4))
    # the six judgements as if independent (2.5 of 6) would give a narrower, overconfident interval
    naive = Rate.of(2.5, 6)
    assert naive.high - naive.low < rate.high - rate.low
    # one judgement per question is plain Wilson; all wins stay exactly 1
    assert clustered_rate([[1.0], [0.0], [0.5]]) == Rate.of(1.5, 3)
    assert clustered_rate([[1.0, 1.0]] * 3).high == 1.0
    assert clustered_rate([]).rate is None
