from __future__ import annotations

import math
from pathlib import Path

import pytest

from rag.confidence import Calibration, fit_calibration, sigmoid, term_coverage


def test_term_coverage_hand_computed() -> None:
    idf = {"vpn": 2.0, "drop": 1.0, "zebra": 3.0}.__getitem__
    # found: vpn (2) + drop (1) out of 2 + 1 + 3
    assert term_coverage(["vpn", "drop", "zebra", "vpn"], {"vpn", "drop", "other"}, idf) == pytest.approx(0.5)
    assert term_coverage([], {"x"}, idf) == 0.0


def test_sigmoid_is_stable_at_extremes() -> None:
    assert sigmoid(0) == 0.5
    assert sigmoid(1000) == 1.0
    assert sigmoid(-1000) == 0.0
    assert sigmoid(2.0) == pytest.approx(1 / (1 + math.exp(-2)))


def test_calibration_probability_and_roundtrip(tmp_path: Path) -> None:
    cal = Calibration(weights=(2.0, 4.0), bias=-3.0, threshold=0.6, fitted_on="t")
    # z = -3 + 2*0.5 + 4*0.5 = 0
    assert cal.probability([0.5, 0.5]) == pytest.approx(0.5)
    cal.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == cal


def test_fit_calibration_separates_classes() -> None:
    features = [[0.7, 0.9], [0.65, 1.0], [0.6, 0.8], [0.3, 0.2], [0.35, 0.1], [0.4, 0.3]]
    labels = [True, True, True, False, False, False]
    cal = fit_calibration(features, labels)
    assert all((cal.probability(f) >= 0.5) == y for f, y in zip(features, labels, strict=True))
    assert cal.weights[0] > 0 and cal.weights[1] > 0


def test_fit_calibration_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both"):
        fit_calibration([[0.5, 0.5]], [True])
