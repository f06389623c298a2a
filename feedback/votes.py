"""Thumbs up/down on an answer: one current vote per (answer, user), and every change kept.

- `value` is `up`, `down`, or `none` (the vote withdrawn). Withdrawing keeps the row, with value
  `none`, so the vote's first time and its history stay attached to it.
- `reasons` are chips from a fixed set, allowed on a thumbs down only: they say what was wrong, and a
  thumbs up with "incorrect" would be a contradiction that the statistics could not interpret. Stored
  deduplicated in the order of `Reason`, so the same chips in any order are the same vote (None or
  an empty list: no reasons).
- `comment` is free text (surrounding spaces stripped, blank means none, at most MAX_COMMENT_CHARS),
  allowed on up and down, not on a withdrawal.
- Every call that changes the vote updates the current row and appends a `vote_events` row in the same
  transaction; a call that changes nothing (a double click) writes nothing, so the history is the list
  of the user's changes and its last event always equals the current vote.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from feedback.answers import answer_row
from feedback.connection import first_row, rows
from feedback.errors import InvalidRecord
from feedback.filters import time_window, where
from feedback.validation import check_id, dump_json, fail

MAX_COMMENT_CHARS = 2000


class VoteValue(StrEnum):
    UP = "up"
    DOWN = "down"
    NONE = "none"  # withdrawn


class Reason(StrEnum):
    """What was wrong with an answer (thumbs down only)."""

    INCORRECT = "incorrect"
    OUTDATED = "outdated"
    INCOMPLETE = "incomplete"
    NOT_HELPFUL = "not_helpful"
    WRONG_SOURCE = "wrong_source"
    TOO_LONG = "too_long"
    UNSAFE = "unsafe"


_REASON_ORDER = {reason: i for i, reason in enumerate(Reason)}


@dataclass(frozen=True)
class Vote:
    """A user's current vote on an answer. `created_at`: their first vote on it; `updated_at`: when
    the current value was given."""

    answer_id: str
    user_id: str
    value: VoteValue
    reasons: tuple[Reason, ...]
    comment: str | None
    created_at: str
    updated_at: str

    def to_dict(self) -> dict[str, Any]:
        # the fields are flat, so a shallow copy does: dataclasses.asdict deep-copies each one, and this
        # runs twice per vote on the feedback hot path (stored with the idempotency key, and answered)
        return {**vars(self), "value": self.value.value, "reasons": [r.value for r in self.reasons]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vote:
        return cls(
            **{**data, "value": VoteValue(data["value"]), "reasons": tuple(map(Reason, data["reasons"]))}
        )


@dataclass(frozen=True)
class VoteEvent:
    """One change of a vote, in the order they happened (`event_id` grows)."""

    event_id: int
    answer_id: str
    user_id: str
    value: VoteValue
    reasons: tuple[Reason, ...]
    comment: str | None
    created_at: str


def normalize(value: Any, reasons: Any, comment: Any) -> tuple[VoteValue, tuple[Reason, ...], str | None]:
    """The vote as stored, or InvalidRecord saying what to fix."""
    try:
        vote_value = VoteValue(value)
    except ValueError:
        raise fail("vote", "value", f"one of {[v.value for v in VoteValue]}", value) from None
    if reasons is None:
        reasons = ()
    if isinstance(reasons, str) or not isinstance(reasons, Iterable):
        raise fail("vote", "reasons", "a list of reason names", reasons)
    chips: set[Reason] = set()
    for reason in reasons:
        try:
            chips.add(Reason(reason))
        except ValueError:
            raise fail("vote", "reasons", f"a list drawn from {[r.value for r in Reason]}", reason) from None
    if chips and vote_value is not VoteValue.DOWN:
        raise InvalidRecord(
            f"vote.reasons are for a thumbs down only (they say what was wrong), got {sorted(chips)} "
            f"with {vote_value.value!r}; send them with 'down' or leave them out"
        )
    if comment is not None and not isinstance(comment, str):
        raise fail("vote", "comment", "a string or None", comment)
    text = (comment or "").strip() or None
    if text is not None and len(text) > MAX_COMMENT_CHARS:
        raise InvalidRecord(
            f"vote.comment must be at most {MAX_COMMENT_CHARS} characters, got {len(text)}; shorten it"
        )
    if text is not None and vote_value is VoteValue.NONE:
        raise InvalidRecord("vote.comment cannot come with a withdrawn vote ('none'); leave it out")
    return vote_value, tuple(sorted(chips, key=_REASON_ORDER.__getitem__)), text


def _vote(row: Mapping[str, Any]) -> Vote:
    return Vote.from_dict({**row, "reasons": json.loads(row["reasons"])})


def get(conn: sqlite3.Connection, answer_id: str, user_id: str) -> Vote | None:
    row = first_row(conn, "SELECT * FROM votes WHERE answer_id = ? AND user_id = ?", (answer_id, user_id))
    return None if row is None else _vote(row)


def cast(
    conn: sqlite3.Connection,
    answer_id: str,
    user_id: str,
    value: VoteValue,
    reasons: tuple[Reason, ...],
    comment: str | None,
    now: str,
) -> Vote:
    """Set the user's current vote and log the change (call with normalized values, inside a write
    transaction). AnswerNotFound when the answer does not exist."""
    check_id("vote", "answer_id", answer_id)
    check_id("vote", "user_id", user_id)
    answer_row(conn, answer_id, "answer_id")
    current = get(conn, answer_id, user_id)
    if current is not None and (current.value, current.reasons, current.comment) == (value, reasons, comment):
        return current
    stored = (answer_id, user_id, value.value, dump_json([r.value for r in reasons]), comment)
    conn.execute(
        "INSERT INTO votes (answer_id, user_id, value, reasons, comment, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (answer_id, user_id) DO UPDATE SET value = excluded.value, "
        "reasons = excluded.reasons, comment = excluded.comment, updated_at = excluded.updated_at",
        (*stored, now, now),
    )
    conn.execute(
        "INSERT INTO vote_events (answer_id, user_id, value, reasons, comment, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (*stored, now),
    )
    created_at = current.created_at if current is not None else now
    return Vote(answer_id, user_id, value, reasons, comment, created_at, now)


def history(conn: sqlite3.Connection, answer_id: str, user_id: str | None = None) -> list[VoteEvent]:
    """The changes of the votes on an answer (of one user, or of all), oldest first."""
    sql, params = "SELECT * FROM vote_events WHERE answer_id = ?", [answer_id]
    if user_id is not None:
        sql, params = sql + " AND user_id = ?", [*params, user_id]
    return [
        VoteEvent(
            row["event_id"],
            row["answer_id"],
            row["user_id"],
            VoteValue(row["value"]),
            tuple(map(Reason, json.loads(row["reasons"]))),
            row["comment"],
            row["created_at"],
        )
        for row in rows(conn, sql + " ORDER BY event_id", params)
    ]


def listing(
    conn: sqlite3.Connection, answer_id: str | None, user_id: str | None, limit: int, offset: int
) -> list[Vote]:
    """Current votes, most recently changed first."""
    clauses, params = [], []
    for column, value in (("answer_id", answer_id), ("user_id", user_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT * FROM votes{where(clauses)} ORDER BY updated_at DESC, rowid DESC LIMIT ? OFFSET ?"
    return [_vote(row) for row in rows(conn, sql, [*params, limit, offset])]


def _served(since: str | None, until: str | None, model_version: str | None) -> tuple[str, list[Any]]:
    """Votes on answers served in [since, until) by `model_version` (the statistics' window)."""
    clauses, params = time_window("a.created_at", since, until)
    if model_version is not None:
        clauses.append("a.model_version = ?")
        params.append(model_version)
    return "".join(f" AND {c}" for c in clauses), params


def thumbs_counts(
    conn: sqlite3.Connection, since: str | None, until: str | None, model_version: str | None
) -> list[tuple[str, str, int, int]]:
    """(model version, day the answer was served, thumbs up, thumbs down) of the current votes."""
    extra, params = _served(since, until, model_version)
    sql = (
        "SELECT a.model_version, substr(a.created_at, 1, 10) AS day, "
        "sum(v.value = 'up'), sum(v.value = 'down') FROM votes v JOIN answers a USING (answer_id) "
        f"WHERE v.value IN ('up', 'down'){extra} GROUP BY a.model_version, day ORDER BY a.model_version, day"
    )
    return [(m, d, int(up), int(down)) for m, d, up, down in conn.execute(sql, params)]


def down_reasons(
    conn: sqlite3.Connection, since: str | None, until: str | None, model_version: str | None
) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(model version, reasons) of each current thumbs down."""
    extra, params = _served(since, until, model_version)
    sql = (
        "SELECT a.model_version, v.reasons FROM votes v JOIN answers a USING (answer_id) "
        f"WHERE v.value = 'down'{extra}"
    )
    for model, reasons in conn.execute(sql, params):
        yield model, tuple(json.loads(reasons))
