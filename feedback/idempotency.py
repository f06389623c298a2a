"""Idempotent writes: a client may send an `idempotency_key` with any write, and a retry of that write
(same user, same endpoint, same key) is stored once and answered with the first result.

The first result is kept as JSON next to a SHA-256 of the request, inside the write's own transaction,
so a write and its key commit together or not at all: a write that failed (unknown id, conflict)
leaves no key behind and its retry runs again. The same key with a different request is a client bug
(a key reused for a new action) and raises IdempotencyConflict rather than silently answering the
old result. Keys are scoped per user and endpoint: two users, or one user's vote and correction, may
use the same key without meeting.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, Protocol, Self, TypeVar

from feedback.connection import first_row
from feedback.errors import IdempotencyConflict
from feedback.validation import check_id, dump_json


class JsonResult(Protocol):
    """A write's result that survives a JSON round trip (what a retry is answered with)."""

    def to_dict(self) -> dict[str, Any]: ...

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self: ...


R = TypeVar("R", bound=JsonResult)


def check_key(key: Any) -> None:
    """None, or an id-like string (at most 256 characters, no surrounding spaces)."""
    if key is not None:
        check_id("write", "idempotency_key", key)


def fingerprint(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(dump_json(dict(request)).encode()).hexdigest()


def run_once(
    conn: sqlite3.Connection,
    *,
    user_id: str,
    endpoint: str,
    key: str | None,
    request: Mapping[str, Any],
    result_type: type[R],
    write: Callable[[], R],
    now: str,
) -> R:
    """`write()` unless this (user, endpoint, key) already ran with the same request, whose result is
    then returned instead. Call inside the write transaction that `write` uses."""
    if key is None:
        return write()
    check_key(key)
    digest = fingerprint(request)
    stored = first_row(
        conn,
        "SELECT request_sha256, response FROM idempotency_keys "
        "WHERE user_id = ? AND endpoint = ? AND key = ?",
        (user_id, endpoint, key),
    )
    if stored is not None:
        if stored["request_sha256"] != digest:
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used by {user_id!r} for a different {endpoint} "
                "request; send a new key for a new action (e.g. a fresh uuid4 per click)"
            )
        return result_type.from_dict(json.loads(stored["response"]))
    result = write()
    conn.execute(
        "INSERT INTO idempotency_keys (user_id, endpoint, key, request_sha256, response, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (user_id, endpoint, key, digest, dump_json(result.to_dict()), now),
    )
    return result


def forget_before(conn: sqlite3.Connection, before: str) -> int:
    """Drop the keys first used before `before` (canonical time); retries older than that run again."""
    return conn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (before,)).rowcount
