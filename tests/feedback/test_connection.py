"""The connection layer: write transactions take the write lock up front and roll back on errors."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from feedback.connection import open_database, write_transaction


def test_write_transaction_holds_the_write_lock_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    db = open_database(path)
    db.execute("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with write_transaction(db):
            # nothing written yet, but a second writer is already locked out (BEGIN IMMEDIATE, not
            # a deferred BEGIN that could fail later when it upgrades from reading to writing)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 0  # readers are not blocked
            db.execute("INSERT INTO t VALUES (1)")
        assert other.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        other.close()
        db.close()


def test_write_transaction_rolls_back_when_the_block_raises(tmp_path: Path) -> None:
    db = open_database(tmp_path / "feedback.db")
    db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), write_transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError("boom")
    assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert not db.conn.in_transaction
    db.close()
