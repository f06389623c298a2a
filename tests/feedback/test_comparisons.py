"""Comparisons: a pair shown left/right, then one final choice."""

from __future__ import annotations

import sqlite3

import pytest

from feedback import Store
from feedback.comparisons import Choice, Comparison
from feedback.errors import (
    AlreadyChosen,
    AnswerNotFound,
    ComparisonNotFound,
    ConflictError,
    FeedbackErrorCode,
    InvalidRecord,
    NotFoundError,
)
from tests.feedback.factory import FakeClock, make_record


def test_create_then_choose(answered: Store, clock: FakeClock) -> None:
    shown = answered.create_comparison("u-bob", "a-2", "a-1")  # a-2 on the left
    assert shown.left_answer_id == "a-2" and shown.right_answer_id == "a-1"
    assert shown.choice is None and shown.chosen_at is None
    assert shown.created_at == "2026-11-23T10:00:00.000Z"
    assert len(shown.comparison_id) == 32
    assert answered.get_comparison(shown.comparison_id) == shown

    clock.set("2026-11-23T10:05:00.000Z")
    chosen = answered.choose(shown.comparison_id, "u-bob", "B")
    assert chosen.choice is Choice.B and chosen.chosen_at == "2026-11-23T10:05:00.000Z"
    assert answered.get_comparison(shown.comparison_id) == chosen
    assert Comparison.from_dict(chosen.to_dict()) == chosen


@pytest.mark.parametrize("choice", ["A", "B", "tie", "both_bad", Choice.TIE])
def test_every_choice_is_accepted(answered: Store, choice: str) -> None:
    shown = answered.create_comparison("u-bob", "a-1", "a-2")
    assert answered.choose(shown.comparison_id, "u-bob", choice).choice == Choice(choice)


def test_choosing_the_same_again_is_a_no_op_and_a_different_choice_is_refused(
    answered: Store, clock: FakeClock
) -> None:
    shown = answered.create_comparison("u-bob", "a-1", "a-2")
    first = answered.choose(shown.comparison_id, "u-bob", "A")
    clock.set("2026-11-23T11:00:00.000Z")
    assert answered.choose(shown.comparison_id, "u-bob", "A") == first  # chosen_at unchanged
    with pytest.raises(AlreadyChosen, match="already decided as 'A'") as info:
        answered.choose(shown.comparison_id, "u-bob", "tie")
    assert isinstance(info.value, ConflictError)
    assert info.value.code is FeedbackErrorCode.ALREADY_CHOSEN
    assert answered.get_comparison(shown.comparison_id) == first


def test_unknown_ids_are_not_found(answered: Store) -> None:
    with pytest.raises(AnswerNotFound, match="'a-404'"):
        answered.create_comparison("u-bob", "a-1", "a-404")
    with pytest.raises(ComparisonNotFound) as info:
        answered.choose("c-404", "u-bob", "A")
    assert isinstance(info.value, NotFoundError)
    assert info.value.code is FeedbackErrorCode.COMPARISON_NOT_FOUND
    with pytest.raises(ComparisonNotFound):
        answered.get_comparison("c-404")
    assert answered.list_comparisons() == []


def test_another_user_cannot_choose_and_learns_nothing(answered: Store) -> None:
    shown = answered.create_comparison("u-bob", "a-1", "a-2")
    with pytest.raises(ComparisonNotFound, match="shown to 'u-eve'"):
        answered.choose(shown.comparison_id, "u-eve", "A")
    assert answered.get_comparison(shown.comparison_id).choice is None


def test_invalid_comparisons_are_rejected(answered: Store) -> None:
    answered.record_answer(make_record("a-3", messages=[{"role": "user", "content": "Where is the VPN?"}]))
    with pytest.raises(InvalidRecord, match="same answer"):
        answered.create_comparison("u-bob", "a-1", "a-1")
    with pytest.raises(InvalidRecord, match="different questions"):
        answered.create_comparison("u-bob", "a-1", "a-3")
    with pytest.raises(InvalidRecord, match="user_id"):
        answered.create_comparison("", "a-1", "a-2")
    shown = answered.create_comparison("u-bob", "a-1", "a-2")
    with pytest.raises(InvalidRecord, match="choice"):
        answered.choose(shown.comparison_id, "u-bob", "left")
    assert answered.list_comparisons() == [shown]


def test_same_question_with_another_history_or_version_is_comparable(answered: Store) -> None:
    # one version sampled twice (temperature), and an answer whose earlier turns differ
    answered.record_answer(make_record("a-3", model_version="m1", generation={"temperature": 1.0}))
    answered.record_answer(
        make_record(
            "a-4",
            messages=[{"role": "user", "content": "  How many vacation days do I get? ünïcødé ✓"}],
        )
    )
    assert answered.create_comparison("u-bob", "a-1", "a-3").right_answer_id == "a-3"
    assert answered.create_comparison("u-bob", "a-4", "a-2").left_answer_id == "a-4"


def test_list_comparisons_filters(answered: Store, clock: FakeClock) -> None:
    first = answered.create_comparison("u-bob", "a-1", "a-2")
    clock.set("2026-11-24T10:00:00.000Z")
    second = answered.create_comparison("u-carol", "a-2", "a-1")
    answered.choose(second.comparison_id, "u-carol", "tie")
    ids = [c.comparison_id for c in answered.list_comparisons()]
    assert ids == [second.comparison_id, first.comparison_id]
    assert [c.comparison_id for c in answered.list_comparisons(decided=False)] == [first.comparison_id]
    assert [c.comparison_id for c in answered.list_comparisons(decided=True)] == [second.comparison_id]
    assert [c.comparison_id for c in answered.list_comparisons(user_id="u-bob")] == [first.comparison_id]
    assert [c.comparison_id for c in answered.list_comparisons(since="2026-11-24")] == [second.comparison_id]
    assert [c.comparison_id for c in answered.list_comparisons(until="2026-11-24")] == [first.comparison_id]


def test_the_schema_itself_refuses_inconsistent_comparisons(answered: Store) -> None:
    conn = answered._db.conn
    insert = (
        "INSERT INTO comparisons (comparison_id, user_id, left_answer_id, right_answer_id, created_at, "
        "choice, chosen_at) VALUES (?, 'u', ?, ?, 't', ?, ?)"
    )
    for values in [
        ("c1", "a-1", "a-1", None, None),  # the same answer twice
        ("c2", "a-1", "a-2", "A", None),  # a choice without its time
        ("c3", "a-1", "a-2", None, "t"),
        ("c4", "a-1", "a-2", "left", "t"),
        ("c5", "a-1", "missing", None, None),  # foreign key to answers
    ]:
        with pytest.raises(sqlite3.IntegrityError), conn:
            conn.execute(insert, values)
