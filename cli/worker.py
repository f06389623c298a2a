"""`kbloop trainer run|status|stop`: the background trainer, a worker that refreshes the model by itself.

One training run by hand is `kbloop train ...` (cli/train.py). `kbloop trainer run` is what
`KBLOOP_TRAINER_AUTOSTART` starts beside the server; its triggers default to KBLOOP_TRAINER_MIN_FEEDBACK
and KBLOOP_TRAINER_INTERVAL_H, its `--device` to KBLOOP_DEVICE.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.errors import fail
from cli.options import AlgoOption, DeviceOption, FromSettings
from trainer.config import DPOConfig, KTOConfig, PPOConfig, RefreshConfig, RewardConfig

worker_app = typer.Typer(
    help="The background trainer: a worker that refreshes the model by itself when enough feedback arrived "
    "or on a schedule (KBLOOP_TRAINER_AUTOSTART starts it beside `kbloop serve`). One training run by hand: "
    "`kbloop train`.",
    no_args_is_help=True,
)


def _settings() -> Any:
    from core.settings import get_settings

    return get_settings()


def _print(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@worker_app.command("run")
def trainer_run_command(
    *,
    once: Annotated[bool, typer.Option("--once", help="Check once (refresh if due) and exit.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Refresh now, whatever the triggers say.")] = False,
    min_feedback: Annotated[
        int,
        typer.Option(
            default_factory=FromSettings("trainer_min_feedback"),
            help="New feedback events that trigger a refresh.",
        ),
    ],
    interval_h: Annotated[
        float,
        typer.Option(
            default_factory=FromSettings("trainer_interval_h"),
            help="Refresh at least this often when feedback arrived (0 = off).",
        ),
    ],
    poll_s: Annotated[float, typer.Option(help="Seconds between checks.")] = 60.0,
    algo: AlgoOption,
    device: DeviceOption,
) -> None:
    """Watch the feedback store; refresh when enough new feedback arrived or on a schedule."""
    import logging

    from trainer.errors import TrainerError
    from trainer.refresh import RefreshConfigs
    from trainer.worker import Worker, WorkerConfig

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    configs = RefreshConfigs(
        refresh=RefreshConfig(algo=algo),
        reward=RewardConfig(device=device),
        ppo=PPOConfig(device=device),
        dpo=DPOConfig(device=device),
        kto=KTOConfig(device=device),
    )
    worker = Worker(_settings(), configs, WorkerConfig(min_feedback, interval_h, poll_s))
    if once or force:
        try:
            entry = worker.run_once(force=force)
        except TrainerError as exc:  # Busy included: another refresh holds the lock
            raise fail(exc) from None
        _print(entry or {"status": "idle", "reason": "no refresh due"})
        if entry and entry.get("status") == "failed":
            raise typer.Exit(1)
        return
    typer.echo(f"trainer watching {worker.settings.database_path} (Ctrl-C to stop)", err=True)
    try:
        worker.run_forever()
    except KeyboardInterrupt:
        worker.stop.set()


@worker_app.command("status")
def trainer_status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """The running refresh (phase, progress, ETA, live metrics) and the last finished one."""
    from trainer.status import describe, trainer_status

    status = trainer_status(_settings().data_dir)
    if as_json:
        _print(status)
    else:
        typer.echo("\n".join(describe(status)))


@worker_app.command("stop")
def trainer_stop_command() -> None:
    """Ask the running refresh to stop at its next training step (resumable; nothing is published)."""
    from trainer.errors import TrainerError
    from trainer.worker import request_stop_refresh

    try:
        folder = request_stop_refresh(_settings().data_dir)
    except TrainerError as exc:
        raise fail(exc) from None
    typer.echo(f"stop requested for {folder}; resume it later with `kbloop train refresh --output {folder}`")
