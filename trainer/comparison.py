"""A refresh's candidate against the champion: what the gate judges (registry/gate.py).

`compare_candidate` answers the deployment's golden questions with both models side by side (similarity
to the golden answers, citations, refusals, length, each model's reward) and judges their answers to the
held-out logged prompts, which no training example of the refresh used, with two judges: the reward
model (reported only after PPO, which optimised it) and the answer checks (trainer/verifiable.py), which
the policy was not optimised against. The result is a typed `Evaluation` (registry/reports.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.reports import Evaluation

if TYPE_CHECKING:
    from core.settings import Settings
    from trainer.refresh import RefreshConfigs


def compare_candidate(
    settings: Settings,
    configs: RefreshConfigs,
    champion: Any,
    candidate_adapter: Path,
    reward_folder: Path,
    embedder: Any,
    heldout_prompts: Sequence[str] = (),
    progress_dir: Path | None = None,
) -> Evaluation:
    """Candidate and champion on the same golden prompts (the deployment's golden set, settings
    `golden_path`), side by side; and the reward model's verdict between their answers to held-out
    logged prompts (prompts no training example of this run used), pooled with the golden prompts when
    there are fewer than `min_logged_prompts` of them. Without a golden set the report says
    `"golden_set": "missing"` and holds the logged verdict and length drift only (registry.gate)."""
    from registry.gate import pooled_reward_win_rate, reward_win_rate
    from trainer.evaluation import answer_prompts, compare_reports, evaluate_policy
    from trainer.ppo import reward_model_scorer
    from trainer.prompts import PromptRenderer, deployment_golden, golden_prompts

    items = deployment_golden(settings)  # the deployment's own golden set; none: the gate says so
    if configs.eval_limit:
        items = items[: configs.eval_limit]
    renderer = PromptRenderer.from_settings(settings, model=champion.base, embedder=embedder)
    prompts = golden_prompts(renderer, items, include_refused=True)
    scorer = reward_model_scorer(reward_folder, configs.ppo.device, configs.reward.max_length).score

    def run(adapter: Path | None, who: str) -> Any:
        return evaluate_policy(
            champion.base,
            adapter,
            prompts,
            renderer.retriever.embedder.encode,
            reward=scorer,
            max_new_tokens=configs.eval_max_new_tokens,
            device=configs.ppo.device,
            progress_dir=progress_dir,
            phase=f"evaluation: {who}'s golden answers",
        )

    golden: tuple[list[float | None], list[float | None]] = ([], [])
    golden_checks: tuple[list[float | None], list[float | None]] = ([], [])
    comparison: dict[str, Any] = {"golden_set": "missing", "golden_path": str(settings.golden_path)}
    if prompts:
        champion_report = run(champion.adapter_path(settings.models_dir), "champion")
        candidate_report = run(candidate_adapter, "candidate")
        comparison = compare_reports(candidate_report, champion_report)
        comparison["answers"] = [
            {"id": c.id, "question": c.question, "champion": h.answer, "candidate": c.answer}
            for c, h in zip(candidate_report.questions, champion_report.questions, strict=True)
        ]
        golden = (
            [r.reward for r in candidate_report.questions],
            [r.reward for r in champion_report.questions],
        )
        golden_checks = check_scores(
            [p.rendered.prompt if not p.rendered.refused else None for p in prompts],
            [r.answer for r in candidate_report.questions],
            [r.answer for r in champion_report.questions],
        )
    logged: tuple[list[float | None], list[float | None]] = ([], [])
    logged_checks: tuple[list[float | None], list[float | None]] = ([], [])
    if heldout_prompts:

        def answers(adapter: Path | None, who: str) -> list[str]:
            return answer_prompts(
                champion.base,
                adapter,
                heldout_prompts,
                max_new_tokens=configs.eval_max_new_tokens,
                device=configs.ppo.device,
                progress_dir=progress_dir,
                phase=f"evaluation: {who}'s held-out answers",
            )

        old = answers(champion.adapter_path(settings.models_dir), "champion")
        new = answers(candidate_adapter, "candidate")
        logged = (
            [float(x) for x in scorer(heldout_prompts, new)],
            [float(x) for x in scorer(heldout_prompts, old)],
        )
        logged_checks = check_scores(list(heldout_prompts), new, old)
        if not prompts:  # no golden answers to measure the length on: the logged ones, in words
            from trainer.metrics import length_drift

            words = ([len(a.split()) for a in new], [len(a.split()) for a in old])
            comparison["length_drift"] = length_drift(*words)
    rate, basis = pooled_reward_win_rate(golden, logged, configs.refresh.min_logged_prompts)
    basis = basis if prompts else "logged"
    comparison["reward_win_rate_golden"] = comparison.get("reward_win_rate")
    comparison["reward_win_rate_logged"] = reward_win_rate(*logged)
    comparison["reward_win_rate"] = rate  # the gate's figure
    comparison["reward_win_rate_basis"] = basis
    comparison["reward_win_rate_prompts"] = len(heldout_prompts)
    # judges the policy was not optimised against: the answer checks on the same held-out answers (and
    # the employees' live choices in the canary, registry.policy); PPO's reward model is reported only
    checks_rate, checks_basis = pooled_reward_win_rate(
        golden_checks, logged_checks, configs.refresh.min_logged_prompts
    )
    comparison["checks_win_rate"] = checks_rate
    comparison["checks_win_rate_basis"] = checks_basis if prompts else "logged"
    comparison["reward_optimised"] = configs.refresh.algo == "ppo"
    return Evaluation.from_json(comparison) or Evaluation()


def check_scores(
    prompts: Sequence[str | None], candidate: Sequence[str], champion: Sequence[str]
) -> tuple[list[float | None], list[float | None]]:
    """trainer.verifiable's score of each pair of answers to the same prompt (None: refused prompts)."""
    from trainer.verifiable import check_score

    def score(answers: Sequence[str]) -> list[float | None]:
        return [None if p is None else check_score(p, a) for p, a in zip(prompts, answers, strict=True)]

    return score(candidate), score(champion)


def heldout_prompts(data: dict[str, Any], limit: int) -> list[str]:
    """Distinct prompts of the held-out pairs, thumbs and logged answers (never trained on)."""
    seen: dict[str, str] = {}
    for example in [*data["heldout_pairs"], *data["heldout_thumbs"]]:
        seen.setdefault(example.prompt_id, example.prompt)
    for prompt in data.get("heldout_logged_prompts", []):
        seen.setdefault(prompt, prompt)
    return list(seen.values())[:limit]
