"""feedback.readers: the rows the trainer reads, as stored, bounded by a snapshot's marks and filtered
by the export's window."""

from __future__ import annotations

import json

import pytest

from feedback import Store
from feedback.errors import InvalidFilter
from feedback.readers import (
    ChosenComparison,
    CorrectionRow,
    PromptedAnswer,
    TableMark,
    VoteRow,
    chosen_comparisons,
    correction_rows,
    count_feedback_events,
    current_votes,
    prompted_answers,
    schema_version,
    table_marks,
)
from tests.feedback.factory import FakeClock, make_record

PROMPT = "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>"
SHORT, LONG = "25 days [1].", "You get 25 vacation days [1]."
REFUSAL = "The knowledge base does not cover this question."


@pytest.fixture
def filled(store: Store) -> Store:
    """Answers p1 (m1), p2 (m2, its prompt held a passage restricted to managers), a refusal r1 (m2)."""
    for answer_id, model, created, prompt, answer, groups in [
        ("p1", "m1", "2026-11-20T09:00:00.000Z", PROMPT, SHORT, []),
        ("p2", "m2", "2026-11-21T09:00:00.000Z", PROMPT, LONG, ["managers"]),
        ("r1", "m2", "2026-11-22T09:00:00.000Z", "", REFUSAL, []),
    ]:
        store.record_answer(
            make_record(
                answer_id, model_version=model, created_at=created, prompt=prompt, answer=answer,
                refused=not prompt, passage_groups=groups,
            )
        )  # fmt: skip
    return store


def test_marks_count_each_table_and_find_its_newest_row(filled: Store, clock: FakeClock) -> None:
    with filled.snapshot() as conn:
        empty = table_marks(conn)
        assert schema_version(conn) == filled.schema_version
    assert list(empty) == ["answers", "votes", "vote_events", "comparisons", "corrections"]
    assert empty["answers"] == TableMark(3, 3, "2026-11-22T09:00:00.000Z")
    assert empty["votes"] == empty["vote_events"] == TableMark(0, 0, None)

    clock.set("2026-11-24T12:00:00.000Z")
    filled.vote("p1", "u1", "up")
    filled.vote("p1", "u1", "down", reasons=["incorrect"])  # one vote, two events
    filled.create_comparison("u1", "p1", "p2")  # shown, not chosen: no time yet
    with filled.snapshot() as conn:
        marks = table_marks(conn)
    assert marks["votes"] == TableMark(1, 1, "2026-11-24T12:00:00.001Z")
    assert marks["vote_events"] == TableMark(2, 2, "2026-11-24T12:00:00.001Z")
    assert marks["comparisons"] == TableMark(1, 1, None)


def test_chosen_comparisons_carry_both_answers_as_stored(filled: Store, clock: FakeClock) -> None:
    clock.set("2026-11-24T12:00:00.000Z")
    first = filled.create_comparison("u-bob", "p2", "p1")
    second = filled.create_comparison("u-carol", "p1", "r1")
    filled.create_comparison("u-dan", "p1", "p2")  # never chosen
    filled.choose(second.comparison_id, "u-carol", "both_bad")  # chosen first
    filled.choose(first.comparison_id, "u-bob", "B")
    with filled.snapshot() as conn:
        marks = table_marks(conn)
        found = list(chosen_comparisons(conn, marks["comparisons"]))
        m1_only = [
            c.comparison_id for c in chosen_comparisons(conn, marks["comparisons"], model_version="m1")
        ]
        later = list(chosen_comparisons(conn, marks["comparisons"], since="2026-11-24T12:00:00.004Z"))
        before = list(chosen_comparisons(conn, TableMark(2, 2, "2026-11-24T12:00:00.003Z")))
    assert found == [
        ChosenComparison(
            second.comparison_id, "u-carol", "both_bad", "2026-11-24T12:00:00.003Z", "p1", "r1",
            PROMPT, SHORT, "", REFUSAL, "[]", "[]",
        ),
        ChosenComparison(
            first.comparison_id, "u-bob", "B", "2026-11-24T12:00:00.004Z", "p2", "p1",
            PROMPT, LONG, PROMPT, SHORT, found[1].left_groups, "[]",
        ),
    ]  # fmt: skip
    assert json.loads(found[1].left_groups) == ["managers"]
    assert m1_only == [second.comparison_id, first.comparison_id]  # m1 on either side
    assert [c.comparison_id for c in later] == [first.comparison_id]
    assert [c.comparison_id for c in before] == [second.comparison_id]  # the mark's time bounds it


def test_current_votes_are_each_votes_value_as_of_the_bound(filled: Store, clock: FakeClock) -> None:
    clock.set("2026-11-24T12:00:00.000Z")
    filled.vote("p1", "u1", "up")
    filled.vote("p2", "u1", "down", reasons=["incorrect", "too_long"])
    filled.vote("p1", "u1", "none")  # withdrawn: still a row, with its value
    filled.vote("r1", "u2", "up")
    with filled.snapshot() as conn:
        marks = table_marks(conn)
        now = list(current_votes(conn, marks["vote_events"]))
        then = list(current_votes(conn, TableMark(2, 2, None)))
        m2 = [v.answer_id for v in current_votes(conn, marks["vote_events"], model_version="m2")]
        window = current_votes(conn, marks["vote_events"], until="2026-11-24T12:00:00.002Z")
        early = [(v.answer_id, v.value) for v in window]
    assert now == [
        VoteRow("p2", "u1", "down", ("incorrect", "too_long"), "2026-11-24T12:00:00.001Z", PROMPT, LONG,
                now[0].passage_groups),
        VoteRow("p1", "u1", "none", (), "2026-11-24T12:00:00.002Z", PROMPT, SHORT, "[]"),
        VoteRow("r1", "u2", "up", (), "2026-11-24T12:00:00.003Z", "", REFUSAL, "[]"),
    ]  # fmt: skip
    assert json.loads(now[0].passage_groups) == ["managers"]
    # as of the second event, p1's vote was still up
    assert [(v.answer_id, v.value) for v in then] == [("p1", "up"), ("p2", "down")]
    assert m2 == ["p2", "r1"]
    assert early == [("p2", "down")]  # p1's current value came at .002: outside the window


def test_corrections_say_which_are_superseded(filled: Store, clock: FakeClock) -> None:
    clock.set("2026-11-24T12:00:00.000Z")
    filled.add_correction("p1", "u1", "Employees get 25 days [1].")
    clock.set("2026-11-25T12:00:00.000Z")
    filled.add_correction("p1", "u1", "Employees get 25 paid days [1].")
    filled.add_correction("p1", "u2", "25 days.")
    filled.add_correction("r1", "u1", "The handbook says 25 days.")
    with filled.snapshot() as conn:
        marks = table_marks(conn)
        found = list(correction_rows(conn, marks["corrections"]))
        early = list(correction_rows(conn, marks["corrections"], until="2026-11-25"))
        first_only = list(correction_rows(conn, TableMark(1, 1, None)))
    assert found == [
        CorrectionRow("p1", "u1", "Employees get 25 days [1].", "2026-11-24T12:00:00.000Z", PROMPT, SHORT,
                      "[]", True),
        CorrectionRow("p1", "u1", "Employees get 25 paid days [1].", "2026-11-25T12:00:00.000Z", PROMPT,
                      SHORT, "[]", False),
        CorrectionRow("p1", "u2", "25 days.", "2026-11-25T12:00:00.001Z", PROMPT, SHORT, "[]", False),
        CorrectionRow("r1", "u1", "The handbook says 25 days.", "2026-11-25T12:00:00.002Z", "", REFUSAL,
                      "[]", False),
    ]  # fmt: skip
    # the newer one is outside the window, or beyond the bound: the first is the newest there
    assert [(c.text, c.superseded) for c in early] == [("Employees get 25 days [1].", False)]
    assert first_only == early


def test_prompted_answers_leave_refusals_out_newest_first(filled: Store) -> None:
    with filled.snapshot() as conn:
        found = list(prompted_answers(conn))
        since = [a.answer_id for a in prompted_answers(conn, since="2026-11-21")]
        until = [a.answer_id for a in prompted_answers(conn, until="2026-11-21")]
        with pytest.raises(InvalidFilter, match="since"):
            prompted_answers(conn, since="yesterday")  # at the call, before any row is read
    assert found == [
        PromptedAnswer("p2", PROMPT, "m2", "2026-11-21T09:00:00.000Z", found[0].passage_groups),
        PromptedAnswer("p1", PROMPT, "m1", "2026-11-20T09:00:00.000Z", "[]"),
    ]
    assert json.loads(found[0].passage_groups) == ["managers"]
    assert (since, until) == (["p2"], ["p1"])


def test_feedback_events_are_counted_since_a_time(filled: Store, clock: FakeClock) -> None:
    clock.set("2026-11-24T12:00:00.000Z")
    filled.vote("p1", "u1", "up")
    filled.vote("p1", "u1", "down")  # a change is an event
    shown = filled.create_comparison("u1", "p1", "p2")
    filled.create_comparison("u1", "p2", "p1")  # not chosen: no event
    clock.set("2026-11-25T12:00:00.000Z")
    filled.choose(shown.comparison_id, "u1", "A")
    filled.add_correction("p1", "u1", "Employees get 25 days [1].")
    with filled.snapshot() as conn:
        assert count_feedback_events(conn, None) == 4
        assert count_feedback_events(conn, "2026-11-25T12:00:00.000Z") == 2
        assert count_feedback_events(conn, "2026-11-26T00:00:00.000Z") == 0


def test_a_reader_sees_its_snapshot_not_what_was_written_since(filled: Store) -> None:
    filled.vote("p1", "u1", "up")
    with filled.snapshot() as conn:
        bound = table_marks(conn)["vote_events"]
        filled.vote("p2", "u1", "up")  # written during the read
        assert [v.answer_id for v in current_votes(conn, TableMark(9, 9, None))] == ["p1"]
    assert bound.max_rowid == 1
