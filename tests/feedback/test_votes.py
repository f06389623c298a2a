"""Votes: values, reasons, comments, one current vote per (answer, user), history of every change."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from feedback import Store
from feedback.errors import AnswerNotFound, FeedbackErrorCode, InvalidInput, InvalidRecord
from feedback.votes import MAX_COMMENT_CHARS, Reason, Vote, VoteValue
from tests.feedback.factory import FakeClock


def test_a_vote_round_trips(answered: Store) -> None:
    vote = answered.vote("a-1", "u-bob", "down", reasons=["outdated", "incorrect"], comment="  Old policy.\n")
    assert vote == Vote(
        answer_id="a-1",
        user_id="u-bob",
        value=VoteValue.DOWN,
        reasons=(Reason.INCORRECT, Reason.OUTDATED),  # in the order of Reason, whatever the order sent
        comment="Old policy.",  # surrounding spaces stripped
        created_at="2026-11-23T10:00:00.000Z",
        updated_at="2026-11-23T10:00:00.000Z",
    )
    assert answered.get_vote("a-1", "u-bob") == vote
    assert answered.get_vote("a-1", "u-carol") is None
    assert Vote.from_dict(vote.to_dict()) == vote


def test_changing_a_vote_updates_the_current_row_and_keeps_the_history(
    answered: Store, clock: FakeClock
) -> None:
    answered.vote("a-1", "u-bob", "up", comment="thanks")
    clock.set("2026-11-24T09:00:00.000Z")
    answered.vote("a-1", "u-bob", VoteValue.DOWN, reasons=[Reason.INCOMPLETE])
    clock.set("2026-11-25T09:00:00.000Z")
    current = answered.vote("a-1", "u-bob", "none")  # withdrawn

    assert current.value is VoteValue.NONE and current.reasons == () and current.comment is None
    assert current.created_at == "2026-11-23T10:00:00.000Z"  # the first vote's time stays
    assert current.updated_at == "2026-11-25T09:00:00.000Z"
    assert answered.list_votes(answer_id="a-1") == [current]  # one current row
    history = answered.vote_history("a-1")
    assert [(e.value, e.reasons, e.comment, e.created_at) for e in history] == [
        (VoteValue.UP, (), "thanks", "2026-11-23T10:00:00.000Z"),
        (VoteValue.DOWN, (Reason.INCOMPLETE,), None, "2026-11-24T09:00:00.000Z"),
        (VoteValue.NONE, (), None, "2026-11-25T09:00:00.000Z"),
    ]
    assert [e.event_id for e in history] == sorted(e.event_id for e in history)


def test_repeating_the_current_vote_writes_nothing(answered: Store) -> None:
    first = answered.vote("a-1", "u-bob", "down", reasons=["incorrect", "unsafe"])
    again = answered.vote("a-1", "u-bob", "down", reasons=["unsafe", "incorrect", "unsafe"])  # same set
    assert again == first
    assert len(answered.vote_history("a-1")) == 1
    answered.vote("a-1", "u-bob", "down", reasons=["unsafe"])  # fewer reasons is a change
    assert len(answered.vote_history("a-1")) == 2


def test_votes_of_several_users_are_separate(answered: Store) -> None:
    answered.vote("a-1", "u-bob", "up")
    answered.vote("a-1", "u-carol", "down", reasons=["too_long"])
    answered.vote("a-2", "u-bob", "down")
    assert {(v.user_id, v.value) for v in answered.list_votes(answer_id="a-1")} == {
        ("u-bob", VoteValue.UP),
        ("u-carol", VoteValue.DOWN),
    }
    assert {v.answer_id for v in answered.list_votes(user_id="u-bob")} == {"a-1", "a-2"}
    assert [e.user_id for e in answered.vote_history("a-1", user_id="u-carol")] == ["u-carol"]
    assert [v.answer_id for v in answered.list_votes(user_id="u-bob", limit=1)] == ["a-2"]  # newest first


def test_voting_on_an_unknown_answer_is_answer_not_found(answered: Store) -> None:
    with pytest.raises(AnswerNotFound, match="'nope'") as info:
        answered.vote("nope", "u-bob", "up")
    assert info.value.code is FeedbackErrorCode.ANSWER_NOT_FOUND
    assert answered.list_votes() == []


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"value": "maybe"}, "value"),
    ({"value": 1}, "value"),
    ({"value": "up", "reasons": ["incorrect"]}, "thumbs down only"),
    ({"value": "none", "reasons": ["incorrect"]}, "thumbs down only"),
    ({"value": "down", "reasons": ["boring"]}, "reasons"),
    ({"value": "down", "reasons": "incorrect"}, "reasons"),  # a bare string is not a list
    ({"value": "down", "comment": "x" * (MAX_COMMENT_CHARS + 1)}, "at most 2000"),
    ({"value": "down", "comment": 5}, "comment"),
    ({"value": "none", "comment": "why"}, "withdrawn"),
    ({"value": "up", "user_id": ""}, "user_id"),
    ({"value": "up", "user_id": " padded "}, "user_id"),
]


@pytest.mark.parametrize(("kwargs", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_votes_are_rejected_and_write_nothing(
    answered: Store, kwargs: dict[str, Any], message: str
) -> None:
    kwargs = {"user_id": "u-bob", **kwargs}
    with pytest.raises(InvalidRecord, match=message) as info:
        answered.vote("a-1", kwargs.pop("user_id"), kwargs.pop("value"), **kwargs)
    assert isinstance(info.value, InvalidInput)
    assert info.value.code is FeedbackErrorCode.INVALID_RECORD
    assert answered.list_votes() == [] and answered.vote_history("a-1") == []


def test_no_reasons_may_be_sent_as_none(answered: Store) -> None:
    assert answered.vote("a-1", "u-bob", "up", reasons=None).reasons == ()  # type: ignore[arg-type]


def test_comment_limits(answered: Store) -> None:
    assert (
        answered.vote("a-1", "u-bob", "up", comment="x" * MAX_COMMENT_CHARS).comment
        == "x" * MAX_COMMENT_CHARS
    )
    assert answered.vote("a-1", "u-bob", "up", comment="   ").comment is None  # blank is no comment
    assert answered.vote("a-1", "u-bob", "down", comment='ünïcødé, "quotes"\nand lines').comment is not None


def test_the_schema_itself_refuses_inconsistent_votes(answered: Store) -> None:
    conn = answered._db.conn
    insert = (
        "INSERT INTO votes (answer_id, user_id, value, reasons, comment, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, 't', 't')"
    )
    for values in [
        ("a-1", "u", "up", '["incorrect"]', None),  # reasons on a thumbs up
        ("a-1", "u", "meh", "[]", None),
        ("a-1", "u", "none", "[]", "a comment"),
        ("a-1", "u", "down", "not json", None),
        ("missing", "u", "up", "[]", None),  # foreign key to answers
    ]:
        with pytest.raises(sqlite3.IntegrityError), conn:
            conn.execute(insert, values)
    with pytest.raises(sqlite3.IntegrityError), conn:  # an event needs its vote
        conn.execute(
            "INSERT INTO vote_events (answer_id, user_id, value, reasons, created_at) VALUES (?, ?, ?, ?, ?)",
            ("a-1", "u-nobody", "up", "[]", "t"),
        )
