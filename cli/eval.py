"""`kbloop eval reward`: a reward model's pairwise accuracy on preference pairs (TRL JSONL), with its
95% interval and calibration, beside `kbloop train reward` (cli/train.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.options import DeviceOption
from cli.train import guard, print_json

eval_app = typer.Typer(help="Evaluate trained models.", no_args_is_help=True)


@eval_app.command("reward")
def eval_reward_command(
    *,
    model: Annotated[Path, typer.Option("--model", help="Reward model folder (a run's output).")],
    pairs: Annotated[
        Path, typer.Option("--pairs", help="JSONL preference pairs (prompt, chosen, rejected).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    device: DeviceOption,
    max_length: Annotated[int, typer.Option(help="Longest prompt + response in tokens.")] = 512,
    batch_size: Annotated[int, typer.Option(help="Sequences per forward pass.")] = 16,
    margins_out: Annotated[
        Path | None,
        typer.Option("--margins-out", help="Write each pair's margin (chosen - rejected) as a JSON list."),
    ] = None,
) -> None:
    """Pairwise accuracy (and calibration) of a reward model on preference pairs (progress on stderr)."""

    def body() -> None:
        from feedback.stats import wilson_interval
        from trainer import metrics as M
        from trainer.errors import TrainerError
        from trainer.examples import render_prompts
        from trainer.jsonl import read_jsonl_preferences
        from trainer.models import REWARD_META
        from trainer.reward import load_for_scoring, report_from_scores, score_examples

        if not (model / REWARD_META).exists():
            raise TrainerError(
                f"{model} is not a reward model folder (no {REWARD_META}); pass a run's output"
            )
        rows = read_jsonl_preferences(pairs)
        scorer, tokenizer, _ = load_for_scoring(model, device)
        scores = score_examples(
            scorer,
            tokenizer,
            render_prompts(rows, tokenizer),
            max_length=max_length,
            batch_size=batch_size,
            phase="reward model: evaluation",
        )
        n = len(rows)
        report = report_from_scores(scores[:n], scores[n:])
        margins = [c - r for c, r in zip(scores[:n], scores[n:], strict=True)]
        low, high = wilson_interval(M.pairwise_accuracy(margins) * n, n)
        report |= {"pair_accuracy_ci95_low": low, "pair_accuracy_ci95_high": high}
        if margins_out is not None:
            margins_out.write_text(json.dumps(margins))
        if as_json:
            print_json(report)
        else:
            typer.echo(
                f"pairwise accuracy {report['pair_accuracy']:.3f} (95% CI {low:.3f}-{high:.3f}) on {n} pairs "
                f"(ECE {report['ece']:.3f}, Brier {report['brier']:.3f})"
            )

    guard(body)
