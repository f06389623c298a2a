"""Listing filters shared by every table: a half-open time window and a page, checked and turned into
SQL clauses. Malformed values raise InvalidFilter with what to send instead."""

from __future__ import annotations

from typing import Any

from feedback.errors import InvalidFilter
from feedback.timestamps import normalize_timestamp

MAX_PAGE = 1000
MAX_OFFSET = 2**63 - 1  # SQLite's largest INTEGER


def time_window(column: str, since: str | None, until: str | None) -> tuple[list[str], list[Any]]:
    """Clauses for `since <= column < until` (either bound optional; any ISO-8601 date or time, UTC
    when it has no timezone) and their parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for name, value, op in (("since", since, ">="), ("until", until, "<")):
        if value is None:
            continue
        try:
            params.append(normalize_timestamp(value))
        except (ValueError, AttributeError) as exc:
            raise InvalidFilter(f"{name}: {exc}") from None
        clauses.append(f"{column} {op} ?")
    return clauses, params


def check_page(limit: int, offset: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_PAGE:
        raise InvalidFilter(f"limit must be an integer in [0, {MAX_PAGE}], got {limit!r}; page with offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_OFFSET:
        raise InvalidFilter(f"offset must be an integer in [0, {MAX_OFFSET}], got {offset!r}")


def where(clauses: list[str]) -> str:
    return " WHERE " + " AND ".join(clauses) if clauses else ""
