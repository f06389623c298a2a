"""Corrections (demonstrations) and audit events."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from feedback import Store
from feedback.audit import AuditEvent
from feedback.corrections import MAX_CORRECTION_CHARS, Correction
from feedback.errors import AnswerNotFound, InvalidRecord
from tests.feedback.factory import FakeClock


def test_corrections_are_kept_in_full(answered: Store, clock: FakeClock) -> None:
    first = answered.add_correction("a-1", "u-bob", "  You get 25 days [1].\n")
    assert first == Correction(
        first.correction_id, "a-1", "u-bob", "You get 25 days [1].", "2026-11-23T10:00:00.000Z"
    )
    clock.set("2026-11-24T00:00:00.000Z")
    second = answered.add_correction("a-1", "u-bob", "You get 25 paid vacation days a year [1].")
    assert second.correction_id != first.correction_id
    assert answered.list_corrections(answer_id="a-1") == [second, first]  # every version, newest first
    assert answered.list_corrections(since="2026-11-24") == [second]
    assert answered.list_corrections(user_id="u-carol") == []
    assert Correction.from_dict(first.to_dict()) == first


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "non-empty"),
        ("  \n ", "non-empty"),
        (None, "string"),
        ("x" * (MAX_CORRECTION_CHARS + 1), "at most 8000"),
    ],
)
def test_invalid_corrections_are_rejected(answered: Store, text: Any, message: str) -> None:
    with pytest.raises(InvalidRecord, match=message):
        answered.add_correction("a-1", "u-bob", text)
    assert answered.list_corrections() == []


def test_a_correction_at_the_cap_is_accepted(answered: Store) -> None:
    assert (
        len(answered.add_correction("a-1", "u-bob", "x" * MAX_CORRECTION_CHARS).text) == MAX_CORRECTION_CHARS
    )


def test_correcting_an_unknown_answer_is_answer_not_found(answered: Store) -> None:
    with pytest.raises(AnswerNotFound):
        answered.add_correction("nope", "u-bob", "text")
    conn = answered._db.conn
    with pytest.raises(sqlite3.IntegrityError), conn:  # and the schema enforces it too
        conn.execute("INSERT INTO corrections VALUES ('k', 'nope', 'u', 'text', 't')")


def test_audit_events(store: Store, clock: FakeClock) -> None:
    promote = store.audit("op-alice", "model.promote", "m2", {"from": "m1", "canary_percent": 10})
    assert promote == AuditEvent(
        promote.event_id,
        "op-alice",
        "model.promote",
        "m2",
        "2026-11-23T10:00:00.000Z",
        {"canary_percent": 10, "from": "m1"},
    )
    clock.set("2026-11-24T00:00:00.000Z")
    rollback = store.audit("op-bob", "model.rollback", "m2")
    assert rollback.details == {} and rollback.event_id > promote.event_id
    assert store.list_audit_events() == [rollback, promote]
    assert store.list_audit_events(target="m2", action="model.promote") == [promote]
    assert store.list_audit_events(actor="op-bob") == [rollback]
    assert store.list_audit_events(until="2026-11-24") == [promote]
    assert AuditEvent.from_dict(promote.to_dict()) == promote


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("", "a", "t", {}), "actor"),
        (("op", "", "t", {}), "action"),
        (("op", "a", "", {}), "target"),
        (("op", "a", "t", {"x": float("nan")}), "details"),
        (("op", "a", "t", ["not", "a", "dict"]), "details"),
    ],
)
def test_invalid_audit_events_are_rejected(store: Store, args: tuple[Any, ...], field: str) -> None:
    with pytest.raises(InvalidRecord, match=field):
        store.audit(*args)
    assert store.list_audit_events() == []
