"""Conversation history read from the answers table: a user's own, newest first, paged; turns in order."""

from __future__ import annotations

from typing import Any

import pytest

from feedback import Store
from feedback.errors import InvalidFilter, InvalidRecord
from feedback.records import Citation
from tests.feedback.factory import make_record

PARKING = Citation(
    n=1, chunk_id="policies/parking.md#0", source="policies/parking.md", section="", title="Parking"
)


def answer(
    store: Store, answer_id: str, conversation: str, user: str, at: str, question: str, **extra: Any
) -> None:
    """Record `answer_id`: `question` asked at `at` (minute of the day) in `conversation` by `user`."""
    store.record_answer(
        make_record(
            answer_id,
            conversation_id=conversation,
            user_id=user,
            created_at=f"2026-12-02T10:{at}:00.000Z",
            messages=[{"role": "user", "content": question}],
            answer=f"answer to {question}",
            **extra,
        )
    )


@pytest.fixture
def history(store: Store) -> Store:
    """alice: c-old (two turns, 10:00 and 10:05), c-new (10:10); bob: c-bob (10:20)."""
    answer(store, "a1", "c-old", "alice", "00", "How much is parking?", citations=[PARKING])
    answer(store, "a2", "c-old", "alice", "05", "And for electric cars?", kind="extractive")
    answer(store, "a3", "c-new", "alice", "10", "Where is the VPN guide?")
    answer(store, "b1", "c-bob", "bob", "20", "What is my salary band?")
    return store


def test_a_users_conversations_newest_activity_first_with_title_and_turns(history: Store) -> None:
    listed = history.list_conversations("alice")
    assert [(c.conversation_id, c.title, c.turns) for c in listed] == [
        ("c-new", "Where is the VPN guide?", 1),
        ("c-old", "How much is parking?", 2),  # the title is the first question, not the last
    ]
    assert (listed[1].started_at, listed[1].last_activity) == (
        "2026-12-02T10:00:00.000Z",
        "2026-12-02T10:05:00.000Z",
    )
    # a new turn in the old conversation brings it back to the top
    answer(history, "a4", "c-old", "alice", "30", "Is there a waiting list?")
    assert [c.conversation_id for c in history.list_conversations("alice")] == ["c-old", "c-new"]
    assert history.count_conversations("alice") == 2


def test_nobody_lists_or_reads_another_users_conversation(history: Store) -> None:
    assert [c.conversation_id for c in history.list_conversations("bob")] == ["c-bob"]
    assert history.conversation("c-bob", "alice") == []
    assert history.conversation("c-old", "bob") == []
    assert history.list_conversations("carol") == [] and history.count_conversations("carol") == 0
    # a client may reuse someone else's conversation id: each user still sees only their own turns
    answer(history, "b2", "c-old", "bob", "40", "Planted in alice's conversation")
    assert [t.answer_id for t in history.conversation("c-old", "alice")] == ["a1", "a2"]
    assert [t.answer_id for t in history.conversation("c-old", "bob")] == ["b2"]
    assert [c.turns for c in history.list_conversations("alice") if c.conversation_id == "c-old"] == [2]
    # an operator's view (user None) holds every turn, each with its asker
    assert [(t.answer_id, t.user_id) for t in history.conversation("c-old", None)] == [
        ("a1", "alice"),
        ("a2", "alice"),
        ("b2", "bob"),
    ]


def test_turns_in_order_with_question_answer_citations_and_kind(history: Store) -> None:
    turns = history.conversation("c-old", "alice")
    assert [(t.question, t.answer, t.kind, t.refused) for t in turns] == [
        ("How much is parking?", "answer to How much is parking?", "generated", False),
        ("And for electric cars?", "answer to And for electric cars?", "extractive", False),
    ]
    assert turns[0].citations == [PARKING]
    assert turns[0].created_at < turns[1].created_at


def test_the_question_of_a_turn_is_the_last_message_not_the_history(store: Store) -> None:
    messages = [
        {"role": "user", "content": "Parking?"},
        {"role": "assistant", "content": "45 dollars [1]."},
        {"role": "user", "content": "Electric cars?"},
    ]
    store.record_answer(make_record("x", conversation_id="c", user_id="u", messages=messages))
    assert [t.question for t in store.conversation("c", "u")] == ["Electric cars?"]
    assert store.list_conversations("u")[0].title == "Electric cars?"  # its first recorded turn


def test_cancelled_answers_and_comparison_answers_are_no_turns(store: Store) -> None:
    answer(store, "k1", "c-1", "u", "00", "Kept")
    answer(store, "k2", "c-1", "u", "01", "Cut off", finish_reason="cancelled")
    answer(store, "p1", "c-pair", "u", "02", "Compared")
    answer(store, "p2", "c-pair", "u", "02", "Compared")
    store.create_comparison("u", "p1", "p2")
    assert [(c.conversation_id, c.turns) for c in store.list_conversations("u")] == [("c-1", 1)]
    assert [t.answer_id for t in store.conversation("c-1", "u")] == ["k1"]
    assert store.conversation("c-pair", "u") == []


def test_paging_and_ties(store: Store) -> None:
    for i in range(5):  # five conversations last active at the same moment: the latest written first
        answer(store, f"t{i}", f"c-{i}", "u", "00", f"Question {i}")
    pages = [store.list_conversations("u", limit=2, offset=o) for o in (0, 2, 4)]
    assert [[c.conversation_id for c in page] for page in pages] == [["c-4", "c-3"], ["c-2", "c-1"], ["c-0"]]
    assert store.count_conversations("u") == 5
    with pytest.raises(InvalidFilter, match="limit"):
        store.list_conversations("u", limit=5000)
    with pytest.raises(InvalidFilter, match="offset"):
        store.list_conversations("u", offset=-1)
    with pytest.raises(InvalidRecord, match="conversation_id"):
        store.conversation(" padded ", "u")
