"""`kbloop models list|show|history|promote|rollback|canary`: the registry from the command line.

The same operations as the operator API (`/api/models/...`) and the Operator tab. Promotion and
canary load the version and answer a test prompt first (`--no-smoke` skips that, e.g. on a machine
that cannot load the model); a failed gate needs `--override` and a reason, and is recorded as such.
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated, Any

import typer

from cli.errors import fail
from registry.gate import GateThresholds
from registry.reports import GateVerdict

models_app = typer.Typer(
    help="Model versions, aliases and their history: promote, roll back, canary.", no_args_is_help=True
)

# the first argument of typer.Option is the default: these were "--reason", "--actor" and
# "--smoke/--no-smoke" (strings), so --reason did not exist and --smoke never parsed
REASON = typer.Option(..., "--reason", "-m", help="Why (kept in the alias history).")
ACTOR = typer.Option(None, "--actor", help="Who is acting (default: the login name).")
SMOKE = typer.Option(
    True, "--smoke/--no-smoke", help="Load the version and answer a test prompt before switching."
)


def _registry() -> Any:
    from core.settings import get_settings
    from registry.registry import Registry

    settings = get_settings()
    return Registry(settings.models_dir, GateThresholds.from_settings(settings))


def _smoke(enabled: bool) -> Any:
    if not enabled:
        return None
    from core.settings import get_settings
    from service.smoke import smoke_test

    settings = get_settings()
    return lambda version: smoke_test(version, settings)


def _guard(body: Any) -> Any:
    from registry.errors import RegistryError

    try:
        return body()
    except RegistryError as exc:
        raise fail(exc) from None


def _actor(actor: str | None) -> str:
    return actor or getpass.getuser()


@models_app.command("list")
def list_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every version with its aliases, status, parent and gate result."""

    def body() -> None:
        registry = _registry()
        rows = [registry.describe(v.id) for v in registry.models.versions()]
        if as_json:
            typer.echo(json.dumps(rows, indent=2, default=str))
            return
        share = registry.canary_share()
        for row in rows:
            gate = GateVerdict.from_json(row["gate"])
            verdict = "-" if gate is None else ("passed" if gate.passed else "FAILED")
            aliases = ",".join(row["aliases"]) + (f" ({share:.0%})" if "canary" in row["aliases"] else "")
            typer.echo(
                f"{row['id']:8} {aliases or '-':22} parent={row['parent'] or '-':6} gate={verdict:6} "
                f"{row['created']}"
            )

    _guard(body)


@models_app.command("show")
def show_command(version: str) -> None:
    """A version's manifest, training report and gate checks (JSON)."""
    _guard(lambda: typer.echo(json.dumps(_registry().describe(version), indent=2, default=str)))


@models_app.command("history")
def history_command(alias: Annotated[str | None, typer.Argument()] = None, limit: int = 50) -> None:
    """Who changed which alias, when and why (newest first)."""

    def body() -> None:
        for e in _registry().history(alias, limit):
            flag = " OVERRIDE" if e.override else ""
            typer.echo(
                f"{e.at} {e.alias:9} {e.action:8} {e.from_version or '-'} -> {e.to_version or '-'} "
                f"by {e.actor}{flag}: {e.reason}"
            )

    _guard(body)


@models_app.command("promote")
def promote_command(
    version: str,
    reason: str = REASON,
    override: Annotated[bool, typer.Option("--override", help="Promote despite a failed gate.")] = False,
    actor: str | None = ACTOR,
    smoke: bool = SMOKE,
) -> None:
    """Make VERSION the champion (the gate must pass, or --override)."""

    def body() -> None:
        event = _registry().promote(
            version, actor=_actor(actor), reason=reason, override=override, smoke=_smoke(smoke)
        )
        typer.echo(f"champion: {event.from_version} -> {event.to_version}")

    _guard(body)


@models_app.command("rollback")
def rollback_command(reason: str = REASON, actor: str | None = ACTOR, smoke: bool = SMOKE) -> None:
    """Restore the previous champion."""

    def body() -> None:
        event = _registry().rollback(actor=_actor(actor), reason=reason, smoke=_smoke(smoke))
        typer.echo(f"champion: {event.from_version} -> {event.to_version}")

    _guard(body)


@models_app.command("canary")
def canary_command(
    version: Annotated[str, typer.Argument(help="Version to canary, or 'off'.")],
    share: Annotated[float, typer.Option(help="Share of new conversations routed to it (0..1).")] = 0.1,
    reason: str = REASON,
    actor: str | None = ACTOR,
    smoke: bool = SMOKE,
) -> None:
    """Route a share of new conversations to VERSION (sticky per conversation); 'off' stops it."""

    def body() -> None:
        target = None if version == "off" else version
        event = _registry().set_canary(
            target, share if target else 0.0, actor=_actor(actor), reason=reason, smoke=_smoke(smoke)
        )
        typer.echo(
            f"canary: {event.to_version or 'off'} ({event.detail.get('share', 0):.0%} of conversations)"
        )

    _guard(body)
