"""What the trainer reads from the store, as typed rows: chosen comparisons, current votes,
corrections, the prompts answers were generated from, how much feedback arrived since a time, and the
marks that pin a read to what a table held.

Every reader takes a connection from `Store.snapshot()`, so a caller that reads several tables (the
trainer's `load_feedback`) sees them all as of one moment, and streams its rows from the query's
cursor. A `TableMark` (from `table_marks`) bounds a reader to the rows a table held then: reading again
with the marks a run recorded takes the same rows, whatever was written since.

Rows carry the columns as stored (text as written, `passage_groups` as the JSON that
feedback.export's `restricted_groups` reads): judging which rows make sound examples (`pair_problem`,
`thumb_problem`, access groups) and turning them into examples is the reader's caller's work.
`since <= t < until` is on when the feedback was given, `model_version` on the answer (for comparisons:
either side), as in feedback.export.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from feedback.connection import rows
from feedback.export import filters
from feedback.filters import time_window, where

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "FEEDBACK_EVENTS",
    "TIME_COLUMNS",
    "ChosenComparison",
    "CorrectionRow",
    "PromptedAnswer",
    "TableMark",
    "VoteRow",
    "chosen_comparisons",
    "correction_rows",
    "count_feedback_events",
    "current_votes",
    "prompted_answers",
    "schema_version",
    "table_marks",
]

# the column that says when a row's feedback was given (its last change, for votes and comparisons)
TIME_COLUMNS = {
    "answers": "created_at",
    "votes": "updated_at",
    "vote_events": "created_at",
    "comparisons": "chosen_at",
    "corrections": "created_at",
}

# the tables whose rows are feedback events, and when each event happened
FEEDBACK_EVENTS = {"vote_events": "created_at", "comparisons": "chosen_at", "corrections": "created_at"}


# -- what a snapshot held ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TableMark:
    """A table as the snapshot saw it: its row count, largest rowid (0: empty) and newest time."""

    rows: int
    max_rowid: int
    max_time: str | None


def table_marks(conn: sqlite3.Connection) -> dict[str, TableMark]:
    """The mark of each table of `TIME_COLUMNS`, in that order."""
    marks = {}
    for table, column in TIME_COLUMNS.items():
        n, rowid, newest = conn.execute(
            f"SELECT count(*), coalesce(max(rowid), 0), max({column}) FROM {table}"
        ).fetchone()
        marks[table] = TableMark(int(n), int(rowid), newest)
    return marks


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest migration applied to the database the snapshot reads (0: none)."""
    return int(conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0)


def count_feedback_events(conn: sqlite3.Connection, since: str | None) -> int:
    """Feedback events (vote changes, side-by-side choices, corrections) recorded at or after `since`
    (compared as stored text; all of them when None)."""
    total = 0
    for table, column in FEEDBACK_EVENTS.items():
        sql = f"SELECT count(*) FROM {table} WHERE {column} IS NOT NULL"
        params: list[str] = []
        if since is not None:
            sql += f" AND {column} >= ?"
            params.append(since)
        total += int(conn.execute(sql, params).fetchone()[0])
    return total


# -- feedback rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChosenComparison:
    """A comparison with its choice and both answers: `choice` "A" picked the left answer, "B" the right
    one; `*_groups` are the answers' `passage_groups`. A refusal's prompt is ""."""

    comparison_id: str
    user_id: str
    choice: Literal["A", "B", "tie", "both_bad"]
    chosen_at: str
    left_answer_id: str
    right_answer_id: str
    left_prompt: str
    left_answer: str
    right_prompt: str
    right_answer: str
    left_groups: str
    right_groups: str


def chosen_comparisons(
    conn: sqlite3.Connection,
    bound: TableMark,
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
) -> Iterator[ChosenComparison]:
    """The comparisons chosen within `bound` (up to its rowid, chosen by its time: a choice made in the
    same millisecond after the mark would be taken too), in the order they were chosen."""
    clauses, params = filters(
        "c.chosen_at", ("l.model_version", "r.model_version"), since, until, model_version
    )
    sql = (
        "SELECT c.comparison_id, c.user_id, c.choice, c.chosen_at, c.left_answer_id, c.right_answer_id, "
        "l.prompt AS left_prompt, l.answer AS left_answer, r.prompt AS right_prompt, "
        "r.answer AS right_answer, l.passage_groups AS left_groups, r.passage_groups AS right_groups "
        "FROM comparisons c JOIN answers l ON l.answer_id = c.left_answer_id "
        "JOIN answers r ON r.answer_id = c.right_answer_id"
        f"{where(['c.choice IS NOT NULL', 'c.rowid <= ?', 'c.chosen_at <= ?', *clauses])} "
        "ORDER BY c.chosen_at, c.rowid"
    )
    found = rows(conn, sql, [bound.max_rowid, bound.max_time or "", *params])
    return (ChosenComparison(**row) for row in found)


@dataclass(frozen=True)
class VoteRow:
    """A user's vote on an answer as of a vote event: its value ("none": withdrawn), reasons and time,
    with the answer's prompt ("" for a refusal), text and `passage_groups`."""

    answer_id: str
    user_id: str
    value: Literal["up", "down", "none"]
    reasons: tuple[str, ...]
    voted_at: str
    prompt: str
    answer: str
    passage_groups: str


def current_votes(
    conn: sqlite3.Connection,
    bound: TableMark,
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
) -> Iterator[VoteRow]:
    """Each vote's value as of vote event `bound.max_rowid` (its latest event then), oldest first;
    `since`/`until` on when that event happened."""
    clauses, params = filters("e.created_at", ("a.model_version",), since, until, model_version)
    sql = (
        "SELECT e.answer_id, e.user_id, e.value, e.reasons, e.created_at AS voted_at, a.prompt, a.answer, "
        "a.passage_groups FROM vote_events e "
        "JOIN answers a USING (answer_id) WHERE e.event_id = (SELECT max(n.event_id) FROM vote_events n "
        "WHERE n.answer_id = e.answer_id AND n.user_id = e.user_id AND n.event_id <= ?)"
        f"{''.join(f' AND {c}' for c in clauses)} ORDER BY e.created_at, e.event_id"
    )
    found = rows(conn, sql, [bound.max_rowid, *params])
    return (VoteRow(**{**row, "reasons": tuple(json.loads(row["reasons"]))}) for row in found)


@dataclass(frozen=True)
class CorrectionRow:
    """A user's correction of an answer, with the answer it replaced, that answer's prompt ("" for a
    refusal) and `passage_groups`. `superseded`: the same user corrected the same answer again later,
    within the window and the bound."""

    answer_id: str
    user_id: str
    text: str
    created_at: str
    prompt: str
    answer: str
    passage_groups: str
    superseded: bool


def correction_rows(
    conn: sqlite3.Connection,
    bound: TableMark,
    *,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
) -> Iterator[CorrectionRow]:
    """The corrections up to `bound`'s rowid in the window, oldest first, each marked `superseded` or
    not (feedback.export keeps the newest of each (answer, user))."""
    clauses, params = filters("k.created_at", ("a.model_version",), since, until, model_version)
    newer, newer_params = time_window("n.created_at", since, until)
    sql = (
        "SELECT k.answer_id, k.user_id, k.text, k.created_at, a.prompt, a.answer, a.passage_groups, "
        "EXISTS (SELECT 1 FROM corrections n "
        "WHERE n.answer_id = k.answer_id AND n.user_id = k.user_id AND n.rowid <= ? AND "
        "(n.created_at > k.created_at OR (n.created_at = k.created_at AND n.rowid > k.rowid))"
        f"{''.join(f' AND {c}' for c in newer)}) AS superseded FROM corrections k JOIN answers a "
        f"USING (answer_id){where(['k.rowid <= ?', *clauses])} ORDER BY k.created_at, k.rowid"
    )
    found = rows(conn, sql, [bound.max_rowid, *newer_params, bound.max_rowid, *params])
    return (CorrectionRow(**{**row, "superseded": bool(row["superseded"])}) for row in found)


@dataclass(frozen=True)
class PromptedAnswer:
    """An answer the model generated, with the prompt it was fed and its `passage_groups`."""

    answer_id: str
    prompt: str
    model_version: str
    created_at: str
    passage_groups: str


def prompted_answers(
    conn: sqlite3.Connection, *, since: str | None = None, until: str | None = None
) -> Iterator[PromptedAnswer]:
    """The answers created in [since, until) that had a prompt (refusals have none), newest first.
    A malformed `since`/`until` raises InvalidFilter here, before any row is read."""
    clauses, params = time_window("created_at", since, until)
    clauses = ["refused = 0", "prompt <> ''", *clauses]
    sql = (
        "SELECT answer_id, prompt, model_version, created_at, passage_groups "
        f"FROM answers{where(clauses)} ORDER BY created_at DESC, rowid DESC"
    )
    return (PromptedAnswer(**row) for row in rows(conn, sql, params))
