"""The feedback store: answers with provenance, votes, corrections, comparisons and audit events in one
SQLite file, and the statistics over them.

The Store is the one entry point, and thin: each concept's rules and SQL live in its own module
(feedback.votes, .comparisons, .corrections, .audit, .idempotency), the math in feedback.stats and
feedback.ranking; the Store opens the transaction, reads the clock and delegates. Its feedback and
statistics methods are written in feedback.store_feedback and feedback.store_stats, its conversation
readers in feedback.conversations. Exports read
through `snapshot()` (feedback.export, feedback.export_csv).

Concurrency. The service calls the store from many threads (FastAPI runs sync handlers in a thread
pool) while the trainer may use the same file from another process:
- within a process, one `Store` holds one connection (`check_same_thread=False`) and every method runs
  under the store's lock. A connection per thread was the alternative; it would let readers run in
  parallel, but pool threads outlive requests, so their connections could neither be counted nor
  closed by `close()`, and SQLite serializes writers anyway. Our queries take milliseconds; the lock
  costs little.
- across processes, SQLite's own locking applies: WAL lets readers proceed during a write, writers
  queue on the busy timeout (`BEGIN IMMEDIATE`, see feedback.connection), and a writer still locked
  out when the timeout ends gets StoreBusy.
Every write is one transaction: a call that returned has committed (`synchronous=FULL`), one that
raised has written nothing. Feedback writes take an optional client `idempotency_key`: a retry with
the same key returns the first result and writes nothing (feedback.idempotency).

Group commit. `run_batch(calls)` runs several calls of store methods in ONE transaction, each in a
savepoint of its own, and returns only after the COMMIT: one fsync for the batch instead of one per
write, the rest unchanged (each call is still all-or-nothing, and one that raises fails alone).
feedback.group_commit feeds it from a queue, for the service's feedback endpoints.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from feedback import idempotency
from feedback.answers import answer_row
from feedback.connection import BUSY_TIMEOUT_S, open_database, sqlite_errors, write_transaction
from feedback.conversations import ConversationMethods
from feedback.errors import InvalidRecord, StoreCorrupt, StoreUnavailable
from feedback.filters import check_page, time_window, where
from feedback.migrations import migrate, schema_version
from feedback.records import AnswerRecord
from feedback.store_feedback import FeedbackMethods
from feedback.store_stats import StatisticsMethods
from feedback.timestamps import utc_now
from feedback.validation import check_id, check_timestamp

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger(__name__)

_COLUMNS = tuple(f.name for f in fields(AnswerRecord))
_INSERT_ANSWER = (
    f"INSERT INTO answers ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    "ON CONFLICT (answer_id) DO NOTHING"
)
R = TypeVar("R", bound=idempotency.JsonResult)
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What one call of a batch gave: its result, or the exception it raised (then it wrote nothing)."""

    result: T | None = None
    error: Exception | None = None


class Store(FeedbackMethods, StatisticsMethods, ConversationMethods):
    """The feedback database at `path` (created with its folders if missing, migrated on open).

    `clock` gives the time feedback is stamped with (canonical UTC text, feedback.timestamps); tests
    and imports of old feedback pass their own.
    """

    def __init__(
        self, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S, clock: Callable[[], str] = utc_now
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._batching = False  # True while run_batch's transaction is open (its thread holds the lock)
        self._closed = True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(
                f"cannot create the folder of {self.path} ({exc}); check permissions"
            ) from exc
        if self.path.is_dir():
            raise StoreUnavailable(f"{self.path} is a folder; the store needs a file path (e.g. feedback.db)")
        self._db = open_database(self.path, busy_timeout_s=busy_timeout_s)
        try:
            with sqlite_errors(self.path):
                migrate(self._db)
        except BaseException:
            self._db.close()
            raise
        self._closed = False

    # -- plumbing ---------------------------------------------------------------------------------

    @contextmanager
    def _session(self) -> Iterator[Database]:
        """The connection, held exclusively by this thread, with sqlite3 errors translated."""
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"the store on {self.path} is closed; open a new Store")
            with sqlite_errors(self.path):
                yield self._db

    @contextmanager
    def _transaction(self, db: Database) -> Iterator[None]:
        """A write transaction of its own, or, inside `run_batch`, the batch's (the call's savepoint
        undoes what it wrote if it raises)."""
        if self._batching:
            yield
        else:
            with write_transaction(db):
                yield

    def _load(self, row: dict[str, Any]) -> AnswerRecord:
        try:
            return AnswerRecord.from_row(row)
        except InvalidRecord as exc:
            raise StoreCorrupt(f"{self.path}: a stored answer cannot be read ({exc})") from exc

    def _now(self) -> str:
        now = self._clock()
        check_timestamp("Store", "clock()", now)
        return now

    def _write(
        self,
        user_id: str,
        endpoint: str,
        key: str | None,
        request: dict[str, Any],
        result_type: type[R],
        write: Callable[[sqlite3.Connection, str], R],
    ) -> R:
        """`write(conn, now)` in one write transaction, at most once per (user, endpoint, key)."""
        check_id(endpoint, "user_id", user_id)
        idempotency.check_key(key)
        with self._session() as db, self._transaction(db):
            now = self._now()
            return idempotency.run_once(
                db.conn,
                user_id=user_id,
                endpoint=endpoint,
                key=key,
                request=request,
                result_type=result_type,
                write=lambda: write(db.conn, now),
                now=now,
            )

    def run_batch(self, calls: Sequence[Callable[[], T]]) -> list[Outcome[T]]:
        """Run `calls` (each any sequence of this store's methods) in one write transaction, each in a
        savepoint of its own, and COMMIT once: what a call wrote is undone alone when it raises, and its
        exception is its outcome. Returns after the COMMIT, in order, an outcome per call; nothing is
        reported before the batch is durable.

        When the batch as a whole fails (its COMMIT, or an error after which SQLite rolled the whole
        transaction back) nothing of it is stored, and each call runs again in a transaction of its own,
        so that a failure stays with the call that caused it. When the transaction cannot even start
        (the file locked past the busy timeout, closed, unwritable), every call gets that error.
        """
        with self._session() as db:
            if len(calls) > 1:
                try:
                    return self._one_transaction(db, calls)
                except _BatchFailed:
                    log.warning("a batch of %d writes failed as a whole; retrying each alone", len(calls))
            outcomes: list[Outcome[T]] = []
            for call in calls:
                try:
                    outcomes += self._one_transaction(db, [call])
                except _BatchFailed as failed:
                    outcomes.append(Outcome(error=failed.error))
            return outcomes

    def _one_transaction(self, db: Database, calls: Sequence[Callable[[], T]]) -> list[Outcome[T]]:
        conn = db.conn
        try:
            with sqlite_errors(self.path):
                conn.execute("BEGIN IMMEDIATE")
        except Exception as exc:
            return [Outcome(error=exc) for _ in calls]
        self._batching = True
        try:
            outcomes = [self._in_savepoint(conn, call) for call in calls]
            with sqlite_errors(self.path):
                conn.commit()
            return outcomes
        except Exception as exc:
            raise _BatchFailed(exc) from exc
        finally:
            self._batching = False
            if conn.in_transaction:
                conn.rollback()

    def _in_savepoint(self, conn: sqlite3.Connection, call: Callable[[], T]) -> Outcome[T]:
        conn.execute("SAVEPOINT batch_call")
        try:
            result = call()
        except Exception as exc:
            if not conn.in_transaction:  # SQLite rolled the whole transaction back (disk full, I/O error)
                raise
            conn.execute("ROLLBACK TO batch_call")
            conn.execute("RELEASE batch_call")
            return Outcome(error=exc)
        conn.execute("RELEASE batch_call")
        return Outcome(result=result)

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection of its own, inside one read transaction: a consistent view of the
        store for long reads (exports, the trainer's datasets) that neither holds the store's lock nor
        blocks writers (WAL). Close it soon: the WAL cannot be checkpointed past an open snapshot."""
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"the store on {self.path} is closed; open a new Store")
        with sqlite_errors(self.path):
            conn = sqlite3.connect(
                self.path.resolve().as_uri() + "?mode=ro",
                uri=True,
                timeout=self._busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM schema_migrations").fetchall()  # the snapshot starts here
                yield conn
            finally:
                conn.close()

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    @property
    def schema_version(self) -> int:
        with self._session() as db:
            return schema_version(db)

    def integrity_check(self) -> bool:
        """True when SQLite finds the file sound (`PRAGMA integrity_check`) and no row breaks a
        foreign key (`PRAGMA foreign_key_check`); False also when the damage is bad enough that the
        check itself cannot run."""
        try:
            with self._session() as db:
                problems = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
                if problems != ["ok"]:
                    log.warning("integrity_check of %s: %s", self.path, "; ".join(map(str, problems[:5])))
                    return False
                dangling = db.execute("PRAGMA foreign_key_check").fetchall()
                if dangling:
                    log.warning(
                        "foreign_key_check of %s: %d rows, e.g. %s", self.path, len(dangling), dangling[0]
                    )
                return not dangling
        except StoreCorrupt as exc:
            log.warning("integrity_check of %s: %s", self.path, exc)
            return False

    # -- answers ----------------------------------------------------------------------------------

    def record_answer(self, rec: AnswerRecord) -> bool:
        """Store `rec`; True when written, False when this exact answer was already stored (a retry).

        Raises InvalidRecord when the record is malformed or its answer_id already names a
        different answer.
        """
        rec.validate()  # its lists and dicts may have changed since it was built
        row = rec.to_row()
        with self._session() as db, self._transaction(db):
            if db.execute(_INSERT_ANSWER, row).rowcount == 1:
                return True
            stored = self._load(self._get_row(db, rec.answer_id))
        incoming = AnswerRecord.from_row(row)  # compare both sides after the same JSON round trip
        if incoming == stored:
            return False
        differing = [
            f.name for f in fields(AnswerRecord) if getattr(incoming, f.name) != getattr(stored, f.name)
        ]
        raise InvalidRecord(
            f"answer {rec.answer_id!r} is already recorded with a different {', '.join(differing)}; an "
            "answer_id names exactly one answer: give each new answer a new id (e.g. uuid4().hex)"
        )

    @staticmethod
    def _get_row(db: Database, answer_id: str) -> dict[str, Any]:
        return answer_row(db.conn, answer_id)

    def answer_owner(self, answer_id: str) -> str:
        """The user who asked the answer (AnswerNotFound when no answer has this id): who may vote on
        it, without reading the whole record."""
        with self._session() as db:
            return str(answer_row(db.conn, answer_id, "user_id")["user_id"])

    def get_answer(self, answer_id: str) -> AnswerRecord:
        with self._session() as db:
            row = self._get_row(db, answer_id)
        return self._load(row)

    def list_answers(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        model_version: str | None = None,
        conversation_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AnswerRecord]:
        """Answers newest first (ties: most recently recorded first), `since <= created_at < until`.

        `since`/`until` take any ISO-8601 date or time (without a timezone: UTC). At most MAX_PAGE
        answers per call: page through more with `offset`.
        """
        clauses, params = _where(since, until, model_version, conversation_id)
        check_page(limit, offset)
        sql = f"SELECT * FROM answers{clauses} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
        with self._session() as db:
            rows = list(db.query(sql, [*params, limit, offset]))
        return [self._load(row) for row in rows]

    def count_answers(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        model_version: str | None = None,
        conversation_id: str | None = None,
    ) -> int:
        """How many answers `list_answers` would page through with the same filters."""
        clauses, params = _where(since, until, model_version, conversation_id)
        with self._session() as db:
            return int(db.execute(f"SELECT count(*) FROM answers{clauses}", params).fetchone()[0])


class _BatchFailed(Exception):
    """The batch's transaction failed as a whole (`error`): nothing of it was stored."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _where(
    since: str | None, until: str | None, model_version: str | None, conversation_id: str | None
) -> tuple[str, list[Any]]:
    clauses, params = time_window("created_at", since, until)
    for column, value in (("model_version", model_version), ("conversation_id", conversation_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return where(clauses), params
