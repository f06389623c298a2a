"""Side-by-side comparisons: two answers to the same question shown as left and right, then a choice.

- Created when the pair is shown (`create`), chosen later (`choose`): a pair shown but never chosen
  is kept, so the share of abandoned comparisons can be measured.
- Both answers must exist, differ, and answer the same question (the same last user turn). They may
  come from two model versions, or from one version sampled twice (other temperature or seed): the
  reward model learns from both kinds, the version statistics use the first kind only.
- `left_answer_id` is the answer shown on the left; choice `A` means left, `B` right, `tie` both
  equally good, `both_bad` neither acceptable.
- A choice is final. Choosing again with the same choice is an idempotent retry (the stored
  comparison, unchanged, comes back); a different choice raises AlreadyChosen. Allowing changes would
  let a judgment made after the model names were revealed overwrite the blind one.
- A comparison belongs to the user it was shown to: anyone else choosing gets ComparisonNotFound
  (not a 403, so comparison ids of other users are not confirmed).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from feedback.answers import answer_row
from feedback.connection import first_row, rows
from feedback.errors import AlreadyChosen, ComparisonNotFound, InvalidRecord
from feedback.filters import time_window, where
from feedback.validation import check_id, fail


class Choice(StrEnum):
    A = "A"  # the left answer is better
    B = "B"  # the right answer is better
    TIE = "tie"
    BOTH_BAD = "both_bad"


@dataclass(frozen=True)
class Comparison:
    comparison_id: str
    user_id: str
    left_answer_id: str
    right_answer_id: str
    created_at: str
    choice: Choice | None = None
    chosen_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "choice": None if self.choice is None else self.choice.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        choice = data["choice"]
        return cls(**{**data, "choice": None if choice is None else Choice(choice)})


def check_choice(choice: Any) -> Choice:
    try:
        return Choice(choice)
    except ValueError:
        raise fail("comparison", "choice", f"one of {[c.value for c in Choice]}", choice) from None


def _last_question(messages_json: str) -> str | None:
    turns = [m.get("content", "") for m in json.loads(messages_json) if m.get("role") == "user"]
    return turns[-1].strip() if turns else None


def create(
    conn: sqlite3.Connection,
    comparison_id: str,
    user_id: str,
    left_answer_id: str,
    right_answer_id: str,
    now: str,
) -> Comparison:
    """Record the pair as shown (inside a write transaction). AnswerNotFound for an unknown answer,
    InvalidRecord when the two ids are the same or the answers answer different questions."""
    for name, value in (
        ("comparison_id", comparison_id),
        ("user_id", user_id),
        ("left_answer_id", left_answer_id),
        ("right_answer_id", right_answer_id),
    ):
        check_id("comparison", name, value)
    if left_answer_id == right_answer_id:
        raise InvalidRecord(
            f"comparison: left and right are the same answer {left_answer_id!r}; compare two answers"
        )
    left = _last_question(answer_row(conn, left_answer_id, "messages")["messages"])
    right = _last_question(answer_row(conn, right_answer_id, "messages")["messages"])
    if left != right:
        raise InvalidRecord(
            f"comparison: answers {left_answer_id!r} and {right_answer_id!r} answer different questions "
            f"({left!r} vs {right!r}); compare two answers to the same question"
        )
    conn.execute(
        "INSERT INTO comparisons (comparison_id, user_id, left_answer_id, right_answer_id, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (comparison_id, user_id, left_answer_id, right_answer_id, now),
    )
    return Comparison(comparison_id, user_id, left_answer_id, right_answer_id, now)


def get(conn: sqlite3.Connection, comparison_id: str) -> Comparison:
    row = first_row(conn, "SELECT * FROM comparisons WHERE comparison_id = ?", (comparison_id,))
    if row is None:
        raise ComparisonNotFound(f"no comparison with id {comparison_id!r}; create it when the pair is shown")
    return Comparison.from_dict(row)


def choose(
    conn: sqlite3.Connection, comparison_id: str, user_id: str, choice: Choice, now: str
) -> Comparison:
    """Record the user's choice (inside a write transaction); see the module docstring for the rules."""
    stored = get(conn, comparison_id)
    if stored.user_id != user_id:
        raise ComparisonNotFound(f"no comparison with id {comparison_id!r} shown to {user_id!r}")
    if stored.choice is not None:
        if stored.choice is choice:
            return stored
        raise AlreadyChosen(
            f"comparison {comparison_id!r} was already decided as {stored.choice.value!r} at "
            f"{stored.chosen_at}; a choice is final (show a new comparison to judge again)"
        )
    conn.execute(
        "UPDATE comparisons SET choice = ?, chosen_at = ? WHERE comparison_id = ?",
        (choice.value, now, comparison_id),
    )
    return Comparison(**{**asdict(stored), "choice": choice, "chosen_at": now})


def listing(
    conn: sqlite3.Connection,
    user_id: str | None,
    since: str | None,
    until: str | None,
    decided: bool | None,
    limit: int,
    offset: int,
) -> list[Comparison]:
    """Comparisons shown in [since, until), newest first; `decided` True/False keeps chosen/open ones."""
    clauses, params = time_window("created_at", since, until)
    if user_id is not None:
        clauses.append("user_id = ?")
        params.append(user_id)
    if decided is not None:
        clauses.append("choice IS NOT NULL" if decided else "choice IS NULL")
    sql = f"SELECT * FROM comparisons{where(clauses)} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
    return [Comparison.from_dict(row) for row in rows(conn, sql, [*params, limit, offset])]


def outcomes(conn: sqlite3.Connection, since: str | None, until: str | None) -> list[tuple[str, str, str]]:
    """(left model version, right model version, choice) of the chosen comparisons shown in the window."""
    clauses, params = time_window("c.created_at", since, until)
    sql = (
        "SELECT l.model_version, r.model_version, c.choice FROM comparisons c "
        "JOIN answers l ON l.answer_id = c.left_answer_id "
        "JOIN answers r ON r.answer_id = c.right_answer_id "
        f"{where(['c.choice IS NOT NULL', *clauses])} ORDER BY c.created_at, c.rowid"
    )
    return [(left, right, choice) for left, right, choice in conn.execute(sql, params)]
