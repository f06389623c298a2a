"""The SQLite connection under the store: pragmas, write transactions, and sqlite3 errors as named ones.

- WAL journal (readers never block the writer, and the trainer can read while the service writes),
  `synchronous=FULL` (a commit that returned survives a power cut, not only a crash), foreign keys
  on, and a busy timeout so a writer waits for another process's transaction instead of failing.
- Writes run in `BEGIN IMMEDIATE` transactions (`write_transaction`): the write lock is taken up front,
  under the busy timeout. A deferred `BEGIN` that reads first and writes later cannot wait for the
  lock when another connection committed in between (SQLite answers SQLITE_BUSY at once), which is
  exactly what a migration or a check-then-insert does.

sqlite-utils is imported here lazily: with pandas installed it pulls in pandas and numpy (~0.3 s), and
`import feedback` must stay cheap.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feedback.errors import StoreBusy, StoreCorrupt, StoreFull, StoreUnavailable

if TYPE_CHECKING:
    from sqlite_utils import Database

BUSY_TIMEOUT_S = 10.0

_CORRUPT = {sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT}
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
_UNAVAILABLE = {sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_IOERR}


@contextmanager
def sqlite_errors(path: Path) -> Iterator[None]:
    """Re-raise sqlite3 errors about the file (corrupt, locked, unwritable) as FeedbackErrors naming
    `path`; anything else (a bug in our SQL) propagates unchanged."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        primary = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # extended codes keep it low
        if primary in _CORRUPT:
            raise StoreCorrupt(
                f"{path} is not a readable SQLite database ({exc}); move it aside (a new store is created "
                "in its place) or restore it from a backup"
            ) from exc
        if primary in _BUSY:
            raise StoreBusy(
                f"{path} stayed locked by another connection past the busy timeout ({exc}); retry, and "
                "check that no process keeps a long write transaction open on it"
            ) from exc
        if primary == sqlite3.SQLITE_FULL:
            raise StoreFull(
                f"the disk holding {path} is full ({exc}); nothing of this write was stored: free some space "
                "and retry (no restart needed)"
            ) from exc
        if primary in _UNAVAILABLE:
            raise StoreUnavailable(
                f"cannot use {path} ({exc}); check that its folder is writable and the disk has free space"
            ) from exc
        raise


def open_database(path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Database:
    """Open (or create) the database file with the store's pragmas; one connection, usable from any
    thread (`check_same_thread=False`): the caller serializes access to it."""
    from sqlite_utils import Database

    with sqlite_errors(path):
        conn = sqlite3.connect(path, timeout=busy_timeout_s, check_same_thread=False)
        try:
            db = Database(conn, execute_plugins=False)
            db.execute(f"PRAGMA busy_timeout = {round(busy_timeout_s * 1000)}")
            _enable_wal(db, busy_timeout_s)  # reads the header first: a file that is not SQLite fails here
            if db.journal_mode != "wal":
                raise StoreUnavailable(
                    f"{path}: SQLite refused WAL mode (journal_mode={db.journal_mode}); put the data "
                    "directory on a local filesystem"
                )
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
        except BaseException:
            conn.close()
            raise
    return db


def _enable_wal(db: Database, busy_timeout_s: float) -> None:
    enable_wal(db.conn, busy_timeout_s)


def enable_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> None:
    """Switch to WAL, retrying while other connections hold the file: SQLite answers a journal-mode
    change that cannot get its exclusive lock with SQLITE_BUSY at once, without the busy handler (two
    processes or threads opening a new database together hit this). Once in WAL, the mode is stored in
    the file and this is a read."""
    deadline = time.monotonic() + busy_timeout_s
    pause = 0.001
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=wal")
            return
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


@contextmanager
def write_transaction(db: Database) -> Iterator[None]:
    """`BEGIN IMMEDIATE` ... COMMIT, or ROLLBACK when the block raises. Not reentrant: nest
    `db.atomic()` savepoints inside it instead."""
    with db.conn:  # commits on success, rolls back on an exception
        db.conn.execute("BEGIN IMMEDIATE")
        yield


def rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Iterator[dict[str, Any]]:
    """The rows of a query as dicts, one at a time: the cursor streams, nothing is loaded up front."""
    cursor = conn.execute(sql, params)
    names = [column[0] for column in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def first_row(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
    """The first row of a query as a dict (None when there is none); the statement is closed at once,
    not when the garbage collector gets to it."""
    cursor = conn.execute(sql, params)
    try:
        row = cursor.fetchone()
        return None if row is None else dict(zip([c[0] for c in cursor.description], row, strict=True))
    finally:
        cursor.close()
