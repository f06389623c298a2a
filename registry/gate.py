"""The evaluation gate: pure checks of a candidate's report against the champion's and the thresholds.

The report is the one a refresh stores (trainer/evaluation.py `compare_reports`, plus the PPO KL): the
candidate's and the champion's golden-set numbers side by side. Each check says its value, its limit
and whether it passed; the gate passes when every check that could be computed passed and the report
holds the golden-set numbers at all (a version without an evaluation never passes by default).

A deployment without a golden set (the refresh records `"golden_set": "missing"`) cannot run the
similarity, citation and refusal checks: they are listed as "not run: no golden set" (`ran` False) and
the gate rests on what could be measured: the reward model's verdict on held-out logged prompts (a
failed check when there were none), the KL and the length drift. The evidence that counts then is live:
the canary's human win rate against the champion (registry.policy.promotion_decision), which
auto-promotion requires anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.reports import Check, Evaluation, GateVerdict, RefreshReport

if TYPE_CHECKING:
    from core.settings import Settings


@dataclass(frozen=True)
class GateThresholds:
    max_similarity_drop: float = 0.02  # golden-set answer similarity may fall at most this much
    max_citation_drop: float = 0.05  # share of answers citing a golden source
    max_refusal_drop: float = 0.10  # refusals on unanswerable golden questions
    min_reward_win_rate: float = 0.5  # reward model prefers the candidate on at least this share
    min_checks_win_rate: float = 0.5  # the answer checks score the candidate's held-out answers higher
    max_kl: float = 12.0  # KL to the champion per response
    max_drift: float = 24.0  # KL to the base model per response: the drift of every refresh so far
    max_length_drift: float = 0.5  # |mean length / champion's - 1|

    @classmethod
    def from_settings(cls, settings: Settings) -> GateThresholds:
        """The thresholds the deployment's `KBLOOP_GATE_*` settings set."""
        return cls(
            max_similarity_drop=settings.gate_max_similarity_drop,
            max_citation_drop=settings.gate_max_citation_drop,
            max_refusal_drop=settings.gate_max_refusal_drop,
            min_reward_win_rate=settings.gate_min_reward_win_rate,
            min_checks_win_rate=settings.gate_min_checks_win_rate,
            max_kl=settings.gate_max_kl,
            max_drift=settings.gate_max_drift,
            max_length_drift=settings.gate_max_length_drift,
        )


GOLDEN_CHECKS = ("similarity", "citations", "refusals")
NO_GOLDEN_SET = "not run: no golden set"


def reward_win_rate(
    candidate_rewards: list[float | None], champion_rewards: list[float | None]
) -> float | None:
    """Share of questions where the reward model scores the candidate's answer higher (ties half)."""
    pairs = [
        (c, h)
        for c, h in zip(candidate_rewards, champion_rewards, strict=True)
        if c is not None and h is not None
    ]
    if not pairs:
        return None
    return sum(1.0 if c > h else 0.5 if c == h else 0.0 for c, h in pairs) / len(pairs)


def pooled_reward_win_rate(
    golden: tuple[list[float | None], list[float | None]],
    logged: tuple[list[float | None], list[float | None]],
    min_logged: int,
) -> tuple[float | None, str]:
    """The gate's reward win rate and what it was measured on: the held-out logged prompts alone when
    there are at least `min_logged` of them, else those and the golden prompts together (a verdict on
    one or two prompts is a coin flip), else the golden prompts alone. Each pair is (candidate, champion)."""
    if len(logged[0]) >= min_logged:
        return reward_win_rate(*logged), "logged"
    if logged[0]:
        return reward_win_rate(golden[0] + logged[0], golden[1] + logged[1]), "golden+logged"
    return reward_win_rate(*golden), "golden"


def _basis(basis: str | None, logged: int | None) -> str:
    return f"{basis or 'golden'} prompts" + (f", {logged} logged" if logged else "")


def evaluate_gate(report: RefreshReport, thresholds: GateThresholds) -> GateVerdict:
    """Checks on a refresh report (its `evaluation` of candidate vs champion, its policy metrics)."""
    evaluation = report.evaluation or Evaluation()
    cand, champ = evaluation.candidate, evaluation.champion
    no_golden = evaluation.golden_missing
    checks: list[Check] = []
    if not no_golden and (cand is None or champ is None):
        checks.append(Check("evaluated", None, 1.0, False, "no golden-set evaluation in the report"))
        return GateVerdict(False, tuple(checks))

    def drop(name: str, key: str, limit: float) -> None:
        if no_golden or cand is None or champ is None:
            checks.append(Check(name, None, -limit, True, NO_GOLDEN_SET, ran=False))
            return
        c, h = getattr(cand, key), getattr(champ, key)
        if c is None or h is None:
            checks.append(Check(name, None, limit, True, f"{key}: not measured (no such questions)"))
            return
        change = c - h
        checks.append(Check(name, change, -limit, change >= -limit, f"{key} {h:.3f} → {c:.3f}"))

    drop("similarity", "similarity", thresholds.max_similarity_drop)
    drop("citations", "citation_correct", thresholds.max_citation_drop)
    drop("refusals", "refusal_rate_unanswerable", thresholds.max_refusal_drop)
    win, checked = evaluation.reward_win_rate, evaluation.checks_win_rate
    optimised = evaluation.reward_optimised
    logged = evaluation.reward_win_rate_prompts
    if win is not None:
        # a policy optimised against the reward model would be judged by its own target: reported only
        checks.append(
            Check(
                "reward_win_rate",
                win,
                thresholds.min_reward_win_rate,
                optimised or win >= thresholds.min_reward_win_rate,
                f"reward model prefers the candidate ({_basis(evaluation.reward_win_rate_basis, logged)})"
                + ("; reported, not gated: the policy was optimised against it" if optimised else ""),
            )
        )
    if checked is not None:
        checks.append(
            Check(
                "checks_win_rate",
                checked,
                thresholds.min_checks_win_rate,
                checked >= thresholds.min_checks_win_rate,
                "the answer checks (citations, grounding, loops, copying, length) prefer the candidate "
                f"({_basis(evaluation.checks_win_rate_basis, logged)})",
            )
        )
    if win is None and checked is None and no_golden:  # nothing offline judged the answers at all
        checks.append(
            Check(
                "reward_win_rate",
                None,
                thresholds.min_reward_win_rate,
                False,
                "not measured: no golden set and no held-out logged prompts",
            )
        )
    kl = report.kl_to_champion
    if kl is not None:
        checks.append(Check("kl", kl, thresholds.max_kl, kl <= thresholds.max_kl, "KL to the champion"))
    base_kl = report.kl_to_base
    if base_kl is not None:
        checks.append(
            Check(
                "drift",
                base_kl,
                thresholds.max_drift,
                base_kl <= thresholds.max_drift,
                "KL to the base model: the cumulative drift of every refresh",
            )
        )
    drift = evaluation.length_drift
    if drift is not None:
        checks.append(
            Check(
                "length_drift",
                drift,
                thresholds.max_length_drift,
                abs(drift) <= thresholds.max_length_drift,
                "mean answer length vs the champion",
            )
        )
    return GateVerdict(all(c.passed for c in checks), tuple(checks))
