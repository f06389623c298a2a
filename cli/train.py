"""`kbloop train sft|reward|ppo|dpo|kto|refresh`: one training run, now (`kbloop eval` is cli/eval.py).

The background worker that runs refreshes on its own is `kbloop trainer` (cli/worker.py).
Every field of a training config (trainer/config.py) is an option with the field's help text, so the
CLI and the configs cannot drift apart; `--device` defaults to KBLOOP_DEVICE (cli/options.py). Heavy
imports happen inside the commands. Data comes from the feedback store under KBLOOP_DATA_DIR unless
`--from-jsonl` names a TRL-format file. Each run writes to `--output` (default
DATA_DIR/runs/<kind>-<time>); running the same command with the same `--output` resumes an interrupted
run from its last checkpoint.

(One command group at ~470 lines: the six commands share the run folder, parent, store and register
helpers; each command is the few lines that call its trainer.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.errors import fail
from cli.options import DeviceOption, with_config
from core.errors import KbloopError
from trainer.config import (
    DPOConfig,
    KTOConfig,
    PPOConfig,
    RefreshConfig,
    RewardConfig,
    SFTConfig,
    TrainConfig,
)

train_app = typer.Typer(
    help="One training run, now: the reward model, SFT, PPO, DPO, KTO or a whole refresh. The background "
    "worker that refreshes by itself when feedback arrives is `kbloop trainer`.",
    no_args_is_help=True,
)

FROM_JSONL = typer.Option(None, "--from-jsonl", help="Train on a TRL-format JSONL file instead of the store.")
OUTPUT = typer.Option(
    None, "--output", help="Run folder (default DATA_DIR/runs/<kind>-<time>); reuse to resume."
)
PARENT = typer.Option("champion", "--parent", help="Model version (or alias) to start from.")
REGISTER = typer.Option(True, "--register/--no-register", help="Register the result as the `candidate`.")


def _is_main() -> bool:
    """False in the secondary processes of `accelerate launch`/torchrun: they train, the main one reports."""
    import os

    return os.environ.get("RANK", "0") == "0"


def _fail(error: KbloopError | str) -> typer.Exit:
    """A named error, or a message about how the command was called (`invalid_input`)."""
    return fail(error) if isinstance(error, KbloopError) else fail("invalid_input", error)


def command_with_config(
    app: typer.Typer, name: str, config_type: type, help: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register `fn(cfg, **own_options)` as a command whose options are its own plus the config's."""

    def decorator(fn: Callable[..., None]) -> Callable[..., None]:
        app.command(name, help=help)(with_config(config_type)(fn))
        return fn

    return decorator


# -- shared helpers -----------------------------------------------------------------------------------


def _settings() -> Any:
    from core.settings import get_settings

    return get_settings()


def _run(output: Path | None, kind: str, cfg: Any) -> Any:
    import os

    from trainer.runs import Run, new_run_dir

    if output is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # each process would name its own folder; they must share one (and its checkpoint)
        raise _fail("several processes (accelerate launch, torchrun) share one run folder: pass --output")
    settings = _settings()
    root = output or new_run_dir(settings.data.runs, kind)
    if _is_main():
        typer.echo(f"run folder: {root}", err=True)
    return Run.open(root, kind, cfg.to_json(), main=_is_main())


def _parent(name: str) -> tuple[Any, Any, Path | None]:
    """(model directory, version, adapter path) of the version to start from."""
    from registry.loading import base_model_path
    from registry.versions import ModelDirectory

    settings = _settings()
    models = ModelDirectory(settings.models_dir)
    models.ensure_base(base_model_path(settings.model, settings.models_dir))
    version = models.resolve(name)
    return models, version, version.adapter_path(settings.models_dir)


def _store_data(cfg: TrainConfig) -> Any:
    from trainer.feedback_data import load_feedback

    return load_feedback(_settings().database_path, per_user_cap=cfg.per_user_cap or None, seed=cfg.seed)


def _register(models: Any, version: Any, run: Any, register: bool) -> None:
    if not register:
        return
    from trainer.publish import publish_candidate

    made = publish_candidate(
        models,
        base=version.base,
        adapter=run.output,
        parent=version.id,
        run_dir=run.root,
        report=run.manifest().get("metrics", {}),
    )
    typer.echo(f"registered {made.id} as the candidate (parent {version.id}); promote it after evaluation")


def guard(body: Callable[[], None]) -> None:
    from trainer.errors import TrainerError

    try:
        body()
    except TrainerError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise fail("interrupted", "run the same command with the same --output to resume") from None


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# -- kbloop train ... -------------------------------------------------------------------------------


@command_with_config(
    train_app, "sft", SFTConfig, "Supervised fine-tuning (LoRA) on corrections and golden answers."
)
def sft_command(
    cfg: SFTConfig,
    from_jsonl: Path | None = FROM_JSONL,
    output: Path | None = OUTPUT,
    parent: str = PARENT,
    register: bool = REGISTER,
    evaluate: Annotated[
        bool,
        typer.Option("--evaluate/--no-evaluate", help="Golden-set answer similarity on held-out questions."),
    ] = True,
) -> None:
    def body() -> None:
        from trainer.examples import prompt_id, render_prompts
        from trainer.hygiene import split_by_prompt
        from trainer.jsonl import read_jsonl_demonstrations
        from trainer.models import load_tokenizer
        from trainer.prompts import deployment_golden
        from trainer.sft import train_sft

        models, version, adapter = _parent(parent)
        heldout_questions: set[str] = set()
        if from_jsonl is not None:
            demos = render_prompts(read_jsonl_demonstrations(from_jsonl), load_tokenizer(version.base))
        else:
            demos = list(_store_data(cfg).demonstrations)
            items = deployment_golden(_settings()) if cfg.golden else []
            if cfg.golden and not items:
                typer.echo(f"no golden set at {_settings().golden_path}: corrections only", err=True)
            if items:
                from trainer.prompts import PromptRenderer, golden_demonstrations

                renderer = PromptRenderer.from_settings(_settings(), model=version.base)
                golden, skipped = golden_demonstrations(renderer, items)
                # golden questions held out of training measure the answer similarity afterwards: the
                # split recorded in the golden set (`kbloop golden split`), else one by prompt here
                if all(item.split for item in items):
                    held = {prompt_id(item.question) for item in items if item.split == "heldout"}
                    heldout = [d for d in golden if d.prompt_id in held]
                    golden = [d for d in golden if d.prompt_id not in held]
                else:
                    golden, heldout = split_by_prompt(golden, cfg.heldout_fraction)
                heldout_questions = {d.prompt_id for d in heldout}
                typer.echo(
                    f"golden demonstrations: {len(golden)} for training, {len(heldout)} held out "
                    f"(left out: {skipped})",
                    err=True,
                )
                demos += golden
        run = _run(output, "sft", cfg)
        result = train_sft(base=version.base, parent_adapter=adapter, cfg=cfg, run=run, demonstrations=demos)
        if not _is_main():
            return
        report = dict(result.metrics)
        if evaluate and from_jsonl is None and cfg.golden and heldout_questions:
            from trainer.evaluation import compare_reports, evaluate_policy
            from trainer.prompts import golden_prompts

            prompts = [
                p for p in golden_prompts(renderer, items) if p.rendered.prompt_id in heldout_questions
            ]
            embed = renderer.retriever.embedder.encode
            before = evaluate_policy(version.base, adapter, prompts, embed, device=cfg.device)
            after = evaluate_policy(version.base, run.output, prompts, embed, device=cfg.device)
            comparison = compare_reports(after, before)
            report["golden_heldout"] = {
                k: comparison[k] for k in ("candidate", "champion", "delta_similarity")
            }
            run.update(evaluation=report["golden_heldout"])
        print_json(report)
        _register(models, version, run, register)

    guard(body)


@command_with_config(
    train_app, "reward", RewardConfig, "Reward model: Bradley–Terry on pairs + BCE on thumbs."
)
def reward_command(
    cfg: RewardConfig,
    from_jsonl: Path | None = FROM_JSONL,
    output: Path | None = OUTPUT,
    parent: str = PARENT,
) -> None:
    def body() -> None:
        from trainer.hygiene import split_by_prompt
        from trainer.jsonl import detect_jsonl_kind, read_jsonl_preferences, read_jsonl_thumbs
        from trainer.reward import train_reward

        _, version, _ = _parent(parent)
        pairs: list[Any] = []
        thumbs: list[Any] = []
        if from_jsonl is not None:
            kind = detect_jsonl_kind(from_jsonl)
            if kind == "preferences":
                pairs = read_jsonl_preferences(from_jsonl)
            elif kind == "thumbs":
                thumbs = read_jsonl_thumbs(from_jsonl)
            else:
                raise _fail(f"{from_jsonl} holds {kind} rows; the reward model needs preferences or thumbs")
        else:
            data = _store_data(cfg)
            pairs, thumbs = list(data.pairs), list(data.thumbs)
        train_pairs, heldout_pairs = split_by_prompt(pairs, cfg.heldout_fraction)
        train_thumbs, heldout_thumbs = split_by_prompt(thumbs, cfg.heldout_fraction)
        run = _run(output, "reward", cfg)
        result = train_reward(
            base=version.base,
            cfg=cfg,
            run=run,
            pairs=train_pairs,
            thumbs=train_thumbs,
            heldout_pairs=heldout_pairs,
            heldout_thumbs=heldout_thumbs,
        )
        if not _is_main():
            return
        print_json(
            {
                "folder": str(result.folder),
                "heldout": result.heldout,
                "train": result.train,
                "reward_stats": result.stats,
            }
        )

    guard(body)


@command_with_config(train_app, "dpo", DPOConfig, "DPO on preference pairs, against the parent as reference.")
def dpo_command(
    cfg: DPOConfig,
    from_jsonl: Path | None = FROM_JSONL,
    output: Path | None = OUTPUT,
    parent: str = PARENT,
    register: bool = REGISTER,
) -> None:
    def body() -> None:
        from trainer.dpo import train_dpo
        from trainer.examples import render_prompts
        from trainer.hygiene import split_by_prompt
        from trainer.jsonl import read_jsonl_preferences
        from trainer.models import load_tokenizer

        models, version, adapter = _parent(parent)
        if from_jsonl is not None:
            pairs = render_prompts(read_jsonl_preferences(from_jsonl), load_tokenizer(version.base))
        else:
            pairs = list(_store_data(cfg).pairs)
        train, heldout = split_by_prompt(pairs, cfg.heldout_fraction)
        run = _run(output, "dpo", cfg)
        result = train_dpo(
            base=version.base, parent_adapter=adapter, cfg=cfg, run=run, pairs=train, heldout=heldout
        )
        if not _is_main():
            return
        print_json(result.metrics)
        if result.published:
            _register(models, version, run, register)
        else:
            raise fail("not_publishable", str(result.metrics.get("refused")))

    guard(body)


@command_with_config(
    train_app, "kto", KTOConfig, "KTO on thumbs (unpaired good/bad answers), against the parent as reference."
)
def kto_command(
    cfg: KTOConfig,
    from_jsonl: Path | None = FROM_JSONL,
    output: Path | None = OUTPUT,
    parent: str = PARENT,
    register: bool = REGISTER,
) -> None:
    def body() -> None:
        from trainer.examples import render_prompts
        from trainer.hygiene import split_by_prompt
        from trainer.jsonl import read_jsonl_thumbs
        from trainer.kto import train_kto
        from trainer.models import load_tokenizer

        models, version, adapter = _parent(parent)
        if from_jsonl is not None:
            thumbs = render_prompts(read_jsonl_thumbs(from_jsonl), load_tokenizer(version.base))
        else:
            thumbs = list(_store_data(cfg).thumbs)
        train, heldout = split_by_prompt(thumbs, cfg.heldout_fraction)
        run = _run(output, "kto", cfg)
        result = train_kto(
            base=version.base, parent_adapter=adapter, cfg=cfg, run=run, thumbs=train, heldout=heldout
        )
        if not _is_main():
            return
        print_json(result.metrics)
        if result.published:
            _register(models, version, run, register)
        else:
            raise fail("not_publishable", str(result.metrics.get("refused")))

    guard(body)


@command_with_config(train_app, "ppo", PPOConfig, "PPO against a reward model, KL-anchored to the parent.")
def ppo_command(
    cfg: PPOConfig,
    prompts_jsonl: Annotated[
        Path | None,
        typer.Option("--prompts-jsonl", help="JSONL with a `prompt` per line (default: logged prompts)."),
    ] = None,
    output: Path | None = OUTPUT,
    parent: str = PARENT,
    register: bool = REGISTER,
) -> None:
    def body() -> None:
        from trainer.errors import TrainerError
        from trainer.ppo import PPOTrainer, reward_model_scorer
        from trainer.refresh_data import latest_reward

        settings = _settings()
        models, version, adapter = _parent(parent)
        reward_folder = cfg.reward_model or (latest_reward(settings.data_dir) or {}).get("folder")
        if not reward_folder:
            raise TrainerError("no reward model: train one with `kbloop train reward` or pass --reward-model")
        prompts = _ppo_prompts(prompts_jsonl, version.base)
        run = _run(output, "ppo", cfg)
        scorer = reward_model_scorer(Path(reward_folder), cfg.device, cfg.max_length)
        result = PPOTrainer(base=version.base, parent_adapter=adapter, reward=scorer, cfg=cfg, run=run).train(
            prompts
        )
        if not _is_main():
            return
        print_json(result.metrics)
        if result.published:
            _register(models, version, run, register)
        else:
            raise fail("not_publishable", str(result.metrics.get("refused")))

    guard(body)


def _ppo_prompts(prompts_jsonl: Path | None, base: str) -> list[str]:
    from feedback.store import Store
    from trainer.errors import DataError
    from trainer.jsonl import jsonl_rows
    from trainer.prompts import PromptRenderer, deployment_golden, golden_prompts, logged_prompts

    if prompts_jsonl is not None:
        prompts = []
        for at, row in jsonl_rows(prompts_jsonl):
            if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
                raise DataError(f"{at}: each line needs a non-empty 'prompt' string")
            prompts.append(row["prompt"])
        return prompts
    settings = _settings()
    if settings.database_path.exists():
        with Store(settings.database_path) as store:
            logged = [p.prompt for p in logged_prompts(store, limit=100)]
        if logged:
            return logged
    items = deployment_golden(settings)
    if not items:
        raise DataError(
            f"no logged prompts yet and no golden set at {settings.golden_path}: answer some questions, "
            "import a golden set (`kbloop golden import FILE`), or pass --prompts-jsonl"
        )
    renderer = PromptRenderer.from_settings(settings, model=base)
    typer.echo("no logged prompts yet: using the golden questions", err=True)
    return [p.rendered.prompt for p in golden_prompts(renderer, items)]


@command_with_config(
    train_app, "refresh", RefreshConfig, "The configured pipeline from the store → a candidate."
)
def refresh_command(
    cfg: RefreshConfig,
    *,
    output: Path | None = OUTPUT,
    evaluate: Annotated[bool, typer.Option("--evaluate/--no-evaluate", help="Golden-set report.")] = True,
    eval_limit: Annotated[int, typer.Option(help="Golden questions evaluated (0 = all).")] = 0,
    ppo_iterations: Annotated[int, typer.Option(help="PPO rollout + update rounds.")] = PPOConfig.iterations,
    reward_epochs: Annotated[int, typer.Option(help="Reward model epochs.")] = RewardConfig.epochs,
    device: DeviceOption,
) -> None:
    def body() -> None:
        from trainer.refresh import RefreshConfigs, refresh

        configs = RefreshConfigs(
            refresh=cfg,
            reward=RewardConfig(epochs=reward_epochs, seed=cfg.seed, device=device),
            ppo=PPOConfig(iterations=ppo_iterations, seed=cfg.seed, device=device),
            dpo=DPOConfig(seed=cfg.seed, device=device),
            kto=KTOConfig(seed=cfg.seed, device=device),
            sft=SFTConfig(seed=cfg.seed, device=device),
            evaluate=evaluate,
            eval_limit=eval_limit,
        )
        result = refresh(_settings(), configs, output)
        print_json(
            {
                "status": result.status,
                "candidate": result.candidate,
                "run": str(result.run_dir),
                "report": _without_answers(result.report.to_json()),
            }
        )

    guard(body)


def _without_answers(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the golden questions' answers (long; `kbloop models show` has them)."""
    evaluation = {k: v for k, v in (report.get("evaluation") or {}).items() if k != "answers"}
    return {**report, "evaluation": evaluation} if report.get("evaluation") else report


def main() -> None:  # pragma: no cover
    train_app(sys.argv[1:])


if (
    __name__ == "__main__"
):  # `python -m cli.train ...` = `kbloop train ...` (`accelerate launch -m cli.train`)
    train_app(prog_name="python -m cli.train")
