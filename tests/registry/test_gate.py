"""The evaluation gate against hand-computed reports."""

from __future__ import annotations

from typing import Any

from registry.gate import GateThresholds, evaluate_gate, pooled_reward_win_rate, reward_win_rate
from registry.reports import GateVerdict, RefreshReport


def gate(stored: dict[str, Any], thresholds: GateThresholds) -> GateVerdict:
    """The gate on a report as training.json stores it."""
    return evaluate_gate(RefreshReport.from_json(stored), thresholds)


def report(**overrides: float) -> dict:
    candidate = {"similarity": 0.60, "citation_correct": 0.50, "refusal_rate_unanswerable": 0.40}
    champion = {"similarity": 0.61, "citation_correct": 0.52, "refusal_rate_unanswerable": 0.45}
    evaluation = {
        "candidate": candidate,
        "champion": champion,
        "reward_win_rate": 0.6,
        "checks_win_rate": 0.55,
        "length_drift": 0.2,
    }
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
    result = gate(report(), GateThresholds())
    assert result.passed
    checks = {c.name: c for c in result.checks}
    # similarity 0.61 -> 0.60: change -0.01 >= -0.02
    assert abs(checks["similarity"].value + 0.01) < 1e-9 and checks["similarity"].limit == -0.02
    # citations 0.52 -> 0.50: -0.02 >= -0.05; refusals 0.45 -> 0.40: -0.05 >= -0.10
    assert abs(checks["citations"].value + 0.02) < 1e-9 and abs(checks["refusals"].value + 0.05) < 1e-9
    assert set(checks) == {
        "similarity", "citations", "refusals", "reward_win_rate", "checks_win_rate", "kl", "length_drift"
    }  # fmt: skip


def test_each_limit_fails_on_its_own() -> None:
    cases = {
        "similarity": report(similarity=0.58),  # -0.03 < -0.02
        "citations": report(citation_correct=0.40),  # -0.12
        "refusals": report(refusal_rate_unanswerable=0.30),  # -0.15
        "reward_win_rate": report(reward_win_rate=0.4),
        "checks_win_rate": report(checks_win_rate=0.45),
        "kl": report(kl=20.0),
        "length_drift": report(length_drift=-0.6),  # |-0.6| > 0.5: shrinking counts too
    }
    for name, case in cases.items():
        result = gate(case, GateThresholds())
        assert not result.passed, name
        assert [c.name for c in result.checks if not c.passed] == [name]


def test_no_evaluation_never_passes() -> None:
    result = gate({"policy": {"kl_to_champion": 1.0}}, GateThresholds())
    assert not result.passed and result.checks[0].name == "evaluated"


def test_reward_win_rate_counts_ties_half_and_skips_missing() -> None:
    # (2>1 win) (1<3 loss) (2=2 tie) (None skipped): (1 + 0 + 0.5) / 3 = 0.5
    assert reward_win_rate([2.0, 1.0, 2.0, None], [1.0, 3.0, 2.0, 5.0]) == 0.5
    assert reward_win_rate([None], [1.0]) is None


def test_pooled_reward_win_rate_pools_golden_prompts_when_few_are_logged() -> None:
    golden = ([2.0, 1.0, 1.0, 3.0], [1.0, 2.0, 1.0, 0.0])  # win, loss, tie, win: 2.5 of 4
    one = ([5.0], [1.0])  # one logged prompt, a win: alone it would read 100%
    assert pooled_reward_win_rate(golden, one, min_logged=3) == (3.5 / 5, "golden+logged")
    three = ([5.0, 0.0, 2.0], [1.0, 1.0, 1.0])  # win, loss, win
    assert pooled_reward_win_rate(golden, three, min_logged=3) == (2 / 3, "logged")
    assert pooled_reward_win_rate(golden, ([], []), min_logged=3) == (2.5 / 4, "golden")
    assert pooled_reward_win_rate(([None], [1.0]), ([], []), min_logged=3) == (None, "golden")


def test_gate_names_what_the_reward_win_rate_was_measured_on() -> None:
    report = {
        "evaluation": {
            "candidate": {"similarity": 0.5},
            "champion": {"similarity": 0.5},
            "reward_win_rate": 0.7,
            "reward_win_rate_basis": "golden+logged",
            "reward_win_rate_prompts": 2,
        }
    }
    check = {c.name: c for c in gate(report, GateThresholds()).checks}["reward_win_rate"]
    assert check.passed and "golden+logged prompts, 2 logged" in check.detail


def no_golden(**evaluation: object) -> dict:
    """A refresh report of a deployment without a golden set (trainer.comparison.compare_candidate)."""
    return {
        "evaluation": {"golden_set": "missing", "golden_path": "var/golden.jsonl", **evaluation},
        "policy": {"kl_to_champion": 3.0},
    }


def test_without_a_golden_set_the_gate_names_the_checks_it_could_not_run() -> None:
    result = gate(
        no_golden(reward_win_rate=0.7, reward_win_rate_basis="logged", length_drift=0.1), GateThresholds()
    )
    assert result.passed  # what could be measured passed; promotion then rests on live comparisons
    assert result.not_run == ("similarity", "citations", "refusals")
    checks = {c.name: c for c in result.checks}
    assert all(
        checks[n].detail == "not run: no golden set" and checks[n].value is None for n in result.not_run
    )
    assert [c.name for c in result.checks if c.ran] == ["reward_win_rate", "kl", "length_drift"]
    shown = result.to_json()
    assert shown["not_run"] == ["similarity", "citations", "refusals"]
    assert "human win rate" in shown["note"] and "no golden set" in shown["note"]
    assert "not_run" not in gate(report(), GateThresholds()).to_json()  # a golden set: all ran

    # the checks that run still decide
    assert not gate(no_golden(reward_win_rate=0.3), GateThresholds()).passed
    kl = gate({**no_golden(reward_win_rate=0.7), "policy": {"kl_to_champion": 20.0}}, GateThresholds())
    assert [c.name for c in kl.checks if not c.passed] == ["kl"]
    # and with nothing offline to judge the answers (no golden set, no held-out logged prompts) it fails
    blind = gate(no_golden(), GateThresholds())
    assert not blind.passed
    assert [(c.name, c.detail) for c in blind.checks if not c.passed] == [
        ("reward_win_rate", "not measured: no golden set and no held-out logged prompts")
    ]


def test_the_drift_budget_bounds_the_kl_to_the_base_model() -> None:
    within = report()
    within["policy"]["kl_to_base"] = 20.0  # each refresh small, the sum of them near the budget
    checks = {c.name: c for c in gate(within, GateThresholds()).checks}
    assert checks["drift"].passed and checks["drift"].value == 20.0 and checks["drift"].limit == 24.0
    beyond = report()
    beyond["policy"]["kl_to_base"] = 30.0  # the champion's KL (3.0) is fine; the drift from base is not
    result = gate(beyond, GateThresholds())
    assert not result.passed and [c.name for c in result.checks if not c.passed] == ["drift"]
    assert gate(beyond, GateThresholds(max_drift=40.0)).passed


def test_a_ppo_candidate_is_not_gated_by_the_reward_model_it_was_optimised_against() -> None:
    # PPO raised its own reward model's verdict to 0.9 while the answer checks prefer the champion
    hacked = gate(report(reward_win_rate=0.9, checks_win_rate=0.3, reward_optimised=True), GateThresholds())
    assert [c.name for c in hacked.checks if not c.passed] == ["checks_win_rate"]
    # and a low reward-model verdict is reported, not gated, for PPO; it still gates DPO and KTO
    checks = {
        c.name: c for c in gate(report(reward_win_rate=0.2, reward_optimised=True), GateThresholds()).checks
    }
    assert checks["reward_win_rate"].passed and "not gated" in checks["reward_win_rate"].detail
    assert not gate(report(reward_win_rate=0.2, reward_optimised=False), GateThresholds()).passed


def test_settings_carry_the_checks_threshold_and_the_drift_budget() -> None:
    from core.settings import Settings

    thresholds = GateThresholds.from_settings(Settings(gate_min_checks_win_rate=0.6, gate_max_drift=10.0))
    assert thresholds.min_checks_win_rate == 0.6 and thresholds.max_drift == 10.0
