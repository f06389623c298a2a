"""Versioned schema migrations of the registry database (DATA_DIR/models/registry.db).

The same design as the feedback store's (feedback/migrations.py), on the registry's plain sqlite3
connection: `MIGRATIONS` is append-only (a released migration is never edited, a schema change is a new
entry with the next version number), each written as explicit SQL. `migrate` applies the pending ones in
order, each in its own `BEGIN IMMEDIATE` transaction together with its `schema_migrations` row: a crash
leaves the database at the previous version, never half-migrated, and two processes opening a new
registry at once apply each migration exactly once (the second re-reads the version under the write
lock and skips it).

Version 1 is the schema kbloop created before the registry had versions, kept with its
`CREATE TABLE IF NOT EXISTS`: on a registry.db written by that code (its tables, no version) it creates
nothing and stamps version 1, so every alias, event and setting stays as it was.

A database stamped with a version newer than the newest migration here was migrated by a newer kbloop:
`migrate` raises SchemaTooNew rather than let an older kbloop write into it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

from core.clock import utc_now
from registry.errors import SchemaTooNew

MIGRATIONS_TABLE = "schema_migrations"


class Migration(NamedTuple):
    version: int
    name: str
    apply: Callable[[sqlite3.Connection], None]


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """`BEGIN IMMEDIATE` ... COMMIT, or ROLLBACK when the block raises, on a connection opened with
    `isolation_level=None` (the write lock is taken up front, under the busy timeout)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _create_aliases(conn: sqlite3.Connection) -> None:
    """The aliases (champion, candidate, canary), one event row per change, and the canary's share.

    IF NOT EXISTS: a registry.db from before versions already has these tables, with their rows."""
    for statement in (
        """
        CREATE TABLE IF NOT EXISTS aliases (
            alias TEXT PRIMARY KEY NOT NULL,
            version_id TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            actor TEXT NOT NULL,
            reason TEXT NOT NULL
        )
        """,
        """
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
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS registry_settings (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        )
        """,
    ):
        conn.execute(statement)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "aliases, alias events, registry settings", _create_aliases),
)


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def schema_version(conn: sqlite3.Connection) -> int:
    """The newest migration applied; 0 for a database kbloop never migrated (new, or from before versions)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (MIGRATIONS_TABLE,)
    ).fetchone()
    if exists is None:
        return 0
    value = conn.execute(f"SELECT max(version) FROM {MIGRATIONS_TABLE}").fetchone()[0]
    return int(value or 0)


def _check_not_newer(current: int, latest: int) -> None:
    if current > latest:
        raise SchemaTooNew(
            f"the registry database is at schema version {current}, this kbloop knows versions up to "
            f"{latest}; upgrade kbloop (or point it at another data directory) instead of writing into it"
        )


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the pending migrations in order; return the versions applied (empty when up to date).

    `conn` must be in autocommit mode (`isolation_level=None`), as the registry's connections are."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3... in order, got {versions}")
    latest = latest_version(migrations)
    current = schema_version(conn)  # a cheap read first: an up-to-date database takes no write lock
    _check_not_newer(current, latest)
    applied: list[int] = []
    for migration in migrations[current:]:
        with immediate_transaction(conn):
            current = schema_version(conn)  # another process may have migrated since the read above
            _check_not_newer(current, latest)
            if current >= migration.version:
                continue
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            migration.apply(conn)
            conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, utc_now()),
            )
        applied.append(migration.version)
    return applied
