"""`kbloop simulate` and `kbloop simulate-judge`: the options of simulation/simulate.py's rounds and
judgement, and their report on the terminal."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import fail
from simulation.config import SimulationConfig, refresh_configs
from simulation.employees import PREFERENCES, QuestionBank
from simulation.report import write_results
from simulation.simulate import judge, simulate
from trainer.config import RewardConfig, SFTConfig
from trainer.errors import TrainerError


def _known_preference(name: str) -> str:
    if name not in PREFERENCES:
        raise typer.BadParameter(f"--preference must be one of {', '.join(PREFERENCES)}")
    return name


# the options both commands take, with one help text and check each
UsersOption = Annotated[int, typer.Option(min=2, help="Simulated employees.")]
PreferenceOption = Annotated[
    str, typer.Option(help=f"Hidden preference: {', '.join(PREFERENCES)}.", callback=_known_preference)
]
NoiseOption = Annotated[float, typer.Option(min=0, help="Employees' judgement noise (score units).")]
ConcurrencyOption = Annotated[int, typer.Option(min=1, help="Requests in flight.")]
GoldenOption = Annotated[
    Path | None,
    typer.Option(help="Question bank: a golden-set JSONL (default: the deployment's, KBLOOP_GOLDEN)."),
]


def simulate_command(
    rounds: Annotated[int, typer.Option(min=1, help="Feedback → refresh → canary → promote rounds.")] = 2,
    questions: Annotated[int, typer.Option(min=0, help="Train questions asked per round (0 = all).")] = 24,
    heldout: Annotated[int, typer.Option(min=1, help="Held-out questions for the win rate.")] = 10,
    heldout_samples: Annotated[
        int, typer.Option(min=0, help="Sampled answer pairs judged per held-out question (beside greedy).")
    ] = SimulationConfig.heldout_samples,
    users: UsersOption = SimulationConfig.users,
    asks: Annotated[
        int, typer.Option(min=1, help="Times each train question is asked and compared per round.")
    ] = 1,
    max_tokens: Annotated[int, typer.Option(min=1, help="Answer length (collection, PPO, evaluation).")] = 48,
    ppo_iterations: Annotated[int, typer.Option(min=1, help="PPO rollout + update rounds.")] = 4,
    ppo_rollouts: Annotated[int, typer.Option(min=2, help="PPO prompts sampled per iteration.")] = 8,
    ppo_temperature: Annotated[
        float | None,
        typer.Option(min=0.1, max=2.0, help="PPO rollouts' temperature (default: the service's)."),
    ] = None,
    algo: Annotated[
        str, typer.Option(help="Policy update: ppo (group baseline, composite reward), dpo or kto.")
    ] = "ppo",
    dpo_learning_rate: Annotated[float, typer.Option(min=0, help="DPO's learning rate (--algo dpo).")] = 5e-5,
    dpo_epochs: Annotated[int, typer.Option(min=1, help="DPO passes over the pairs (--algo dpo).")] = 1,
    dpo_max_steps: Annotated[
        int, typer.Option(min=0, help="DPO's step cap per refresh (0 = all epochs; --algo dpo).")
    ] = 0,
    reward_epochs: Annotated[int, typer.Option(min=1, help="Reward-model passes per refresh.")] = 2,
    reward_learning_rate: Annotated[
        float, typer.Option(min=0, help="Reward model's learning rate (default: the trainer's).")
    ] = RewardConfig.learning_rate,
    reward_max_steps: Annotated[
        int, typer.Option(min=0, help="Reward model's step cap per refresh (0 = all epochs).")
    ] = RewardConfig.max_steps,
    sft_epochs: Annotated[
        int, typer.Option(min=1, help="SFT passes over the employees' corrections per refresh.")
    ] = SFTConfig.epochs,
    eval_limit: Annotated[int, typer.Option(min=0, help="Golden questions in the gate (0 = all).")] = 0,
    preference: PreferenceOption = SimulationConfig.preference,
    canary_share: Annotated[float, typer.Option(min=0, max=1, help="Canary share of conversations.")] = 0.5,
    override: Annotated[
        bool, typer.Option(help="Promote candidates the promotion rule refuses (audited).")
    ] = False,
    min_comparisons: Annotated[
        int | None,
        typer.Option(min=1, help="Live comparisons the promotion rule needs (default: the service's)."),
    ] = None,
    noise: NoiseOption = SimulationConfig.noise,
    corrections: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of thumbs-down answers an employee rewrites (SFT examples)."),
    ] = SimulationConfig.corrections,
    concurrency: ConcurrencyOption = SimulationConfig.concurrency,
    seed: Annotated[int, typer.Option(help="Seed: question split, employees, noise, training.")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default KBLOOP_DATA_DIR); ingested.")
    ] = None,
    golden: GoldenOption = None,
    out: Annotated[Path, typer.Option(help="Results JSON (the plot goes beside it, .png).")] = Path(
        "bench/results/simulate.json"
    ),
) -> None:
    """Simulated employees with a hidden preference use the API for several rounds of the loop; reports
    the new model's held-out win rate, golden-set similarity, KL and thumbs-up rate per round."""
    from core.settings import get_settings
    from trainer.prompts import load_golden

    if algo not in ("ppo", "dpo", "kto"):
        raise typer.BadParameter("--algo must be ppo, dpo or kto")
    settings = get_settings().model_copy(update={} if data_dir is None else {"data_dir": data_dir})
    if golden is not None:  # the gate evaluates on the same golden set the questions come from
        settings = settings.model_copy(update={"golden": golden})
    cfg = SimulationConfig(
        rounds=rounds,
        preference=preference,
        users=users,
        asks=asks,
        max_tokens=max_tokens,
        heldout_samples=heldout_samples,
        canary_share=canary_share,
        override=override,
        min_comparisons=min_comparisons or settings.auto_promote_min_comparisons,
        noise=noise,
        corrections=corrections,
        concurrency=concurrency,
        seed=seed,
    )
    configs = refresh_configs(
        max_tokens=max_tokens,
        ppo_iterations=ppo_iterations,
        reward_epochs=reward_epochs,
        eval_limit=eval_limit,
        device=settings.device,
        algo=algo,
        ppo_rollouts=ppo_rollouts,
        ppo_temperature=ppo_temperature,
    )
    configs.dpo = dataclasses.replace(
        configs.dpo, learning_rate=dpo_learning_rate, epochs=dpo_epochs, max_steps=dpo_max_steps
    )
    configs.reward = dataclasses.replace(
        configs.reward, learning_rate=reward_learning_rate, max_steps=reward_max_steps
    )
    configs.sft = dataclasses.replace(configs.sft, epochs=sft_epochs)
    try:
        bank = QuestionBank.split(load_golden(golden or settings.golden_path), questions, heldout, seed)
        result = simulate(
            settings,
            cfg,
            configs,
            bank,
            say=lambda m: typer.echo(m, err=True),
            on_round=lambda partial: write_results(partial, out),
        )
    except TrainerError as exc:
        raise fail(exc) from None
    png = write_results(result, out)
    summary = result["summary"]
    typer.echo(json.dumps({"out": str(out), "plot": str(png) if png else None, **summary}, indent=2))


def judge_command(
    challenger: Annotated[str, typer.Argument(help="The version to judge, e.g. v0002.")],
    champion: Annotated[str, typer.Argument(help="The version it is judged against, e.g. v0001.")],
    golden: GoldenOption = None,
    samples: Annotated[
        int, typer.Option(min=0, help="Sampled answer pairs judged per question (beside greedy).")
    ] = SimulationConfig.heldout_samples,
    users: UsersOption = SimulationConfig.users,
    max_tokens: Annotated[int, typer.Option(min=1, help="Answer length.")] = 48,
    preference: PreferenceOption = SimulationConfig.preference,
    noise: NoiseOption = SimulationConfig.noise,
    concurrency: ConcurrencyOption = SimulationConfig.concurrency,
    seed: Annotated[int, typer.Option(help="Seed: employees and noise.")] = 0,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data dir (default KBLOOP_DATA_DIR): its index and versions.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the judgements here (JSON).")] = None,
) -> None:
    """Simulated employees judge two model versions side by side on a question bank (greedy and sampled
    answers): the win rate with its 95% interval over questions. For questions no round trained on."""
    from core.settings import get_settings
    from trainer.prompts import load_golden
    from trainer.runs import write_json

    settings = get_settings().model_copy(update={} if data_dir is None else {"data_dir": data_dir})
    cfg = SimulationConfig(
        users=users,
        max_tokens=max_tokens,
        heldout_samples=samples,
        preference=preference,
        noise=noise,
        concurrency=concurrency,
        seed=seed,
    )
    try:
        result = judge(
            settings,
            cfg,
            challenger,
            champion,
            load_golden(golden or settings.golden_path),
            say=lambda m: typer.echo(m, err=True),
        )
    except TrainerError as exc:
        raise fail(exc) from None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, result)
    keys = (
        "challenger",
        "champion",
        "questions",
        "outcomes",
        "win_rate",
        "ci",
        "sampled",
        "pooled",
        "mean_score",
    )
    typer.echo(json.dumps({"out": str(out) if out else None, **{k: result[k] for k in keys}}, indent=2))
