"""The retrieval-or-generation hint on thumbs-down answers."""

from __future__ import annotations

from typing import Any

from ui.diagnosis import content_words, diagnose

PASSAGES = {
    "c1": "Parking permits cost 45 dollars per month and are issued by the front desk.",
    "c2": "Eight charging stations are on level P2.",
}
RETRIEVED = [(1, "c1"), (2, "c2")]


def hint(**kw: Any) -> Any:
    args: dict[str, Any] = dict(
        refused=False, retrieved=RETRIEVED, cited=["c1"], passage_text=PASSAGES, reasons=[], corrections=[]
    )
    return diagnose(**{**args, **kw})


def test_content_words_drop_stop_words_and_case() -> None:
    assert content_words("What is the Parking cost, per month? $45!") == {"parking", "cost", "month", "45"}


def test_correction_found_in_a_passage_blames_generation() -> None:
    found = hint(corrections=["Permits cost 45 dollars per month."])
    assert found.stage == "generation" and "ranked 1" in found.hint


def test_correction_missing_from_the_passages_blames_retrieval() -> None:
    found = hint(corrections=["Bikes go in the basement rack near door B."])
    assert found.stage == "retrieval" and "not retrieved" in found.hint


def test_refusals() -> None:
    assert hint(refused=True, cited=[]).stage == "retrieval"
    calibrated = hint(refused=True, cited=[], corrections=["Permits cost 45 dollars a month"])
    assert calibrated.stage == "retrieval" and "threshold" in calibrated.hint
    assert hint(retrieved=[], cited=[]).stage == "retrieval"


def test_without_a_correction_reasons_and_citations_hint() -> None:
    assert hint(reasons=["wrong_source"]).stage == "retrieval"
    assert hint(reasons=["outdated"]).stage == "documents"
    assert hint(cited=[]).stage == "generation"
    assert hint().stage == "unknown"
