"""Looking up a stored answer by id: every vote, correction and comparison names one that must exist."""

from __future__ import annotations

import sqlite3
from typing import Any

from feedback.connection import first_row
from feedback.errors import AnswerNotFound


def answer_row(conn: sqlite3.Connection, answer_id: str, columns: str = "*") -> dict[str, Any]:
    """The `answers` row (the named columns); AnswerNotFound when no answer has this id."""
    row = first_row(conn, f"SELECT {columns} FROM answers WHERE answer_id = ?", (answer_id,))
    if row is None:
        raise AnswerNotFound(
            f"no answer with id {answer_id!r}; check the id, or that the service and this reader use "
            "the same data directory"
        )
    return row
