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
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.clock import utc_now
from core.files import write_json
from registry.gate import GateThresholds, evaluate_gate
from registry.reports import RefreshReport
from trainer.comparison import compare_candidate, heldout_prompts
from trainer.config import DPOConfig, KTOConfig, PPOConfig, RefreshConfig, RewardConfig, SFTConfig
from trainer.refresh_data import refresh_data, with_budgets
from trainer.runs import Run, new_run_dir

if TYPE_CHECKING:
    from core.settings import Settings

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
    run_dir = run_dir or new_run_dir(settings.data.runs, "refresh")
    run = Run.open(run_dir, "refresh", configs.to_json())
    try:
        models = ModelDirectory(settings.models_dir)
        models.ensure_base(base_model_path(settings.model, settings.models_dir))
        champion = models.resolve("champion")
        adapter = champion.adapter_path(settings.models_dir)
        run.update(parent=champion.id, base=champion.base)
        data, _snapshot = refresh_data(settings, configs, run, embedder)
        if cfg.derive_budgets:
            configs = with_budgets(configs, champion.base, data, run)
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
            evaluation = compare_candidate(
                settings,
                configs,
                champion,
                phase_run.output,
                reward_folder,
                embedder,
                heldout_prompts(data, configs.eval_limit or 16),
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
    latest = settings.data.latest_reward
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
