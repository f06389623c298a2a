"""Store.snapshot: a read-only connection in one read transaction, apart from the store's lock."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from feedback import Store
from feedback.errors import StoreUnavailable
from tests.feedback.factory import make_record


def test_a_snapshot_is_read_only_and_stable(store: Store) -> None:
    store.record_answer(make_record("a-1"))
    with store.snapshot() as conn:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM answers")
        store.record_answer(make_record("a-2"))  # the writer is not blocked...
        assert conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 1  # ...and not seen
    with store.snapshot() as conn:
        assert conn.execute("SELECT count(*) FROM answers").fetchone()[0] == 2


def test_a_snapshot_does_not_hold_the_store_lock(store: Store) -> None:
    store.record_answer(make_record("a-1"))
    done = threading.Event()

    def other_thread() -> None:
        store.vote("a-1", "u-bob", "up")  # would wait forever if the snapshot held the store's lock
        done.set()

    with store.snapshot():
        thread = threading.Thread(target=other_thread)
        thread.start()
        assert done.wait(timeout=10)
        thread.join()


def test_a_path_with_uri_characters_works(tmp_path: Path) -> None:
    with Store(tmp_path / "odd ?#%name" / "feedback.db") as store:
        store.record_answer(make_record("a-1"))
        with store.snapshot() as conn:
            assert conn.execute("SELECT answer_id FROM answers").fetchall() == [("a-1",)]


def test_a_closed_store_gives_no_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path / "feedback.db")
    store.close()
    with pytest.raises(StoreUnavailable, match="closed"), store.snapshot():
        pass
