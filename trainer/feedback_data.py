"""The trainer's data from the feedback store: feedback.readers' rows made into examples, from one
consistent snapshot that a run records and can read again.

`load_feedback` reads everything from one `Store.snapshot()` and applies feedback.export's rules for
rows that cannot make a sound example (`pair_problem`, `thumb_problem`, superseded corrections), counted
in `skipped` under `<table>.<reason>`. Access groups hold in training: a row whose answer's prompt held
a passage restricted to groups never trains the model served to everyone (`shared`, counted as
`<table>.restricted` and in the report's `restricted`). It records a `Snapshot` (the newest row of
each table) in the result; passing it back as `as_of` reads exactly the same rows again, whatever was
written since. Then trainer.hygiene's `dedupe`, `cap_per_user` and `balance_positions`; the held-out
split is left to the caller.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from feedback.export import pair_problem, pair_prompt, restricted_groups, thumb_problem
from feedback.readers import (
    TableMark,
    chosen_comparisons,
    correction_rows,
    current_votes,
    schema_version,
    table_marks,
)
from feedback.timestamps import normalize_timestamp, utc_now
from trainer.errors import DataError
from trainer.examples import Demonstration, Position, PreferencePair, ThumbExample, Tie, prompt_id
from trainer.hygiene import balance_positions, cap_per_user, dedupe

if TYPE_CHECKING:
    import sqlite3

    from feedback.store import Store

__all__ = [
    "DEFAULT_PER_USER_CAP",
    "FeedbackData",
    "Snapshot",
    "TableMark",
    "load_feedback",
    "shared",
]

DEFAULT_PER_USER_CAP = 1000


class Window(TypedDict):
    """The filters of a read: `since <= t < until` (canonical timestamps) and the model version."""

    since: str | None
    until: str | None
    model_version: str | None


@dataclass(frozen=True)
class Snapshot:
    """What `load_feedback` read, for a run's manifest. Reading with `as_of=` this snapshot takes the
    same rows again: votes as of vote event `max_rowid`, comparisons up to `max_rowid` chosen by
    `max_time` (a choice made in the same millisecond after the snapshot would be taken too),
    corrections up to `max_rowid`; with the same filters."""

    db_path: str
    schema_version: int
    taken_at: str
    tables: dict[str, TableMark]
    since: str | None = None
    until: str | None = None
    model_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        try:
            tables = {name: TableMark(**mark) for name, mark in data["tables"].items()}
            return cls(**{**data, "tables": tables})
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataError(
                f"not a feedback snapshot ({exc}); pass the `snapshot` of a run manifest"
            ) from None


@dataclass(frozen=True)
class FeedbackData:
    pairs: tuple[PreferencePair, ...]
    ties: tuple[Tie, ...]
    thumbs: tuple[ThumbExample, ...]
    demonstrations: tuple[Demonstration, ...]
    snapshot: Snapshot
    skipped: dict[str, int]  # "<table or kind>.<reason>" -> rows left out
    report: dict[str, Any] = field(default_factory=dict)  # what was read and what the hygiene changed


def load_feedback(
    store_or_db_path: Store | str | os.PathLike[str],
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
    per_user_cap: int | None = DEFAULT_PER_USER_CAP,
    seed: int = 0,
    as_of: Snapshot | None = None,
) -> FeedbackData:
    """Every example the store holds, from one consistent snapshot, deduplicated, capped at
    `per_user_cap` examples of each kind per user (None: no cap; the choice is seeded) and with the
    pairs' positions balanced.

    - comparisons chosen A/B → pairs (chosen/rejected from the recorded left/right); `tie` → Tie;
      `both_bad` → Tie and a thumbs-down ThumbExample for each answer (both were judged bad);
    - current votes (withdrawn ones left out) → ThumbExample with the reasons;
    - the newest correction of each (answer, user) → Demonstration.
    `since <= t < until` on when the feedback was given, `model_version` on the answer (either side of
    a comparison), as in feedback.export. `as_of`: read only what that snapshot held (its filters too).
    """
    from feedback.store import Store

    if as_of is not None:
        given = {"since": since, "until": until, "model_version": model_version}
        recorded = {"since": as_of.since, "until": as_of.until, "model_version": as_of.model_version}
        if any(v is not None and _canonical(k, v) != recorded[k] for k, v in given.items()):
            raise DataError(f"as_of carries its own filters {recorded}; leave since/until/model_version out")
        since, until, model_version = as_of.since, as_of.until, as_of.model_version
    since, until = _canonical("since", since), _canonical("until", until)
    if per_user_cap is not None and per_user_cap < 1:
        raise ValueError(f"per_user_cap must be at least 1 (or None for no cap), got {per_user_cap}")
    if isinstance(store_or_db_path, Store):
        return _load(store_or_db_path, since, until, model_version, per_user_cap, seed, as_of)
    path = Path(store_or_db_path)
    if not path.is_file():
        raise DataError(f"no feedback database at {path}; check the data directory")
    with Store(path) as store:
        return _load(store, since, until, model_version, per_user_cap, seed, as_of)


def _canonical(name: str, value: str | None) -> str | None:
    if value is None or name == "model_version":
        return value
    try:
        return normalize_timestamp(value)
    except (ValueError, AttributeError) as exc:
        raise DataError(f"{name}: {exc}") from None


def _load(
    store: Store,
    since: str | None,
    until: str | None,
    model_version: str | None,
    per_user_cap: int | None,
    seed: int,
    as_of: Snapshot | None,
) -> FeedbackData:
    skipped: Counter[str] = Counter()
    window: Window = {"since": since, "until": until, "model_version": model_version}
    with store.snapshot() as conn:
        marks = table_marks(conn)
        if as_of is not None:
            _check_contains(marks, as_of, store)
        bounds = as_of.tables if as_of is not None else marks
        version = schema_version(conn)
        pairs, ties, bad = _comparisons(conn, bounds["comparisons"], window, skipped)
        thumbs = _votes(conn, bounds["vote_events"], window, skipped) + bad
        demonstrations = _corrections(conn, bounds["corrections"], window, skipped)
    snapshot = Snapshot(str(store.path.resolve()), version, utc_now(), bounds, since, until, model_version)
    read = {
        "pairs": len(pairs),
        "ties": sum(t.kind == "tie" for t in ties),
        "both_bad": sum(t.kind == "both_bad" for t in ties),
        "thumbs_up": sum(t.label for t in thumbs),
        "thumbs_down": sum(not t.label and t.source == "vote" for t in thumbs),
        "both_bad_thumbs": len(bad),
        "demonstrations": len(demonstrations),
    }
    report: dict[str, Any] = {
        "read": read,
        # examples whose prompt held a passage restricted to access groups: kept out of training
        "restricted": {t: skipped[f"{t}.restricted"] for t in ("comparison", "vote", "correction")},
        "per_user_cap": per_user_cap,
        "seed": seed,
        "dedupe": {},
    }
    kinds: dict[str, list[Any]] = {
        "pairs": pairs,
        "ties": ties,
        "thumbs": thumbs,
        "demonstrations": demonstrations,
    }
    dropped: dict[str, dict[str, int]] = {}
    for kind, items in kinds.items():
        items, report["dedupe"][kind] = dedupe(items)
        skipped[f"{kind}.duplicate"] += report["dedupe"][kind]["duplicates"]
        if per_user_cap is not None:
            items, dropped[kind] = cap_per_user(items, per_user_cap, seed)
            skipped[f"{kind}.per_user_cap"] += sum(dropped[kind].values())
        kinds[kind] = items
    report["capped"] = dropped
    balanced, report["positions"] = balance_positions(kinds["pairs"])
    return FeedbackData(
        tuple(balanced),
        tuple(kinds["ties"]),
        tuple(kinds["thumbs"]),
        tuple(kinds["demonstrations"]),
        snapshot,
        {k: v for k, v in sorted(skipped.items()) if v},
        report,
    )


def _check_contains(marks: dict[str, TableMark], as_of: Snapshot, store: Store) -> None:
    beyond = [t for t, m in as_of.tables.items() if t in marks and m.max_rowid > marks[t].max_rowid]
    if beyond or set(marks) - set(as_of.tables):
        raise DataError(
            f"the snapshot of {as_of.db_path} names rows that {store.path} does not hold "
            f"({beyond or 'tables'}); read it from the database the run used"
        )


def shared(passage_groups: Sequence[str | None], table: str, skipped: Counter[str]) -> bool:
    """Whether a row may train the model served to everyone: none of its answers' prompts held a passage
    restricted to access groups (`passage_groups`: the answers' columns as stored). A restricted row is
    left out and counted under `<table>.restricted`. Every reader of the store that makes training
    examples or prompts calls this (`load_feedback`'s readers, trainer.prompts.logged_prompts): the one
    place where access groups hold in training."""
    if restricted_groups(*passage_groups):
        skipped[f"{table}.restricted"] += 1
        return False
    return True


def _comparisons(
    conn: sqlite3.Connection, bound: TableMark, window: Window, skipped: Counter[str]
) -> tuple[list[PreferencePair], list[Tie], list[ThumbExample]]:
    pairs: list[PreferencePair] = []
    ties: list[Tie] = []
    bad: list[ThumbExample] = []
    for row in chosen_comparisons(conn, bound, **window):
        if not shared((row.left_groups, row.right_groups), "comparison", skipped):
            continue
        left, right, choice = row.left_answer, row.right_answer, row.choice
        problem = pair_problem(row.left_prompt, row.right_prompt, left, right)
        if problem is None and choice in ("A", "B") and left == right:
            problem = "identical_answers"  # nothing to learn from which copy was picked
        if problem is not None:
            skipped[f"comparison.{problem}"] += 1
            continue
        prompt = pair_prompt(row.left_prompt, row.right_prompt)
        pid, user, cid = prompt_id(prompt), row.user_id, row.comparison_id
        if choice == "A" or choice == "B":
            side: Position = "left" if choice == "A" else "right"
            chosen, rejected = (left, right) if choice == "A" else (right, left)
            pairs.append(PreferencePair(prompt, chosen, rejected, pid, user, side, "comparison", 1.0, cid))
            continue
        ties.append(Tie(prompt, left, right, pid, user, choice, cid))
        if choice == "both_bad":
            for answer_id, text in ((row.left_answer_id, left), (row.right_answer_id, right)):
                bad.append(ThumbExample(prompt, text, False, (), pid, user, "both_bad", 1.0, answer_id))
    return pairs, ties, bad


def _votes(
    conn: sqlite3.Connection, bound: TableMark, window: Window, skipped: Counter[str]
) -> list[ThumbExample]:
    """Each vote's value as of vote event `bound` (its latest event then), oldest first."""
    thumbs = []
    for row in current_votes(conn, bound, **window):
        if not shared((row.passage_groups,), "vote", skipped):
            continue
        problem = thumb_problem(row.value, row.prompt, row.answer)
        if problem is not None:
            skipped[f"vote.{problem}"] += 1
            continue
        thumbs.append(
            ThumbExample(
                row.prompt, row.answer, row.value == "up", row.reasons, prompt_id(row.prompt), row.user_id,
                "vote", 1.0, row.answer_id,
            )
        )  # fmt: skip
    return thumbs


def _corrections(
    conn: sqlite3.Connection, bound: TableMark, window: Window, skipped: Counter[str]
) -> list[Demonstration]:
    """The newest correction of each (answer, user) in the window, oldest first (feedback.export's rule)."""
    demonstrations = []
    for row in correction_rows(conn, bound, **window):
        if not shared((row.passage_groups,), "correction", skipped):
            continue
        if row.superseded or not row.prompt:
            skipped["correction.superseded" if row.superseded else "correction.no_prompt"] += 1
            continue
        demonstrations.append(
            Demonstration(
                row.prompt, row.text, prompt_id(row.prompt), "correction", row.user_id,
                answer_id=row.answer_id, corrected=row.answer,
            )
        )  # fmt: skip
    return demonstrations
