"""`kbloop`: the command line. Each package contributes a group of subcommands; heavy imports happen
inside the commands, so `kbloop --help` stays fast and never imports torch."""

from __future__ import annotations

import typer

from cli.backup import backup_command, restore_command
from cli.errors import fail
from cli.eval import eval_app
from cli.export import export_command
from cli.golden import golden_app
from cli.models import models_app
from cli.rag import index_app
from cli.rag import register as register_rag
from cli.serve import serve_command
from cli.simulate import judge_command, simulate_command
from cli.train import train_app
from cli.worker import worker_app

app = typer.Typer(
    name="kbloop",
    help="kbloop: an internal-knowledge chatbot that learns from its users' feedback.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def check_settings() -> None:
    """kbloop: an internal-knowledge chatbot that learns from its users' feedback."""
    # a misconfigured KBLOOP_* variable fails every command the same way, before it starts
    from pydantic import ValidationError

    from core.settings import get_settings

    try:
        get_settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"KBLOOP_{'_'.join(str(part) for part in e['loc']).upper()}: {e['msg']}" for e in exc.errors()
        )
        raise fail("invalid_config", f"{problems} (check the environment and .env)") from None


register_rag(app)
app.add_typer(index_app, name="index")
app.command("serve")(serve_command)
app.command("export")(export_command)
app.add_typer(golden_app, name="golden")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(worker_app, name="trainer")
app.add_typer(models_app, name="models")
app.command("simulate")(simulate_command)
app.command("simulate-judge")(judge_command)
app.command("backup")(backup_command)
app.command("restore")(restore_command)


if __name__ == "__main__":  # pragma: no cover
    app()
