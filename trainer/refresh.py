"""One refresh from the feedback store: reward model update → PPO (or DPO, KTO) → evaluation → candidate.

    DATA_DIR/runs/refresh-<time>/      manifest.json (parent version, data snapshot, configs, metrics,
                                       evaluation report, candidate), and one sub-run folder per phase:
        reward/  sft/  ppo/ | dpo/     each a trainer.runs.Run (resumable, output published atomically)
    DATA_DIR/reward/latest.json        the reward model the next refresh warm-starts from

The data snapshot is taken once and recorded; a resumed refresh (same folder) reads exactly the same
rows (`as_of`), and each phase resumes from its own checkpoint or reuses its finished output. The
reward model warm-starts from the previous one and trains on the feedback that arrived since its
snapshot plus a replay sample of older data; `full_retrain` starts from the policy base on everything.
The result is registered as the `candidate` (never served before an operator promotes it); a failed or
refused run leaves every alias as it was.

Clean evidence: one held-out split (trainer.hygiene `heldout_prompt_ids`: by question hash, paraphrases
together) decides for pairs, thumbs and logged prompts alike, the same in every refresh; reward model,
pairs, thumbs and PPO rollouts come from the train side only. Token budgets derive from the logged
prompts (p95 + the response budget, `derive_budgets`). With `sft_first`, the policy update starts from
the SFT adapter but stays anchored to the champion (its KL is measured against the champion).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.clock import utc_now
from core.files import write_json
from registry.gate import GateThresholds, evaluate_gate
from registry.reports import Evaluation, RefreshReport
from trainer.config import DPOConfig, KTOConfig, PPOConfig, RefreshConfig, RewardConfig, SFTConfig
from trainer.errors import TrainerError
from trainer.runs import Run, new_run_dir

if TYPE_CHECKING:
    from core.settings import Settings
    from trainer.feedback_data import FeedbackData

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RefreshResult:
    run_dir: Path
    status: str  # "candidate" | "refused"
    candidate: str | None
    report: RefreshReport


@dataclass
class RefreshConfigs:
    refresh: RefreshConfig = dataclasses.field(default_factory=RefreshConfig)
    reward: RewardConfig = dataclasses.field(default_factory=RewardConfig)
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    dpo: DPOConfig = dataclasses.field(default_factory=DPOConfig)
    kto: KTOConfig = dataclasses.field(default_factory=KTOConfig)
    sft: SFTConfig = dataclasses.field(default_factory=SFTConfig)
    evaluate: bool = True
    eval_limit: int = 0  # golden questions evaluated (0 = all)
    eval_max_new_tokens: int = 96

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def latest_reward(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / "reward" / "latest.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if Path(data.get("folder", "")).is_dir() else None


def replay(new: Sequence[T], old: Sequence[T], ratio: float, seed: int) -> list[T]:
    """All new examples plus a seeded sample of old ones, `ratio` × as many as the new (at most all)."""
    keep = min(len(old), round(ratio * max(len(new), 1)))
    return [*new, *random.Random(seed).sample(list(old), keep)]


def _phase(root: Path, kind: str, config: dict[str, Any], body: Callable[[Run], T]) -> tuple[Run, T | None]:
    """Run a phase in its sub-run folder; a phase that already finished there is not run again."""
    run = Run(root)
    if run.manifest().get("status") == "succeeded":
        return run, None
    run = Run.open(root, kind, config)
    try:
        return run, body(run)
    except BaseException as exc:
        run.fail(exc)
        raise


def refresh(
    settings: Settings,
    configs: RefreshConfigs,
    run_dir: Path | None = None,
    embedder: Any = None,
) -> RefreshResult:
    """The configured pipeline on the store under `settings.data_dir`."""
    from registry.loading import base_model_path
    from registry.versions import ModelDirectory

    cfg = configs.refresh
    run_dir = run_dir or new_run_dir(settings.data_dir / "runs", "refresh")
    run = Run.open(run_dir, "refresh", configs.to_json())
    try:
        models = ModelDirectory(settings.models_dir)
        models.ensure_base(base_model_path(settings.model, settings.models_dir))
        champion = models.resolve("champion")
        adapter = champion.adapter_path(settings.models_dir)
        run.update(parent=champion.id, base=champion.base)
        data, _snapshot = _data(settings, configs, run, embedder)
        if cfg.derive_budgets:
            configs = _with_budgets(configs, champion.base, data, run)
        timings: dict[str, float] = {}

        started = time.perf_counter()
        reward_folder = _reward_phase(settings, configs, run, data)
        timings["reward"] = time.perf_counter() - started

        if cfg.sft_first and data["demonstrations"]:
            started = time.perf_counter()
            from trainer.sft import train_sft

            sft_cfg = sft_with_kl_limit(configs)
            sft_run, _ = _phase(
                run.root / "sft",
                "sft",
                sft_cfg.to_json(),
                lambda r: train_sft(
                    base=champion.base,
                    parent_adapter=adapter,
                    cfg=sft_cfg,
                    run=r,
                    demonstrations=data["demonstrations"],
                ),
            )
            adapter = sft_run.output
            timings["sft"] = time.perf_counter() - started

        champion_adapter = champion.adapter_path(settings.models_dir)
        started = time.perf_counter()
        if cfg.algo == "dpo":
            from trainer.dpo import train_dpo

            phase_run, _ = _phase(
                run.root / "dpo",
                "dpo",
                configs.dpo.to_json(),
                lambda r: train_dpo(
                    base=champion.base,
                    parent_adapter=adapter,
                    cfg=configs.dpo,
                    run=r,
                    pairs=[*data["pairs"], *data["correction_pairs"]],
                    heldout=data["heldout_pairs"],
                    reference_adapter=champion_adapter,
                ),
            )
            manifest = phase_run.manifest()
            publishable, policy_metrics = bool(manifest.get("publishable", True)), manifest.get("metrics", {})
        elif cfg.algo == "kto":
            from trainer.kto import train_kto

            phase_run, _ = _phase(
                run.root / "kto",
                "kto",
                configs.kto.to_json(),
                lambda r: train_kto(
                    base=champion.base,
                    parent_adapter=adapter,
                    cfg=configs.kto,
                    run=r,
                    thumbs=data["thumbs"],
                    heldout=data["heldout_thumbs"],
                    reference_adapter=champion_adapter,
                ),
            )
            manifest = phase_run.manifest()
            publishable, policy_metrics = bool(manifest.get("publishable", True)), manifest.get("metrics", {})
        else:
            phase_run, publishable, policy_metrics = _ppo_phase(
                settings, configs, run, data, champion.base, adapter, reward_folder, champion_adapter
            )
        timings[cfg.algo] = time.perf_counter() - started

        evaluation = None
        if configs.evaluate:
            started = time.perf_counter()
            evaluation = _evaluate(
                settings,
                configs,
                champion,
                phase_run.output,
                reward_folder,
                embedder,
                _heldout_prompts(data, configs.eval_limit or 16),
                progress_dir=run.root / "evaluation",
            )
            timings["evaluation"] = time.perf_counter() - started
        report = RefreshReport(policy=policy_metrics, timings_s=timings, evaluation=evaluation)
        if configs.evaluate:
            report = dataclasses.replace(
                report, gate=evaluate_gate(report, GateThresholds.from_settings(settings))
            )
        if not publishable:
            run.update(
                status="refused",
                finished=utc_now(),
                report=report.to_json(),
                error=report.refused or "not publishable",
            )
            return RefreshResult(run.root, "refused", None, report)
        version = _publish(models, champion, phase_run, run, report.to_json())
        run.succeed(report=report.to_json(), candidate=version)
        return RefreshResult(run.root, "candidate", version, report)
    except BaseException as exc:
        run.fail(exc)
        raise


def sft_with_kl_limit(configs: RefreshConfigs) -> SFTConfig:
    """SFT before the policy update may spend `sft_kl_share` of that update's KL budget (SFT's own
    `kl_limit` when it sets one). SFT measures it as DPO and KTO check theirs (temperature 1, k1, 8
    fresh answers: cheap enough for every epoch); the budget that decides publication is measured
    after the update, by the update (PPO: at its rollout temperature with k3, where it rolls back
    its last update when over)."""
    budgets = {"ppo": configs.ppo.kl_budget, "dpo": configs.dpo.kl_budget, "kto": configs.kto.kl_budget}
    limit = configs.sft.kl_limit or configs.refresh.sft_kl_share * budgets[configs.refresh.algo]
    return dataclasses.replace(configs.sft, kl_limit=limit)


def _data(
    settings: Settings, configs: RefreshConfigs, run: Run, embedder: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Examples from one recorded snapshot (the same one again when the run resumes), and the logged
    prompts of that snapshot, split by one held-out decision."""
    from feedback.store import Store
    from trainer.examples import correction_pairs
    from trainer.feedback_data import Snapshot, load_feedback
    from trainer.hygiene import heldout_prompt_ids
    from trainer.prompts import logged_prompts

    cfg, reward_cfg = configs.refresh, configs.reward
    recorded = run.manifest().get("snapshot")
    as_of = Snapshot.from_json(recorded) if recorded else None
    cap = reward_cfg.per_user_cap or None
    with Store(settings.database_path) as store:
        everything = load_feedback(store, per_user_cap=cap, seed=cfg.seed, as_of=as_of)
        previous = None if cfg.full_retrain else latest_reward(settings.data_dir)
        since = previous["snapshot"]["taken_at"] if previous else None
        fresh: FeedbackData | None = None
        if since is not None:
            fresh = load_feedback(
                store, since=since, until=everything.snapshot.taken_at, per_user_cap=cap, seed=cfg.seed
            )
        logged = logged_prompts(store, until=everything.snapshot.taken_at, seed=cfg.seed)
    snapshot = everything.snapshot.to_json()
    if not recorded:
        run.update(snapshot=snapshot, data_report=everything.report, skipped=everything.skipped)
    pairs, thumbs = list(everything.pairs), list(everything.thumbs)
    if fresh is not None:  # warm start: what arrived since the last reward model, plus a replay sample
        new_keys = {(p.prompt_id, p.chosen, p.rejected) for p in fresh.pairs}
        old_pairs = [p for p in pairs if (p.prompt_id, p.chosen, p.rejected) not in new_keys]
        new_thumb_keys = {(t.prompt_id, t.completion, t.label) for t in fresh.thumbs}
        old_thumbs = [t for t in thumbs if (t.prompt_id, t.completion, t.label) not in new_thumb_keys]
        pairs = replay(list(fresh.pairs), old_pairs, cfg.replay_ratio, cfg.seed)
        thumbs = replay(list(fresh.thumbs), old_thumbs, cfg.replay_ratio, cfg.seed)
    if len(pairs) + len(thumbs) < cfg.min_pairs:
        raise TrainerError(
            f"not enough feedback for a refresh: {len(pairs)} pairs + {len(thumbs)} thumbs "
            f"< min_pairs={cfg.min_pairs}; collect more votes or lower --min-pairs"
        )
    # one decision for every kind of data: a question (and its paraphrases) is on one side everywhere
    embed = (embedder or _embedder()).encode
    held = heldout_prompt_ids(
        [*everything.pairs, *everything.thumbs, *logged], reward_cfg.heldout_fraction, embed=embed
    )
    train_logged = [p.prompt for p in logged if p.prompt_id not in held]
    rng = random.Random(cfg.seed)
    data = {
        "pairs": [p for p in pairs if p.prompt_id not in held],
        "heldout_pairs": [p for p in pairs if p.prompt_id in held],
        "thumbs": [t for t in thumbs if t.prompt_id not in held],
        "heldout_thumbs": [t for t in thumbs if t.prompt_id in held],
        "demonstrations": [d for d in everything.demonstrations if d.prompt_id not in held],
        "correction_pairs": (
            correction_pairs([d for d in everything.demonstrations if d.prompt_id not in held])
            if cfg.correction_pairs
            else []
        ),
        "logged_prompts": rng.sample(train_logged, min(len(train_logged), cfg.max_prompts)),
        "heldout_logged_prompts": [p.prompt for p in logged if p.prompt_id in held],
        "warm_start": previous["folder"] if previous else None,
    }
    run.update(data={k: (len(v) if isinstance(v, list) else v) for k, v in data.items()})
    return data, snapshot


def _embedder() -> Any:
    """The bundled MiniLM, for the paraphrase groups of the held-out split."""
    from rag.embedding import Embedder

    return Embedder()


def _with_budgets(configs: RefreshConfigs, base: str, data: dict[str, Any], run: Run) -> RefreshConfigs:
    """Every phase's token budget from the logged prompts: their p95 + the response budget (PPO: the
    p95 as its prompt budget). Recorded in the manifest."""
    from trainer.models import load_tokenizer
    from trainer.tokens import derive_max_length

    cfg = configs.refresh
    prompts = [
        *data["logged_prompts"],
        *data["heldout_logged_prompts"],
        *(p.prompt for p in data["pairs"]),
        *(t.prompt for t in data["thumbs"]),
    ]
    max_length = derive_max_length(load_tokenizer(base), prompts, cfg.response_tokens)
    run.update(budgets={"max_length": max_length, "prompt": max_length - cfg.response_tokens})
    return dataclasses.replace(
        configs,
        reward=dataclasses.replace(configs.reward, max_length=max_length),
        dpo=dataclasses.replace(configs.dpo, max_length=max_length),
        kto=dataclasses.replace(configs.kto, max_length=max_length),
        sft=dataclasses.replace(configs.sft, max_length=max_length),
        ppo=dataclasses.replace(configs.ppo, max_prompt_tokens=max_length - cfg.response_tokens),
    )


def _reward_phase(settings: Settings, configs: RefreshConfigs, run: Run, data: dict[str, Any]) -> Path:
    from trainer.reward import train_reward

    champion_base = run.manifest()["base"]
    reward_cfg = dataclasses.replace(
        configs.reward, warm_start=data["warm_start"] or configs.reward.warm_start
    )
    reward_run, _ = _phase(
        run.root / "reward",
        "reward",
        reward_cfg.to_json(),
        lambda r: train_reward(
            base=champion_base,
            cfg=reward_cfg,
            run=r,
            pairs=[*data["pairs"], *data["correction_pairs"]],
            thumbs=data["thumbs"],
            heldout_pairs=data["heldout_pairs"],
            heldout_thumbs=data["heldout_thumbs"],
        ),
    )
    latest = settings.data_dir / "reward" / "latest.json"
    latest.parent.mkdir(parents=True, exist_ok=True)
    write_json(
        latest,
        {
            "folder": str(reward_run.output),
            "snapshot": run.manifest()["snapshot"],
            "run": str(run.root),
            "metrics": reward_run.manifest().get("metrics", {}),
        },
    )
    return reward_run.output


def _ppo_phase(
    settings: Settings,
    configs: RefreshConfigs,
    run: Run,
    data: dict[str, Any],
    base: str,
    adapter: Path | None,
    reward_folder: Path,
    champion_adapter: Path | None,
) -> tuple[Run, bool, dict[str, Any]]:
    """PPO on the train side's logged prompts (none held out), anchored to the champion."""
    from trainer.ppo import PPOTrainer, reward_model_scorer

    cfg = configs.ppo
    prompts = list(data["logged_prompts"])
    if not prompts:  # no logged answers yet: the prompts the training pairs and thumbs were about
        prompts = sorted({p.prompt for p in data["pairs"]} | {t.prompt for t in data["thumbs"]})
    run.update(ppo_prompts=len(prompts))

    def body(r: Run) -> Any:
        scorer = reward_model_scorer(reward_folder, cfg.device, configs.reward.max_length)
        if configs.refresh.composite:
            scorer = _composite(configs, run, data, scorer)
        return PPOTrainer(
            base=base,
            parent_adapter=adapter,
            reward=scorer,
            cfg=cfg,
            run=r,
            reference_adapter=champion_adapter,
            value_head=champion_adapter / "value_head.pt" if champion_adapter else None,
        ).train(prompts)

    phase_run, _ = _phase(run.root / "ppo", "ppo", cfg.to_json(), body)
    manifest = phase_run.manifest()
    return phase_run, bool(manifest.get("publishable", True)), manifest.get("metrics", {})


def _composite(configs: RefreshConfigs, run: Run, data: dict[str, Any], learned: Any) -> Any:
    """The reward model plus the verifiable checks, weighed by a fit on the employees' pairs; recorded
    in the refresh manifest (weights, cross-validated and held-out agreement of each component). With
    no pairs to fit on, the reward model alone (and the manifest says why)."""
    from trainer.composite import composite_scorer, fit_on_pairs
    from trainer.ppo import Scorer

    if not data["pairs"]:
        run.update(composite={"used": False, "reason": "no training pairs to fit the weights on"})
        return learned
    composite = fit_on_pairs(
        learned.score,
        data["pairs"],
        data["heldout_pairs"],
        mean=learned.mean,
        std=learned.std,
        sample=configs.refresh.composite_sample,
        seed=configs.refresh.seed,
    )
    run.update(composite={"used": True, **composite.to_json()})
    log.info("composite reward weights %s (%s)", composite.weights, composite.report)
    return Scorer(composite_scorer(composite, learned.score))


def _evaluate(
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
        golden_checks = _check_scores(
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
        logged_checks = _check_scores(list(heldout_prompts), new, old)
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


def _check_scores(
    prompts: Sequence[str | None], candidate: Sequence[str], champion: Sequence[str]
) -> tuple[list[float | None], list[float | None]]:
    """trainer.verifiable's score of each pair of answers to the same prompt (None: refused prompts)."""
    from trainer.verifiable import check_score

    def score(answers: Sequence[str]) -> list[float | None]:
        return [None if p is None else check_score(p, a) for p, a in zip(prompts, answers, strict=True)]

    return score(candidate), score(champion)


def _heldout_prompts(data: dict[str, Any], limit: int) -> list[str]:
    """Distinct prompts of the held-out pairs, thumbs and logged answers (never trained on)."""
    seen: dict[str, str] = {}
    for example in [*data["heldout_pairs"], *data["heldout_thumbs"]]:
        seen.setdefault(example.prompt_id, example.prompt)
    for prompt in data.get("heldout_logged_prompts", []):
        seen.setdefault(prompt, prompt)
    return list(seen.values())[:limit]


def _publish(models: Any, champion: Any, phase_run: Run, run: Run, report: dict[str, Any]) -> str:
    from trainer.publish import publish_candidate

    version = publish_candidate(
        models,
        base=champion.base,
        adapter=phase_run.output,
        parent=champion.id,
        run_dir=run.root,
        report=report,
    )
    return version.id
