"""Feedback written from many threads and connections at once: one current vote, the full history,
one choice, one write per idempotency key."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from feedback import Store
from feedback.comparisons import Choice, Comparison
from feedback.errors import AlreadyChosen
from feedback.votes import Vote
from tests.feedback.factory import make_record, run_threads

pytestmark = pytest.mark.timeout(60)

THREADS, PER_THREAD = 8, 25
ALTERNATING = ("up", "down")


def _check_votes(store: Store, answer_id: str, user_id: str, calls: int) -> None:
    (current,) = store.list_votes(answer_id=answer_id)  # exactly one current row
    history = store.vote_history(answer_id, user_id=user_id)
    assert len(history) == calls  # every call changed the vote (distinct comments): all kept
    last = history[-1]
    assert (last.value, last.reasons, last.comment, last.created_at) == (
        current.value,
        current.reasons,
        current.comment,
        current.updated_at,
    )
    assert current.created_at == history[0].created_at
    assert store.integrity_check()


def test_threads_voting_on_one_answer_leave_one_current_vote_and_the_full_history(store: Store) -> None:
    store.record_answer(make_record("a-1"))

    def vote(k: int) -> None:
        for i in range(PER_THREAD):
            store.vote("a-1", "u-bob", ALTERNATING[(k + i) % 2], comment=f"t{k}-{i}")

    run_threads(vote, THREADS)
    _check_votes(store, "a-1", "u-bob", THREADS * PER_THREAD)
    # each thread's own votes appear in the order it made them
    for k in range(THREADS):
        mine = [e.comment for e in store.vote_history("a-1") if e.comment and e.comment.startswith(f"t{k}-")]
        assert mine == [f"t{k}-{i}" for i in range(PER_THREAD)]


def test_separate_connections_voting_at_once(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    with Store(path) as store:
        store.record_answer(make_record("a-1"))
    stores = [Store(path) for _ in range(4)]  # like separate processes: SQLite's locking, not our lock
    try:

        def vote(k: int) -> None:
            for i in range(PER_THREAD):
                stores[k].vote("a-1", "u-bob", ALTERNATING[(k + i) % 2], comment=f"c{k}-{i}")
                stores[k].vote("a-1", f"u-{k}", "up", comment=f"own {i}")

        run_threads(vote, len(stores))
        users = {v.user_id for v in stores[0].list_votes(answer_id="a-1")}
        assert users == {"u-bob", "u-0", "u-1", "u-2", "u-3"}
        for user in ("u-bob", "u-0"):
            calls = len(stores) * PER_THREAD if user == "u-bob" else PER_THREAD
            history = stores[0].vote_history("a-1", user_id=user)
            current = stores[0].get_vote("a-1", user)
            assert current is not None and len(history) == calls
            assert (history[-1].value, history[-1].comment) == (current.value, current.comment)
        assert stores[0].integrity_check()
    finally:
        for s in stores:
            s.close()


def test_a_retry_racing_its_original_is_stored_once(store: Store) -> None:
    store.record_answer(make_record("a-1"))
    results: list[Vote] = []
    lock = threading.Lock()

    def vote(k: int) -> None:
        result = store.vote("a-1", "u-bob", "down", reasons=["incorrect"], idempotency_key="click-1")
        with lock:
            results.append(result)

    run_threads(vote, THREADS)
    assert len(results) == THREADS and len(set(results)) == 1
    assert len(store.vote_history("a-1")) == 1


def _race(store: Store, comparison_id: str) -> tuple[list[Comparison], int]:
    """THREADS users' clicks at once, thread k sending choice k mod 4: (results, refusals)."""
    won: list[Comparison] = []
    refused: list[AlreadyChosen] = []
    lock = threading.Lock()

    def choose(k: int) -> None:
        try:
            result = store.choose(comparison_id, "u-bob", CHOICES[k % len(CHOICES)])
            with lock:
                won.append(result)
        except AlreadyChosen as exc:
            with lock:
                refused.append(exc)

    run_threads(choose, THREADS)
    return won, len(refused)


CHOICES = list(Choice)


def test_racing_choices_leave_exactly_one(store: Store) -> None:
    store.record_answer(make_record("a-1", model_version="m1"))
    store.record_answer(make_record("a-2", model_version="m2"))
    for _ in range(5):  # several rounds: the race goes differently each time
        shown = store.create_comparison("u-bob", "a-1", "a-2")
        won, refused = _race(store, shown.comparison_id)
        final = store.get_comparison(shown.comparison_id)
        assert final.choice is not None
        # everyone who sent the winning choice got it back; everyone else was refused
        assert won and all(result == final for result in won)
        assert len(won) == sum(1 for k in range(THREADS) if CHOICES[k % len(CHOICES)] is final.choice)
        assert len(won) + refused == THREADS
