from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from rag.confidence import (
    DEFAULT_CALIBRATION,
    Calibration,
    fit_calibration,
    sigmoid,
    term_coverage,
    threshold_for_false_refusals,
    without_terms,
)


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
    assert cal.probability({"coverage": 0.5, "uncovered": 0.5, "dense_top": 9.0}) == pytest.approx(0.5)
    cal.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == cal


def test_calibration_rejects_mismatched_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 weights for 1 features"):
        Calibration(weights=(1.0, 2.0), bias=0.0, features=("coverage",))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable calibration"):
        Calibration.load(bad)
    bad.write_text(json.dumps({"weights": [1.0], "bias": 0, "features": ["shoe_size"]}))
    with pytest.raises(ValueError, match="shoe_size"):
        Calibration.load(bad)
    # a file from before `features` was recorded was fitted on (dense_top, coverage)
    bad.write_text(json.dumps({"weights": [1.0, 2.0], "bias": 0.5}))
    assert Calibration.load(bad).features == ("dense_top", "coverage")


def test_threshold_for_false_refusals_hand_computed() -> None:
    probs = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.5, 0.95]
    # 10 answerable, 10% may be refused -> 1 refusal: threshold = 2nd smallest, only 0.1 is below it
    assert threshold_for_false_refusals(probs, 0.10) == 0.2
    # 25% -> floor(2.5) = 2 refusals -> 3rd smallest
    assert threshold_for_false_refusals(probs, 0.25) == 0.3
    assert threshold_for_false_refusals(probs, 0.0) == 0.1  # nothing below the smallest
    with pytest.raises(ValueError):
        threshold_for_false_refusals(probs, 1.0)
    with pytest.raises(ValueError):
        threshold_for_false_refusals([], 0.1)


def test_without_terms_drops_words_by_their_index_terms() -> None:
    def terms_of(word: str) -> list[str]:
        return [word.lower().rstrip("s")]

    assert without_terms("Can I bring my Dogs to Austin?", {"dog"}, terms_of) == "Can I bring my to Austin"
    assert without_terms("dogs", {"dog"}, terms_of) == ""
    assert without_terms("Wi-Fi password", {"password"}, terms_of) == "Wi-Fi"


def rows(coverage: list[float], uncovered: list[float]) -> list[dict[str, float]]:
    return [{"coverage": c, "uncovered": u} for c, u in zip(coverage, uncovered, strict=True)]


def test_fit_calibration_separates_classes_and_sets_threshold() -> None:
    features = rows([0.9, 1.0, 0.8, 0.7, 0.3, 0.2, 0.4], [0.0, 0.0, 0.05, 0.1, 0.4, 0.3, 0.35])
    labels = [True, True, True, True, False, False, False]
    cal = fit_calibration(features, labels, threshold=0.5)
    assert all((cal.probability(f) >= 0.5) == y for f, y in zip(features, labels, strict=True))
    assert cal.weights[0] > 0 > cal.weights[1]  # coverage helps, uncovered meaning hurts
    auto = fit_calibration(features, labels, max_false_refusals=0.0)
    # no answerable question may be refused: the threshold is the lowest answerable probability
    assert auto.threshold == pytest.approx(
        min(auto.probability(f) for f, y in zip(features, labels, strict=True) if y)
    )


def test_fit_calibration_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both"):
        fit_calibration(rows([0.5], [0.5]), [True])
    with pytest.raises(ValueError, match="labels"):
        fit_calibration(rows([0.5], [0.5]), [True, False])


def test_default_calibration_orders_the_signals() -> None:
    covered = DEFAULT_CALIBRATION.probability({"coverage": 1.0, "uncovered": 0.0})
    missing = DEFAULT_CALIBRATION.probability({"coverage": 0.3, "uncovered": 0.35})
    assert covered >= DEFAULT_CALIBRATION.threshold > missing
