"""Group commit: writes queued from many threads and tasks, committed in shared transactions; each
stored exactly once, each failure its own, nothing acknowledged before its COMMIT."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from feedback import Store
from feedback.corrections import Correction
from feedback.errors import AnswerNotFound, IdempotencyConflict, InvalidRecord, StoreUnavailable
from feedback.group_commit import GroupCommit
from feedback.votes import Vote, VoteValue
from tests.conftest import REPO
from tests.feedback.factory import make_record, run_threads

pytestmark = pytest.mark.timeout(60)


def _count(path: Path, table: str) -> int:
    """Rows of `table` as another connection sees them: what is committed."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def _vote(store: Store, answer_id: str, value: str = "up", key: str | None = None) -> Callable[[], Vote]:
    return lambda: store.vote(answer_id, "u-bob", value, idempotency_key=key)


def test_a_batch_commits_together_and_a_failing_call_fails_alone(answered: Store) -> None:
    store = answered
    outcomes = store.run_batch(
        [
            _vote(store, "a-1", "up"),
            _vote(store, "no-such-answer"),  # 404
            lambda: store.vote("a-2", "u-bob", "up", reasons=["incorrect"]),  # 422: reasons on a thumbs up
            _vote(store, "a-1", "down"),  # sees the first call's vote: a change, not a second vote
            lambda: store.add_correction("a-2", "u-bob", "25 days [1]."),
        ]
    )
    assert [type(o.error) for o in outcomes] == [
        type(None),
        AnswerNotFound,
        InvalidRecord,
        type(None),
        type(None),
    ]
    assert outcomes[0].result is not None and outcomes[0].result.value is VoteValue.UP
    assert outcomes[3].result is not None and outcomes[3].result.value is VoteValue.DOWN
    assert [e.value for e in store.vote_history("a-1")] == ["up", "down"]
    assert store.get_vote("a-2", "u-bob") is None  # the failed call wrote nothing
    assert len(store.list_corrections()) == 1
    assert _count(store.path, "vote_events") == 2  # committed: another connection sees it


def test_a_call_that_raises_after_writing_is_undone_alone(answered: Store) -> None:
    store = answered

    def writes_then_fails() -> None:
        store.vote("a-2", "u-bob", "up")
        raise InvalidRecord("changed its mind")

    outcomes = store.run_batch([_vote(store, "a-1"), writes_then_fails, _vote(store, "a-1", "down")])
    assert isinstance(outcomes[1].error, InvalidRecord)
    assert store.get_vote("a-2", "u-bob") is None  # its savepoint was rolled back
    assert [e.value for e in store.vote_history("a-1")] == ["up", "down"]


def test_an_idempotent_retry_in_the_same_batch_is_stored_once(answered: Store) -> None:
    store = answered
    first, retry, reused = store.run_batch(
        [_vote(store, "a-1", "down", key="k-1"), _vote(store, "a-1", "down", key="k-1"),
         _vote(store, "a-1", "up", key="k-1")]
    )  # fmt: skip
    assert first.result is not None and retry.result == first.result  # answered like the first time
    assert isinstance(reused.error, IdempotencyConflict)  # the same key for another vote: 409
    assert len(store.vote_history("a-1")) == 1


def test_a_batch_whose_commit_fails_runs_each_call_alone(answered: Store) -> None:
    """A write whose error shows only at COMMIT (a deferred foreign key) sinks its batch's transaction:
    nothing of the batch is stored by it, then each call runs alone and only the culprit fails."""
    store = answered
    with store._session() as db:
        db.execute(
            "CREATE TABLE notes (answer_id TEXT REFERENCES answers (answer_id) DEFERRABLE INITIALLY DEFERRED)"
        )

    def dangling_note() -> None:
        with store._session() as db:
            db.execute("INSERT INTO notes VALUES ('no-such-answer')")

    outcomes = store.run_batch([_vote(store, "a-1"), dangling_note, _vote(store, "a-2")])
    assert outcomes[0].error is None and outcomes[2].error is None
    assert isinstance(outcomes[1].error, sqlite3.IntegrityError)
    assert {v.answer_id for v in store.list_votes()} == {"a-1", "a-2"}
    assert _count(store.path, "notes") == 0
    assert store.integrity_check()


def test_a_call_that_ends_the_transaction_fails_alone(answered: Store) -> None:
    """Like a disk-full error, after which SQLite has rolled the whole transaction back."""
    store = answered

    def ends_the_transaction() -> None:
        with store._session() as db:
            db.conn.rollback()
        raise OSError("disk full")

    outcomes = store.run_batch([_vote(store, "a-1"), ends_the_transaction, _vote(store, "a-2")])
    assert [type(o.error) for o in outcomes] == [type(None), OSError, type(None)]
    assert {v.answer_id for v in store.list_votes()} == {"a-1", "a-2"}
    assert store.vote("a-1", "u-bob", "down").value is VoteValue.DOWN  # the store is usable as before


def test_threads_writing_through_the_group_commit_store_each_write_once(tmp_path: Path) -> None:
    threads, per_thread = 8, 40
    with Store(tmp_path / "feedback.db") as store, GroupCommit(store) as writer:
        for k in range(threads):
            store.record_answer(make_record(f"a-{k}", user_id="u-bob"))

        def write(k: int) -> None:
            for i in range(per_thread):
                key = f"t{k}-{i}"

                def vote(key: str = key, value: str = ("up", "down")[i % 2]) -> Vote:
                    return store.vote(f"a-{k}", "u-bob", value, comment=key, idempotency_key=key)

                def correct(key: str = key) -> Correction:
                    return store.add_correction(f"a-{k}", "u-bob", key, idempotency_key=key)

                first, retry = (
                    writer.submit(vote),
                    writer.submit(vote),
                )  # a client's retry, maybe in one batch
                assert first.result(timeout=30) == retry.result(timeout=30)
                assert writer.submit(correct).result(timeout=30).text == key

        run_threads(write, threads)
        assert writer.calls == threads * per_thread * 3
        assert writer.batches < writer.calls  # writes did share commits
        for k in range(threads):
            history = store.vote_history(f"a-{k}")
            assert [e.comment for e in history] == [f"t{k}-{i}" for i in range(per_thread)]
        assert len(store.list_corrections(limit=1000)) == threads * per_thread
        assert store.integrity_check()


def test_calls_queued_together_share_one_commit_and_fail_alone(answered: Store) -> None:
    store = answered
    started, release = threading.Event(), threading.Event()

    def blocker() -> bool:
        started.set()
        return release.wait()

    with GroupCommit(store) as writer:
        blocking = writer.submit(blocker)
        assert started.wait(timeout=30)  # the writer is busy: what follows queues up
        calls = [_vote(store, "a-1", "up", key="k"), _vote(store, "nope"), _vote(store, "a-1", "up", key="k"),
                 _vote(store, "a-2", "down")]  # fmt: skip
        futures = [writer.submit(call) for call in calls]
        assert not any(f.done() for f in futures)
        release.set()
        assert blocking.result(timeout=30) is True
        concurrent.futures.wait(futures, timeout=30)
        assert writer.batches == 2
        assert futures[0].result() == futures[2].result()
        with pytest.raises(AnswerNotFound):
            futures[1].result()
        assert futures[3].result().value is VoteValue.DOWN
        assert len(store.vote_history("a-1")) == 1


def test_nothing_is_acknowledged_before_it_is_committed(answered: Store) -> None:
    store = answered
    seen_by_another_connection: list[int] = []
    with GroupCommit(store) as writer:
        futures = [
            writer.submit(lambda i=i: store.add_correction("a-1", "u-bob", f"v{i}")) for i in range(200)
        ]  # type: ignore[misc]
        for future in futures:
            future.add_done_callback(
                lambda _: seen_by_another_connection.append(_count(store.path, "corrections"))
            )
        for i, future in enumerate(futures):
            assert future.result(timeout=30).text == f"v{i}"
    # when each write was acknowledged, another connection already saw it (and those before it)
    assert all(seen >= i + 1 for i, seen in enumerate(seen_by_another_connection))


def test_tasks_on_an_event_loop_await_their_own_outcome(answered: Store) -> None:
    store = answered

    async def main(writer: GroupCommit) -> list[Any]:
        calls = [lambda i=i: store.add_correction("a-2", f"u-{i}", f"text {i}") for i in range(100)]
        calls.append(_vote(store, "missing"))
        return await asyncio.gather(*(writer.run(call) for call in calls), return_exceptions=True)

    with GroupCommit(store) as writer:
        results = asyncio.run(main(writer))
    assert [r.user_id for r in results[:100]] == [f"u-{i}" for i in range(100)]
    assert isinstance(results[100], AnswerNotFound)
    assert len(store.list_corrections(limit=1000)) == 100


def test_close_commits_what_is_queued_then_refuses(answered: Store) -> None:
    store = answered
    writer = GroupCommit(store)
    futures = [writer.submit(lambda i=i: store.add_correction("a-1", "u-bob", f"v{i}")) for i in range(50)]  # type: ignore[misc]
    writer.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with pytest.raises(StoreUnavailable):
        writer.submit(_vote(store, "a-1"))
    writer.close()  # twice is fine


CRASH = """
import os, sys
from pathlib import Path
from feedback import Store
from feedback.group_commit import GroupCommit

store = Store(Path(sys.argv[1]))
writer = GroupCommit(store)
futures = []
for i in range(200):
    def vote(i=i):
        if i == 150:
            os._exit(3)  # the process dies inside a batch, before its COMMIT
        return store.vote(f"a-{i}", "u-bob", "up")
    futures.append(writer.submit(vote))
    futures[-1].add_done_callback(lambda f, i=i: print(f"ack a-{i}", flush=True))
    if i == 99:
        futures[99].result()  # the first hundred are committed (and acknowledged)
writer.close()
"""


def test_a_crash_before_the_commit_acknowledges_nothing_of_its_batch(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    with Store(path) as store:
        for i in range(200):
            store.record_answer(make_record(f"a-{i}", user_id="u-bob"))
    done = subprocess.run([sys.executable, "-c", CRASH, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 3, done.stderr
    acked = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("ack a-")}
    with Store(path) as store:
        stored = {v.answer_id for v in store.list_votes(limit=1000)}
        assert store.integrity_check()
    assert {f"a-{i}" for i in range(100)} <= stored
    assert "a-150" not in stored
    assert stored == acked  # every acknowledged vote is stored, and nothing of the crashed batch is
