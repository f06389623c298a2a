"""The typed refresh results read and write training.json's report as it always was."""

from __future__ import annotations

import json
import math
from typing import Any

from registry.reports import Check, Evaluation, GateVerdict, ModelSummary, RefreshReport

STORED: dict[str, Any] = {
    "policy": {"kl_to_champion": 3.5, "kl_to_base": 7.0, "reward_first": 0.1, "ppo_specific": [1, 2]},
    "timings_s": {"reward": 500.0, "ppo": 400.0},
    "evaluation": {
        "candidate": {"similarity": 0.49, "citation_correct": 0.75, "reward": None, "questions": 32.0},
        "champion": {"similarity": 0.34, "citation_correct": 0.75, "reward": 0.1, "questions": 32.0},
        "delta_similarity": 0.15,
        "reward_win_rate": 0.4,
        "reward_win_rate_basis": "logged",
        "reward_win_rate_prompts": 16,
        "reward_optimised": True,
        "checks_win_rate": 0.75,
        "answers": [{"id": "q1", "champion": "a", "candidate": "b"}],
        "a_key_from_a_newer_kbloop": {"kept": True},
    },
    "gate": {
        "passed": False,
        "checks": [
            {"name": "kl", "value": 3.5, "limit": 12.0, "passed": True, "detail": "KL", "ran": True},
            {
                "name": "similarity",
                "value": None,
                "limit": -0.02,
                "passed": False,
                "detail": "x",
                "ran": False,
            },
        ],
    },
    "extra_top_level": 1,
}


def test_a_stored_report_reads_typed_and_writes_back_what_it_held() -> None:
    report = RefreshReport.from_json(json.loads(json.dumps(STORED)))
    assert report.kl_to_champion == 3.5 and report.kl_to_base == 7.0 and report.refused is None
    evaluation = report.evaluation
    assert evaluation is not None and evaluation.candidate is not None and evaluation.champion is not None
    assert evaluation.candidate.similarity == 0.49 and evaluation.candidate.reward is None
    assert evaluation.champion.reward == 0.1
    assert evaluation.reward_win_rate_prompts == 16 and evaluation.reward_optimised
    assert evaluation.delta_reward is None  # not stored: None
    assert report.gate is not None and not report.gate.passed
    assert report.gate.failed == ("similarity",) and report.gate.not_run == ("similarity",)
    again = report.to_json()
    # every stored key comes back with its value; the named-but-absent ones come back as null
    for key, value in STORED["evaluation"].items():
        if key not in ("candidate", "champion"):
            assert again["evaluation"][key] == value, key
    assert again["evaluation"]["candidate"]["similarity"] == 0.49
    assert again["policy"] == STORED["policy"] and again["timings_s"] == STORED["timings_s"]
    assert again["extra_top_level"] == 1
    assert again["gate"]["checks"] == STORED["gate"]["checks"]
    assert RefreshReport.from_json(again) == report


def test_broken_or_missing_parts_read_as_none() -> None:
    empty = RefreshReport.from_json(None)
    assert empty.evaluation is None and empty.gate is None and empty.kl_to_champion is None
    odd = RefreshReport.from_json(
        {
            "policy": {"kl_to_champion": float("nan"), "refused": "KL over budget"},
            "evaluation": [],
            "gate": "?",
        }
    )
    assert odd.kl_to_champion is None and odd.refused == "KL over budget"
    assert odd.evaluation is None and odd.gate is None
    summary = ModelSummary.from_json({"similarity": "high", "length_tokens": True, "reward": math.inf})
    assert summary is not None and summary.similarity is None and summary.length_tokens is None
    assert summary.reward == math.inf
    assert Evaluation.from_json({}) is None
    missing = Evaluation.from_json({"golden_set": "missing"})
    assert missing is not None and missing.golden_missing and missing.candidate is None


def test_a_verdict_round_trips() -> None:
    verdict = GateVerdict(True, (Check("kl", 1.0, 12.0, True, "KL to the champion"),))
    assert GateVerdict.from_json(verdict.to_json()) == verdict
    assert "note" not in verdict.to_json()
    blind = GateVerdict(True, (Check("similarity", None, -0.02, True, "not run", ran=False),))
    assert blind.to_json()["not_run"] == ["similarity"] and "human win rate" in blind.to_json()["note"]
