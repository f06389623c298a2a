"""`kbloop golden`: the deployment's golden set (settings `golden_path`): import, list, split."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.errors import fail
from feedback.golden import DEFAULT_HELDOUT_FRACTION, SPLITS

golden_app = typer.Typer(
    help="The deployment's golden set: questions with their ideal answers, and expected refusals.",
    no_args_is_help=True,
)

Fraction = Annotated[
    float,
    typer.Option(min=0.0, max=1.0, help="Share of questions held out of training (a stable hash split)."),
]


def _path() -> Path:
    from core.settings import get_settings

    return get_settings().golden_path


@golden_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="JSONL, or CSV (by its .csv suffix; sources as a.md;b.md).")],
    replace: Annotated[
        bool, typer.Option("--replace", help="The file becomes the whole golden set (default: add to it).")
    ] = False,
    heldout_fraction: Fraction = DEFAULT_HELDOUT_FRACTION,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Only when the deployment has no golden set yet (`make run`).")
    ] = False,
) -> None:
    """Add a file's items to the golden set. Every malformed line is reported (nothing is written then);
    items repeating an id or a question already there are reported and left out."""
    from feedback.errors import FeedbackError
    from feedback.golden import add_items, golden_set, read_items

    path = _path()
    try:
        if if_empty and golden_set(path):
            print(f"the golden set at {path} already has items; nothing imported", file=sys.stderr)
            return
        incoming = read_items(file)
        report = add_items(path, incoming, replace_all=replace, heldout_fraction=heldout_fraction)
    except FeedbackError as exc:
        raise fail(exc.code.value, exc.message) from None
    print(
        f"{len(report.added)} items added to {path} ({report.total} in the golden set); "
        f"{len(report.duplicates)} duplicates left out",
        file=sys.stderr,
    )
    for duplicate in report.duplicates:
        print(f"  {duplicate.at}: {duplicate.id}: {duplicate.reason}", file=sys.stderr)


@golden_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list of items.")] = False,
    split: Annotated[
        str | None, typer.Option(help=f"Only this side of the split: {' or '.join(SPLITS)}.")
    ] = None,
) -> None:
    """The golden set's items (id, split, answerable, question), in file order."""
    from feedback.errors import FeedbackError
    from feedback.golden import golden_set

    if split is not None and split not in SPLITS:
        raise fail("invalid_input", f"--split must be {' or '.join(SPLITS)}, got {split!r}")
    path = _path()
    try:
        items = golden_set(path)
    except FeedbackError as exc:
        raise fail(exc.code.value, exc.message) from None
    if split is not None:
        items = [item for item in items if item.split == split]
    if as_json:
        print(json.dumps([item.to_json() for item in items], ensure_ascii=False, indent=2))
        return
    if not items:
        print(f"no golden items in {path}" + (f" on the {split} side" if split else ""), file=sys.stderr)
        return
    for item in items:
        kind = "answerable" if item.answerable else "refusal"
        print(f"{item.id}\t{item.split or '-'}\t{kind}\t{item.question}")


@golden_app.command("split")
def split_command(heldout_fraction: Fraction = DEFAULT_HELDOUT_FRACTION) -> None:
    """Record each item's side (train or heldout) in its `split` field: a hash of the normalised
    question, the same in every run."""
    from feedback.errors import FeedbackError
    from feedback.golden import resplit

    path = _path()
    try:
        items = resplit(path, heldout_fraction)
    except FeedbackError as exc:
        raise fail(exc.code.value, exc.message) from None
    if not items:
        raise fail("invalid_input", f"no golden set at {path}; `kbloop golden import FILE` first")
    held = sum(item.split == "heldout" for item in items)
    print(f"{len(items) - held} train, {held} heldout ({path})", file=sys.stderr)
