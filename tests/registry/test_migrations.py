"""registry.db's versioned schema: a fresh registry, one from before versions, a newer one, atomicity."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from registry.errors import RegistryErrorCode, SchemaTooNew
from registry.migrations import MIGRATIONS, Migration, latest_version, migrate, schema_version
from registry.registry import Registry, read_canary_share
from registry.versions import ModelDirectory

# registry/registry.py's SCHEMA before the registry had versions (executed by `Registry.__init__`)
UNVERSIONED_SCHEMA = """
CREATE TABLE IF NOT EXISTS aliases (
    alias TEXT PRIMARY KEY NOT NULL,
    version_id TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alias_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    alias TEXT NOT NULL,
    action TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    override INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
);
CREATE TABLE IF NOT EXISTS registry_settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
"""

TABLES = ("aliases", "alias_events", "registry_settings")


def connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}
    finally:
        conn.close()


@pytest.fixture
def models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    ModelDirectory(root).ensure_base("base")
    return root


def test_versions_are_contiguous_from_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert len({m.name for m in MIGRATIONS}) == len(MIGRATIONS)


def test_a_new_registry_gets_every_migration_then_reopen_is_a_noop(models: Path) -> None:
    Registry(models)
    conn = connect(models / "registry.db")
    try:
        assert schema_version(conn) == latest_version()
        names = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert names == [(m.version, m.name) for m in MIGRATIONS]
        assert migrate(conn) == []
    finally:
        conn.close()
    Registry(models)  # a second open applies nothing and adopts nothing twice
    assert [e.action for e in Registry(models).history()] == ["adopt"]


def test_a_registry_from_before_versions_is_adopted_as_version_1_with_every_row(models: Path) -> None:
    path = models / "registry.db"
    conn = connect(path)
    conn.executescript(UNVERSIONED_SCHEMA)
    conn.executescript(
        """
        INSERT INTO aliases VALUES ('champion', 'v0001', '2026-01-02T03:04:05Z', 'ana', 'first');
        INSERT INTO aliases VALUES ('canary', 'v0002', '2026-01-02T03:05:00Z', 'ana', 'try it');
        INSERT INTO alias_events (at, alias, action, to_version, actor, reason)
            VALUES ('2026-01-02T03:04:05Z', 'champion', 'adopt', 'v0001', 'system', 'adopted');
        INSERT INTO alias_events
            (at, alias, action, from_version, to_version, actor, reason, override, detail)
            VALUES ('2026-01-02T03:05:00Z', 'canary', 'canary', NULL, 'v0002', 'ana', 'try it', 0,
                    '{"share": 0.25}');
        INSERT INTO registry_settings VALUES ('canary_share', '0.25');
        """
    )
    conn.close()
    before = dump(path)
    assert all(before[t] for t in TABLES)

    registry = Registry(models)

    assert dump(path) == before  # nothing lost, nothing adopted again
    conn = connect(path)
    try:
        assert schema_version(conn) == latest_version() >= 1
    finally:
        conn.close()
    assert registry.aliases() == {"champion": "v0001", "canary": "v0002"}
    assert registry.canary_share() == 0.25 == read_canary_share(models)
    assert [(e.action, e.detail) for e in registry.history()] == [("canary", {"share": 0.25}), ("adopt", {})]
    assert json.loads((models / "aliases.json").read_text()) == {"champion": "v0001", "canary": "v0002"}


def test_a_schema_newer_than_this_kbloop_is_refused(models: Path) -> None:
    path = models / "registry.db"
    Registry(models)
    conn = connect(path)
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from the future', '2027-01-01T00:00:00.000Z')",
        (latest_version() + 1,),
    )
    conn.close()
    before = dump(path)
    with pytest.raises(SchemaTooNew, match="upgrade kbloop") as info:
        Registry(models)
    assert info.value.code is RegistryErrorCode.SCHEMA_TOO_NEW and info.value.status == 500
    assert dump(path) == before


def test_a_failing_migration_leaves_the_previous_version_intact(models: Path) -> None:
    Registry(models)
    conn = connect(models / "registry.db")

    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY)")
        c.execute("INSERT INTO missing_table VALUES (1)")  # fails: no such table

    def create_experiments(c: sqlite3.Connection) -> None:
        c.execute("CREATE TABLE experiments (id INTEGER PRIMARY KEY)")

    def tables() -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "experiments", half_then_fail)))
        assert schema_version(conn) == len(MIGRATIONS)
        assert "experiments" not in tables() and not conn.in_transaction
        fixed = (*MIGRATIONS, Migration(len(MIGRATIONS) + 1, "experiments", create_experiments))
        assert migrate(conn, fixed) == [len(MIGRATIONS) + 1]
        assert "experiments" in tables()
    finally:
        conn.close()


def test_out_of_order_migrations_are_a_programming_error(tmp_path: Path) -> None:
    conn = connect(tmp_path / "registry.db")
    try:
        with pytest.raises(ValueError, match="1, 2, 3"):
            migrate(conn, (MIGRATIONS[0], Migration(3, "gap", lambda c: None)))
    finally:
        conn.close()
