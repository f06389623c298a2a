"""The evaluation gate against hand-computed reports."""

from __future__ import annotations

from registry.gate import GateThresholds, evaluate_gate, reward_win_rate


def report(**overrides: float) -> dict:
    candidate = {"similarity": 0.60, "citation_correct": 0.50, "refusal_rate_unanswerable": 0.40}
    champion = {"similarity": 0.61, "citation_correct": 0.52, "refusal_rate_unanswerable": 0.45}
    evaluation = {"candidate": candidate, "champion": champion, "reward_win_rate": 0.6, "length_drift": 0.2}
    policy = {"kl_to_champion": 3.0}
    for key, value in overrides.items():
        if key in candidate:
            candidate[key] = value
        elif key == "kl":
            policy["kl_to_champion"] = value
        else:
            evaluation[key] = value
    return {"evaluation": evaluation, "policy": policy}


def test_a_candidate_within_every_limit_passes() -> None:
    result = evaluate_gate(report(), GateThresholds())
    assert result.passed
    checks = {c.name: c for c in result.checks}
    # similarity 0.61 -> 0.60: change -0.01 >= -0.02
    assert abs(checks["similarity"].value + 0.01) < 1e-9 and checks["similarity"].limit == -0.02
    # citations 0.52 -> 0.50: -0.02 >= -0.05; refusals 0.45 -> 0.40: -0.05 >= -0.10
    assert abs(checks["citations"].value + 0.02) < 1e-9 and abs(checks["refusals"].value + 0.05) < 1e-9
    assert set(checks) == {"similarity", "citations", "refusals", "reward_win_rate", "kl", "length_drift"}


def test_each_limit_fails_on_its_own() -> None:
    cases = {
        "similarity": report(similarity=0.58),  # -0.03 < -0.02
        "citations": report(citation_correct=0.40),  # -0.12
        "refusals": report(refusal_rate_unanswerable=0.30),  # -0.15
        "reward_win_rate": report(reward_win_rate=0.4),
        "kl": report(kl=20.0),
        "length_drift": report(length_drift=-0.6),  # |-0.6| > 0.5: shrinking counts too
    }
    for name, case in cases.items():
        result = evaluate_gate(case, GateThresholds())
        assert not result.passed, name
        assert [c.name for c in result.checks if not c.passed] == [name]


def test_no_evaluation_never_passes() -> None:
    result = evaluate_gate({"policy": {"kl_to_champion": 1.0}}, GateThresholds())
    assert not result.passed and result.checks[0].name == "evaluated"


def test_reward_win_rate_counts_ties_half_and_skips_missing() -> None:
    # (2>1 win) (1<3 loss) (2=2 tie) (None skipped): (1 + 0 + 0.5) / 3 = 0.5
    assert reward_win_rate([2.0, 1.0, 2.0, None], [1.0, 3.0, 2.0, 5.0]) == 0.5
    assert reward_win_rate([None], [1.0]) is None
