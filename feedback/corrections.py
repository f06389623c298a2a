"""Corrections: the answer it should have been, written by a user (a demonstration for SFT).

Append-only: a user may correct the same answer again, and every version is kept; the SFT export
takes the newest correction of each (answer, user), so fixing a typo does not make two examples.
The text has its surrounding spaces stripped and must hold 1 to MAX_CORRECTION_CHARS characters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from feedback.answers import answer_row
from feedback.connection import rows
from feedback.filters import time_window, where
from feedback.validation import check_id, check_text

MAX_CORRECTION_CHARS = 8000


@dataclass(frozen=True)
class Correction:
    correction_id: str
    answer_id: str
    user_id: str
    text: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))  # flat fields: no deep copy needed

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Correction:
        return cls(**data)


def normalize_text(text: Any) -> str:
    """The correction as stored, or InvalidRecord saying what to fix."""
    check_text("correction", "text", text)
    stripped: str = text.strip()
    check_text("correction", "text", stripped, max_chars=MAX_CORRECTION_CHARS)
    return stripped


def add(
    conn: sqlite3.Connection, correction_id: str, answer_id: str, user_id: str, text: str, now: str
) -> Correction:
    """Store a correction (normalized text, inside a write transaction); AnswerNotFound for an unknown
    answer."""
    check_id("correction", "answer_id", answer_id)
    check_id("correction", "user_id", user_id)
    answer_row(conn, answer_id, "answer_id")
    conn.execute(
        "INSERT INTO corrections (correction_id, answer_id, user_id, text, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (correction_id, answer_id, user_id, text, now),
    )
    return Correction(correction_id, answer_id, user_id, text, now)


def listing(
    conn: sqlite3.Connection,
    answer_id: str | None,
    user_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
) -> list[Correction]:
    """Corrections written in [since, until), newest first."""
    clauses, params = time_window("created_at", since, until)
    for column, value in (("answer_id", answer_id), ("user_id", user_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    sql = f"SELECT * FROM corrections{where(clauses)} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
    return [Correction.from_dict(row) for row in rows(conn, sql, [*params, limit, offset])]
