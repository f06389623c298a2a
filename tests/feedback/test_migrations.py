"""Versioned migrations: fresh database, re-open, too-new schema, atomicity, foreign databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from sqlite_utils import Database

from feedback.connection import open_database
from feedback.errors import FeedbackErrorCode, SchemaTooNew, StoreCorrupt
from feedback.migrations import MIGRATIONS, Migration, latest_version, migrate, schema_version
from feedback.records import AnswerRecord
from feedback.store import Store
from feedback.timestamps import is_canonical
from tests.feedback.factory import make_record


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "feedback.db")
    yield database
    database.close()


def test_versions_are_contiguous_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert len({m.name for m in MIGRATIONS}) == len(MIGRATIONS)


def test_fresh_database_gets_every_migration_then_reopen_is_a_noop(db: Database) -> None:
    assert schema_version(db) == 0
    assert migrate(db) == [m.version for m in MIGRATIONS]
    assert schema_version(db) == latest_version() == MIGRATIONS[-1].version
    rows = list(db.query("SELECT version, name, applied_at FROM schema_migrations ORDER BY version"))
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
    assert all(is_canonical(r["applied_at"]) for r in rows)
    schema = db.schema
    assert migrate(db) == []
    assert db.schema == schema
    assert db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_answers_table_matches_the_record_and_has_its_indexes(db: Database) -> None:
    migrate(db)
    table = db.table("answers")
    assert [c.name for c in table.columns] == [f.name for f in fields(AnswerRecord)]
    assert table.pks == ["answer_id"]
    indexed = {index.columns[0] for index in table.indexes if not index.name.startswith("sqlite_")}
    assert {"created_at", "model_version", "conversation_id", "user_id"} <= indexed
    plan = " ".join(
        str(r)
        for r in db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM answers WHERE model_version = ? ORDER BY created_at DESC", ["m"]
        )
    )
    assert "answers_model_version" in plan and "TEMP B-TREE" not in plan


def test_schema_newer_than_this_kbloop_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    Store(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?, 'from the future', '2027-01-01T00:00:00.000Z')",
            (latest_version() + 1,),
        )
    conn.close()
    with pytest.raises(SchemaTooNew, match="upgrade kbloop") as info:
        Store(path)
    assert info.value.code is FeedbackErrorCode.SCHEMA_TOO_NEW


def test_a_failing_migration_leaves_the_previous_version_intact(db: Database) -> None:
    def half_then_fail(d: Database) -> None:
        d.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY)")
        d.execute("INSERT INTO answers_missing_table VALUES (1)")  # fails: no such table

    broken = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "experiments", half_then_fail))
    with pytest.raises(sqlite3.OperationalError):
        migrate(db, broken)
    assert schema_version(db) == len(MIGRATIONS)
    assert "experiments" not in db.table_names()
    assert not db.conn.in_transaction

    def create_experiments(d: Database) -> None:
        d.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY)")

    fixed = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "experiments", create_experiments))
    assert migrate(db, fixed) == [len(MIGRATIONS) + 1]
    assert "experiments" in db.table_names()


def test_out_of_order_migrations_are_a_programming_error(db: Database) -> None:
    with pytest.raises(ValueError, match="1, 2, 3"):
        migrate(db, (MIGRATIONS[0], Migration(3, "gap", lambda d: None)))


def test_an_unrelated_sqlite_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.close()
    with pytest.raises(StoreCorrupt, match="not a kbloop feedback store"):
        Store(path)
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["customers"]
    conn.close()


def test_a_version_1_store_with_answers_upgrades_to_the_feedback_tables(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    old = open_database(path)
    assert migrate(old, MIGRATIONS[:1]) == [1]  # the store as the previous kbloop left it
    v1_row = {k: v for k, v in make_record("a-1").to_row().items() if k not in ("kind", "passage_groups")}
    old.conn.execute(
        f"INSERT INTO answers ({', '.join(v1_row)}) VALUES ({', '.join(':' + k for k in v1_row)})", v1_row
    )
    old.conn.commit()
    old.close()
    with Store(path) as store:
        assert store.schema_version == latest_version()
        assert store.get_answer("a-1") == make_record("a-1")
        assert store.vote("a-1", "u-bob", "up").value == "up"
        assert {
            "votes",
            "vote_events",
            "corrections",
            "comparisons",
            "audit_events",
            "idempotency_keys",
        } <= set(store._db.table_names())
        assert store.integrity_check()


def test_feedback_tables_have_their_indexes(db: Database) -> None:
    migrate(db)
    for table, leading in {
        "votes": {"user_id", "updated_at"},
        "vote_events": {"answer_id"},
        "corrections": {"answer_id", "created_at"},
        "comparisons": {"created_at", "chosen_at", "user_id", "left_answer_id", "right_answer_id"},
        "audit_events": {"created_at", "target", "action"},
        "idempotency_keys": {"created_at"},
    }.items():
        indexed = {
            index.columns[0] for index in db.table(table).indexes if not index.name.startswith("sqlite_")
        }
        assert leading <= indexed, table
    assert db.execute("PRAGMA foreign_key_list(comparisons)").fetchall()  # foreign keys declared
