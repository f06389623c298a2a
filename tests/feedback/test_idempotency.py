"""Idempotency keys: a retried write is stored once and answered with the first result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from feedback import Store
from feedback.errors import (
    AnswerNotFound,
    ConflictError,
    FeedbackErrorCode,
    IdempotencyConflict,
    InvalidRecord,
)
from feedback.votes import VoteValue
from tests.feedback.factory import FakeClock, make_record


def _count(store: Store, table: str) -> int:
    return int(store._db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_a_retried_vote_is_stored_once(answered: Store) -> None:
    first = answered.vote("a-1", "u-bob", "down", reasons=["incorrect"], idempotency_key="k1")
    retry = answered.vote("a-1", "u-bob", "down", reasons=["incorrect"], idempotency_key="k1")
    assert retry == first
    assert len(answered.vote_history("a-1")) == 1
    assert _count(answered, "idempotency_keys") == 1


def test_a_retry_gets_the_first_result_even_after_later_changes(answered: Store, clock: FakeClock) -> None:
    first = answered.vote("a-1", "u-bob", "down", idempotency_key="click-1")
    clock.set("2026-11-24T00:00:00.000Z")
    later = answered.vote("a-1", "u-bob", "up", idempotency_key="click-2")
    retry = answered.vote(
        "a-1", "u-bob", "down", idempotency_key="click-1"
    )  # a late retry of the first click
    assert retry == first
    assert answered.get_vote("a-1", "u-bob") == later  # ... which did not undo the second one
    assert [e.value for e in answered.vote_history("a-1")] == [VoteValue.DOWN, VoteValue.UP]


def test_the_same_payload_sent_differently_is_the_same_request(answered: Store) -> None:
    first = answered.vote(
        "a-1", "u-bob", "down", reasons=["unsafe", "incorrect"], comment="x ", idempotency_key="k"
    )
    assert (
        answered.vote(
            "a-1", "u-bob", VoteValue.DOWN, reasons=("incorrect", "unsafe"), comment="x", idempotency_key="k"
        )
        == first
    )


WRITES: dict[str, Callable[[Store, str, str], Any]] = {
    "vote": lambda s, key, text: s.vote("a-1", "u-bob", "down", comment=text, idempotency_key=key),
    "correction": lambda s, key, text: s.add_correction("a-1", "u-bob", text, idempotency_key=key),
    "audit": lambda s, key, text: s.audit("u-bob", "note", "a-1", {"text": text}, idempotency_key=key),
}
TABLES = {"vote": "vote_events", "correction": "corrections", "audit": "audit_events"}


@pytest.mark.parametrize("endpoint", sorted(WRITES))
def test_same_key_different_payload_is_a_conflict_and_writes_nothing(answered: Store, endpoint: str) -> None:
    write = WRITES[endpoint]
    first = write(answered, "k1", "first")
    assert write(answered, "k1", "first") == first
    with pytest.raises(IdempotencyConflict, match="'k1'") as info:
        write(answered, "k1", "second")
    assert isinstance(info.value, ConflictError)
    assert info.value.code is FeedbackErrorCode.IDEMPOTENCY_CONFLICT
    assert _count(answered, TABLES[endpoint]) == 1
    write(answered, "k2", "second")  # a new key is a new action
    assert _count(answered, TABLES[endpoint]) == 2


def test_comparisons_and_choices_are_idempotent(answered: Store) -> None:
    shown = answered.create_comparison("u-bob", "a-1", "a-2", idempotency_key="show-1")
    assert answered.create_comparison("u-bob", "a-1", "a-2", idempotency_key="show-1") == shown
    assert len(answered.list_comparisons()) == 1
    with pytest.raises(IdempotencyConflict):
        answered.create_comparison("u-bob", "a-2", "a-1", idempotency_key="show-1")  # other positions
    chosen = answered.choose(shown.comparison_id, "u-bob", "A", idempotency_key="choose-1")
    assert answered.choose(shown.comparison_id, "u-bob", "A", idempotency_key="choose-1") == chosen
    with pytest.raises(IdempotencyConflict):
        answered.choose(shown.comparison_id, "u-bob", "B", idempotency_key="choose-1")


def test_keys_are_scoped_per_user_and_endpoint(answered: Store) -> None:
    answered.vote("a-1", "u-bob", "up", idempotency_key="k")
    answered.vote("a-1", "u-carol", "down", idempotency_key="k")  # another user, same key: no conflict
    answered.add_correction("a-1", "u-bob", "text", idempotency_key="k")  # another endpoint
    assert {v.user_id: v.value for v in answered.list_votes()} == {
        "u-bob": VoteValue.UP,
        "u-carol": VoteValue.DOWN,
    }
    assert len(answered.list_corrections()) == 1


def test_a_failed_write_leaves_no_key(store: Store) -> None:
    with pytest.raises(AnswerNotFound):
        store.vote("a-1", "u-bob", "up", idempotency_key="k")
    assert _count(store, "idempotency_keys") == 0
    store.record_answer(make_record("a-1"))
    assert store.vote("a-1", "u-bob", "up", idempotency_key="k").value is VoteValue.UP  # the retry runs


@pytest.mark.parametrize("key", ["", " k", "x" * 300, 5])
def test_malformed_keys_are_rejected(answered: Store, key: Any) -> None:
    with pytest.raises(InvalidRecord, match="idempotency_key"):
        answered.vote("a-1", "u-bob", "up", idempotency_key=key)
    assert answered.list_votes() == []


def test_old_keys_can_be_forgotten(answered: Store, clock: FakeClock) -> None:
    answered.vote("a-1", "u-bob", "up", idempotency_key="old")
    clock.set("2026-12-01T00:00:00.000Z")
    answered.vote("a-2", "u-bob", "up", idempotency_key="new")
    assert answered.forget_idempotency_keys("2026-11-30") == 1
    # the forgotten key is free again: the same key now names a new action
    assert answered.vote("a-1", "u-bob", "down", idempotency_key="old").value is VoteValue.DOWN
    with pytest.raises(IdempotencyConflict):
        answered.vote("a-2", "u-bob", "down", idempotency_key="new")
    with pytest.raises(InvalidRecord, match="before"):
        answered.forget_idempotency_keys("last week")
