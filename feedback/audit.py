"""Audit events: who did what to which target, when, with details as a JSON object.

Generic on purpose: promotions, rollbacks, canary changes and operator overrides all log here with
their own `action` names (e.g. `model.promote`) and a `target` (a model version, an alias, an answer
id). Append-only: the store has no method that edits or deletes an event.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from feedback.connection import rows
from feedback.filters import time_window, where
from feedback.validation import check_id, check_json_object, dump_json


@dataclass(frozen=True)
class AuditEvent:
    event_id: int
    actor: str
    action: str
    target: str
    created_at: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEvent:
        return cls(**data)


def check(actor: Any, action: Any, target: Any, details: Any) -> None:
    """InvalidRecord naming the first malformed field."""
    for name, value in (("actor", actor), ("action", action), ("target", target)):
        check_id("audit", name, value)
    check_json_object("audit", "details", details)


def record(
    conn: sqlite3.Connection, actor: str, action: str, target: str, details: dict[str, Any], now: str
) -> AuditEvent:
    """Append an event (checked fields, inside a write transaction)."""
    text = dump_json(details)
    [(event_id,)] = conn.execute(
        "INSERT INTO audit_events (actor, action, target, details, created_at) VALUES (?, ?, ?, ?, ?) "
        "RETURNING event_id",
        (actor, action, target, text, now),
    ).fetchall()  # all rows: a RETURNING statement left unfinished would hold up the commit
    return AuditEvent(int(event_id), actor, action, target, now, json.loads(text))


def listing(
    conn: sqlite3.Connection,
    actor: str | None,
    action: str | None,
    target: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    offset: int,
) -> list[AuditEvent]:
    """Events in [since, until), newest first."""
    clauses, params = time_window("created_at", since, until)
    for column, value in (("actor", actor), ("action", action), ("target", target)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    sql = (
        "SELECT event_id, actor, action, target, created_at, details FROM audit_events"
        f"{where(clauses)} ORDER BY created_at DESC, event_id DESC LIMIT ? OFFSET ?"
    )
    return [
        AuditEvent.from_dict({**row, "details": json.loads(row["details"])})
        for row in rows(conn, sql, [*params, limit, offset])
    ]
