"""trainer.metrics against numbers worked out by hand (the arithmetic is in the comments).

Margins are chosen so that σ(margin) is a round number: σ(ln k) = k / (k + 1), so σ(ln 4) = 0.8,
σ(-ln 4) = 0.2, σ(ln 9) = 0.9, σ(ln 1.5) = 0.6, σ(ln 3) = 0.75.
"""

from __future__ import annotations

import math

import pytest

from trainer.metrics import (
    brier_score,
    expected_calibration_error,
    length_drift,
    pairwise_accuracy,
    roc_auc,
    win_probabilities,
)

LN = math.log


def test_pairwise_accuracy_counts_ties_half() -> None:
    assert pairwise_accuracy([2.0, -1.0, 0.0, 0.5]) == pytest.approx(0.625)  # (1 + 0 + ½ + 1) / 4
    assert pairwise_accuracy([-3.0]) == 0.0
    assert math.isnan(pairwise_accuracy([]))


def test_win_probabilities_are_sigmoids_without_overflow() -> None:
    assert win_probabilities([LN(4), -LN(4), 0.0]) == pytest.approx([0.8, 0.2, 0.5])
    assert win_probabilities([-1000.0, 1000.0]) == [0.0, 1.0]  # exp(1000) would overflow


def test_expected_calibration_error_by_hand() -> None:
    # bins=4 over the confidence max(p, 1 - p) ∈ [0.5, 1]: [0.5, .625), [.625, .75), [.75, .875), [.875, 1]
    #   ln 4:   p .8, confidence .8, right  -> bin 2
    #   ln 4:   p .8, confidence .8, right  -> bin 2
    #   -ln 4:  p .2, confidence .8, wrong  -> bin 2
    #   ln 9:   p .9, confidence .9, right  -> bin 3
    #   ln 1.5: p .6, confidence .6, right  -> bin 0
    # bin 2: |2/3 - .8| · 3/5 = .08;  bin 3: |1 - .9| · 1/5 = .02;  bin 0: |1 - .6| · 1/5 = .08
    margins = [LN(4), LN(4), -LN(4), LN(9), LN(1.5)]
    assert expected_calibration_error(margins, bins=4) == pytest.approx(0.18)


def test_expected_calibration_error_edges() -> None:
    assert expected_calibration_error([LN(9)]) == pytest.approx(0.1)  # one pair: |1 - .9|
    assert expected_calibration_error([0.0]) == 0.0  # p = ½ is "half right" at confidence ½
    # confidence 1 falls in the last bin (not past it): accuracy ½ there against confidence 1
    assert expected_calibration_error([50.0, -50.0]) == pytest.approx(0.5)
    assert math.isnan(expected_calibration_error([]))


def test_brier_score_by_hand() -> None:
    # p = .5, .75, .25 -> (1 - p)² = .25, .0625, .5625 -> mean .875 / 3
    assert brier_score([0.0, LN(3), -LN(3)]) == pytest.approx(0.875 / 3)
    assert brier_score([1000.0]) == 0.0
    assert math.isnan(brier_score([]))


def test_roc_auc_by_hand() -> None:
    # positives {.9, .4}, negatives {.4, .1}: .9>.4 1, .9>.1 1, .4=.4 ½, .4>.1 1 -> 3.5 / 4
    assert roc_auc([0.9, 0.4, 0.4, 0.1], [True, True, False, False]) == pytest.approx(0.875)
    assert roc_auc([0.1, 0.9], [True, False]) == 0.0  # perfectly inverted
    assert math.isnan(roc_auc([0.3, 0.4], [True, True]))  # one class only
    with pytest.raises(ValueError):
        roc_auc([0.3, 0.4], [True])


def test_length_drift_by_hand() -> None:
    assert length_drift([10, 20], [30, 10]) == pytest.approx(-0.25)  # 15 / 20 - 1
    assert length_drift([30], [20, 20]) == pytest.approx(0.5)  # 30 / 20 - 1
    assert math.isnan(length_drift([3], [0, 0]))  # old mean 0: undefined
    assert math.isnan(length_drift([], [5]))
