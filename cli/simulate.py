"""`kbloop simulate` and `kbloop simulate-judge`: the options of simulation/simulate.py's rounds and
judgement, and their report on the terminal.

The options of `SimulationConfig`'s fields are generated from its help metadata (simulation/config.py),
as the training commands' are from theirs; the trainer's options a simulation sets stay below."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import fail
from cli.options import AlgoOption, DataDirOption, FromSettings, settings_in, with_config
from simulation.config import SimulationConfig, refresh_configs
from simulation.employees import PREFERENCES, QuestionBank
from simulation.report import write_results
from simulation.simulate import judge, simulate
from trainer.config import RewardConfig, SFTConfig, field_help
from trainer.errors import TrainerError


def _known_preference(name: str) -> str:
    if name not in PREFERENCES:
        raise typer.BadParameter(f"--preference must be one of {', '.join(PREFERENCES)}")
    return name


PREFERENCE = {
    "callback": _known_preference,
    "help": f"{field_help(SimulationConfig)['preference']} One of: {', '.join(PREFERENCES)}.",
}
GoldenOption = Annotated[
    Path | None,
    typer.Option(help="Question bank: a golden-set JSONL (default: the deployment's, KBLOOP_GOLDEN)."),
]


@with_config(
    SimulationConfig,
    tweaks={
        "preference": PREFERENCE,
        "min_comparisons": {"default_factory": FromSettings("auto_promote_min_comparisons")},
    },
)
def simulate_command(
    cfg: SimulationConfig,
    *,
    questions: Annotated[int, typer.Option(min=0, help="Train questions asked per round (0 = all).")] = 24,
    heldout: Annotated[int, typer.Option(min=1, help="Held-out questions for the win rate.")] = 10,
    ppo_iterations: Annotated[int, typer.Option(min=1, help="PPO rollout + update rounds.")] = 4,
    ppo_rollouts: Annotated[int, typer.Option(min=2, help="PPO prompts sampled per iteration.")] = 8,
    ppo_temperature: Annotated[
        float | None,
        typer.Option(min=0.1, max=2.0, help="PPO rollouts' temperature (default: the service's)."),
    ] = None,
    algo: AlgoOption,
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
    data_dir: DataDirOption,
    golden: GoldenOption = None,
    out: Annotated[Path, typer.Option(help="Results JSON (the plot goes beside it, .png).")] = Path(
        "bench/results/simulate.json"
    ),
) -> None:
    """Simulated employees with a hidden preference use the API for several rounds of the loop; reports
    the new model's held-out win rate, golden-set similarity, KL and thumbs-up rate per round."""
    from trainer.prompts import load_golden

    settings = settings_in(data_dir)
    if golden is not None:  # the gate evaluates on the same golden set the questions come from
        settings = settings.model_copy(update={"golden": golden})
    configs = refresh_configs(
        max_tokens=cfg.max_tokens,
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
        bank = QuestionBank.split(load_golden(golden or settings.golden_path), questions, heldout, cfg.seed)
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


@with_config(
    SimulationConfig,
    only=("heldout_samples", "users", "max_tokens", "preference", "noise", "concurrency", "seed"),
    tweaks={"preference": PREFERENCE, "heldout_samples": {"names": ("--samples",)}},
)
def judge_command(
    cfg: SimulationConfig,
    *,
    challenger: Annotated[str, typer.Argument(help="The version to judge, e.g. v0002.")],
    champion: Annotated[str, typer.Argument(help="The version it is judged against, e.g. v0001.")],
    golden: GoldenOption = None,
    data_dir: DataDirOption,
    out: Annotated[Path | None, typer.Option(help="Write the judgements here (JSON).")] = None,
) -> None:
    """Simulated employees judge two model versions side by side on a question bank (greedy and sampled
    answers): the win rate with its 95% interval over questions. For questions no round trained on."""
    from core.files import write_json
    from trainer.prompts import load_golden

    settings = settings_in(data_dir)
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
