"""`kbloop export`: feedback as TRL-ready JSONL or CSV, for training elsewhere or for a look."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import fail

KINDS = ("preferences", "thumbs", "sft", "votes.csv", "comparisons.csv", "corrections.csv")


def export_command(
    kind: Annotated[str, typer.Argument(help=f"One of: {', '.join(KINDS)}.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="File to write (default: stdout).")] = None,
    since: Annotated[str | None, typer.Option(help="Feedback given at or after (ISO-8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Feedback given before (ISO-8601).")] = None,
    model_version: Annotated[str | None, typer.Option(help="Only answers of this model version.")] = None,
) -> None:
    """Export preference pairs, unpaired thumbs, SFT demonstrations (JSONL, TRL formats) or CSV tables."""
    from core.settings import get_settings
    from feedback.errors import FeedbackError
    from feedback.export import export_demonstrations, export_preferences, export_thumbs
    from feedback.export_csv import Table, export_csv
    from feedback.store import Store

    if kind not in KINDS:
        raise fail("invalid_input", f"unknown export {kind!r}; one of {', '.join(KINDS)}")
    path = get_settings().database_path
    if not path.exists():
        raise fail("store_unavailable", f"no feedback database at {path} yet")
    target = out if out is not None else sys.stdout
    window = {"since": since, "until": until, "model_version": model_version}
    try:
        with Store(path) as store:
            if kind == "preferences":
                summary = export_preferences(store, target, **window)
            elif kind == "thumbs":
                summary = export_thumbs(store, target, **window)
            elif kind == "sft":
                summary = export_demonstrations(
                    store, target, since=since, until=until, model_version=model_version
                )
            else:
                table: Table = kind.removesuffix(".csv")  # type: ignore[assignment]
                summary = export_csv(store, target, table, **window)
    except FeedbackError as exc:
        raise fail(exc) from exc
    skipped = ", ".join(f"{n} {why}" for why, n in summary.skipped.items() if n) or "none"
    print(
        f"{summary.written} {kind} rows written{f' to {out}' if out else ''}; skipped: {skipped}",
        file=sys.stderr,
    )
