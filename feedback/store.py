"""The feedback store: answers with provenance in one SQLite file (votes, corrections, comparisons and
audit events come later, as further migrations and methods on the same store).

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
raised has written nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from feedback.connection import BUSY_TIMEOUT_S, open_database, sqlite_errors, write_transaction
from feedback.errors import AnswerNotFound, InvalidFilter, InvalidRecord, StoreCorrupt, StoreUnavailable
from feedback.migrations import migrate, schema_version
from feedback.records import AnswerRecord
from feedback.timestamps import normalize_timestamp

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger(__name__)

MAX_PAGE = 1000
_COLUMNS = tuple(f.name for f in fields(AnswerRecord))
_INSERT_ANSWER = (
    f"INSERT INTO answers ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)}) "
    "ON CONFLICT (answer_id) DO NOTHING"
)


class Store:
    """The feedback database at `path` (created with its folders if missing, migrated on open)."""

    def __init__(self, path: Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
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

    def _load(self, row: dict[str, Any]) -> AnswerRecord:
        try:
            return AnswerRecord.from_row(row)
        except InvalidRecord as exc:
            raise StoreCorrupt(f"{self.path}: a stored answer cannot be read ({exc})") from exc

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
        with self._session() as db, write_transaction(db):
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
        rows = list(db.query("SELECT * FROM answers WHERE answer_id = ?", [answer_id]))
        if not rows:
            raise AnswerNotFound(
                f"no answer with id {answer_id!r}; check the id, or that the service and this reader use "
                "the same data directory"
            )
        return rows[0]

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
        where, params = _where(since, until, model_version, conversation_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_PAGE:
            raise InvalidFilter(
                f"limit must be an integer in [0, {MAX_PAGE}], got {limit!r}; page with offset"
            )
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidFilter(f"offset must be an integer >= 0, got {offset!r}")
        sql = f"SELECT * FROM answers{where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?"
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
        where, params = _where(since, until, model_version, conversation_id)
        with self._session() as db:
            return int(db.execute(f"SELECT count(*) FROM answers{where}", params).fetchone()[0])


def _where(
    since: str | None, until: str | None, model_version: str | None, conversation_id: str | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for name, value, op in (("since", since, ">="), ("until", until, "<")):
        if value is None:
            continue
        try:
            params.append(normalize_timestamp(value))
        except (ValueError, AttributeError) as exc:
            raise InvalidFilter(f"{name}: {exc}") from None
        clauses.append(f"created_at {op} ?")
    for column, value in (("model_version", model_version), ("conversation_id", conversation_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
