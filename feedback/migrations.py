"""Versioned schema migrations of the feedback database.

`MIGRATIONS` is append-only: a released migration is never edited, a schema change is a new entry with
the next version number. Each migration is written as explicit SQL, so the schema a version creates
never changes under a library upgrade. `migrate` applies the pending ones in order, each in its own
`BEGIN IMMEDIATE` transaction together with its `schema_migrations` row: a crash leaves the database
at the previous version, never half-migrated, and two processes opening a new database at once apply
each migration exactly once (the second re-reads the version under the write lock and skips it).

A database stamped with a version newer than the newest migration here was migrated by a newer
kbloop: `migrate` raises SchemaTooNew rather than let an older kbloop write into it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from feedback.connection import write_transaction
from feedback.errors import SchemaTooNew, StoreCorrupt
from feedback.timestamps import utc_now

if TYPE_CHECKING:
    from sqlite_utils import Database

MIGRATIONS_TABLE = "schema_migrations"


class Migration(NamedTuple):
    version: int
    name: str
    apply: Callable[[Database], None]


def _run(db: Database, *statements: str) -> None:
    for statement in statements:
        db.execute(statement)


def _create_answers(db: Database) -> None:
    """One row per answer the service gave, with its provenance (see feedback.records.AnswerRecord)."""
    _run(
        db,
        """
        CREATE TABLE answers (
            answer_id TEXT PRIMARY KEY NOT NULL,
            conversation_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            model_version TEXT NOT NULL,
            index_version TEXT NOT NULL,
            prompt_template_hash TEXT NOT NULL,
            question TEXT NOT NULL,
            messages TEXT NOT NULL CHECK (json_valid(messages)),
            prompt TEXT NOT NULL,
            answer TEXT NOT NULL,
            refused INTEGER NOT NULL CHECK (refused IN (0, 1)),
            confidence REAL NOT NULL CHECK (confidence BETWEEN 0 AND 1),
            retrieved TEXT NOT NULL CHECK (json_valid(retrieved)),
            citations TEXT NOT NULL CHECK (json_valid(citations)),
            generation TEXT NOT NULL CHECK (json_valid(generation)),
            prompt_tokens INTEGER NOT NULL CHECK (prompt_tokens >= 0),
            completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
            latency_ms TEXT NOT NULL CHECK (json_valid(latency_ms)),
            finish_reason TEXT NOT NULL
        ) STRICT
        """,
        # Listings are newest first, alone or within one model version, conversation or user.
        "CREATE INDEX answers_created_at ON answers (created_at)",
        "CREATE INDEX answers_model_version ON answers (model_version, created_at)",
        "CREATE INDEX answers_conversation ON answers (conversation_id, created_at)",
        "CREATE INDEX answers_user ON answers (user_id, created_at)",
    )


def _create_feedback(db: Database) -> None:
    """Votes (current value and history), corrections, comparisons, audit events, idempotency keys.

    The CHECKs hold what makes a row meaningful (value sets, reasons only on a thumbs down, a choice
    with its time); length caps are policy and live in Python (feedback.votes, feedback.corrections),
    so changing one needs no migration.
    """
    _run(
        db,
        # one current vote per (answer, user); value 'none' is a withdrawn vote
        """
        CREATE TABLE votes (
            answer_id TEXT NOT NULL REFERENCES answers (answer_id),
            user_id TEXT NOT NULL,
            value TEXT NOT NULL CHECK (value IN ('up', 'down', 'none')),
            reasons TEXT NOT NULL CHECK (json_valid(reasons) AND json_type(reasons) = 'array'),
            comment TEXT CHECK (comment IS NULL OR length(comment) > 0),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (answer_id, user_id),
            CHECK (value = 'down' OR reasons = '[]'),
            CHECK (value <> 'none' OR comment IS NULL)
        ) STRICT
        """,
        "CREATE INDEX votes_user ON votes (user_id, updated_at)",
        "CREATE INDEX votes_updated_at ON votes (updated_at)",
        # every change of a vote, oldest first by event_id; the last event of a vote is its current value
        """
        CREATE TABLE vote_events (
            event_id INTEGER PRIMARY KEY,
            answer_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            value TEXT NOT NULL CHECK (value IN ('up', 'down', 'none')),
            reasons TEXT NOT NULL CHECK (json_valid(reasons) AND json_type(reasons) = 'array'),
            comment TEXT CHECK (comment IS NULL OR length(comment) > 0),
            created_at TEXT NOT NULL,
            FOREIGN KEY (answer_id, user_id) REFERENCES votes (answer_id, user_id),
            CHECK (value = 'down' OR reasons = '[]'),
            CHECK (value <> 'none' OR comment IS NULL)
        ) STRICT
        """,
        "CREATE INDEX vote_events_vote ON vote_events (answer_id, user_id, event_id)",
        """
        CREATE TABLE corrections (
            correction_id TEXT PRIMARY KEY NOT NULL,
            answer_id TEXT NOT NULL REFERENCES answers (answer_id),
            user_id TEXT NOT NULL,
            text TEXT NOT NULL CHECK (length(trim(text)) > 0),
            created_at TEXT NOT NULL
        ) STRICT
        """,
        "CREATE INDEX corrections_answer ON corrections (answer_id, user_id, created_at)",
        "CREATE INDEX corrections_created_at ON corrections (created_at)",
        # a pair shown side by side (left = choice 'A'), then chosen once
        """
        CREATE TABLE comparisons (
            comparison_id TEXT PRIMARY KEY NOT NULL,
            user_id TEXT NOT NULL,
            left_answer_id TEXT NOT NULL REFERENCES answers (answer_id),
            right_answer_id TEXT NOT NULL REFERENCES answers (answer_id),
            created_at TEXT NOT NULL,
            choice TEXT CHECK (choice IN ('A', 'B', 'tie', 'both_bad')),
            chosen_at TEXT,
            CHECK (left_answer_id <> right_answer_id),
            CHECK ((choice IS NULL) = (chosen_at IS NULL))
        ) STRICT
        """,
        "CREATE INDEX comparisons_created_at ON comparisons (created_at)",
        "CREATE INDEX comparisons_chosen_at ON comparisons (chosen_at)",
        "CREATE INDEX comparisons_user ON comparisons (user_id, created_at)",
        "CREATE INDEX comparisons_left ON comparisons (left_answer_id)",
        "CREATE INDEX comparisons_right ON comparisons (right_answer_id)",
        """
        CREATE TABLE audit_events (
            event_id INTEGER PRIMARY KEY,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            details TEXT NOT NULL CHECK (json_valid(details) AND json_type(details) = 'object'),
            created_at TEXT NOT NULL
        ) STRICT
        """,
        "CREATE INDEX audit_events_created_at ON audit_events (created_at)",
        "CREATE INDEX audit_events_target ON audit_events (target, created_at)",
        "CREATE INDEX audit_events_action ON audit_events (action, created_at)",
        # the first result of each (user, endpoint, client key), replayed to retries of the same request
        """
        CREATE TABLE idempotency_keys (
            user_id TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            key TEXT NOT NULL,
            request_sha256 TEXT NOT NULL,
            response TEXT NOT NULL CHECK (json_valid(response)),
            created_at TEXT NOT NULL,
            PRIMARY KEY (user_id, endpoint, key)
        ) STRICT, WITHOUT ROWID
        """,
        "CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at)",
    )


def _answer_kind_and_groups(db: Database) -> None:
    """Which kind of answer was shown (`generated` by the model, or `extractive`: passage sentences that
    replaced a generated answer that failed its checks), and the access groups of the passages in its
    prompt (empty: every passage was public), so training can keep restricted text out of shared models."""
    _run(
        db,
        "ALTER TABLE answers ADD COLUMN kind TEXT NOT NULL DEFAULT 'generated' "
        "CHECK (kind IN ('generated', 'extractive', 'refusal'))",
        "ALTER TABLE answers ADD COLUMN passage_groups TEXT NOT NULL DEFAULT '[]' "
        "CHECK (json_valid(passage_groups))",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create answers", _create_answers),
    Migration(2, "votes, corrections, comparisons, audit events, idempotency keys", _create_feedback),
    Migration(3, "answer kind and passage access groups", _answer_kind_and_groups),
)


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def schema_version(db: Database) -> int:
    """The newest migration applied to `db`; 0 for a database kbloop never migrated."""
    if not db.table(MIGRATIONS_TABLE).exists():
        return 0
    value = db.execute(f"SELECT max(version) FROM {MIGRATIONS_TABLE}").fetchone()[0]
    return int(value or 0)


def _check_not_newer(current: int, latest: int) -> None:
    if current > latest:
        raise SchemaTooNew(
            f"the feedback database is at schema version {current}, this kbloop knows versions up to "
            f"{latest}; upgrade kbloop (or point it at another data directory) instead of writing into it"
        )


def _check_is_ours(db: Database) -> None:
    """Refuse to add tables to an unrelated SQLite database that was pointed at by mistake."""
    foreign = [
        name for name in db.table_names() if name != MIGRATIONS_TABLE and not name.startswith("sqlite_")
    ]
    if foreign:
        path = db.execute("PRAGMA database_list").fetchone()[2]
        raise StoreCorrupt(
            f"{path} is a SQLite database but not a kbloop feedback store (tables {foreign[:5]}, no "
            f"{MIGRATIONS_TABLE}); point kbloop at a new file"
        )


def migrate(db: Database, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the pending migrations in order; return the versions applied (empty when up to date)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1, 2, 3... in order, got {versions}")
    latest = latest_version(migrations)
    current = schema_version(db)  # a cheap read first: an up-to-date database takes no write lock
    _check_not_newer(current, latest)
    applied: list[int] = []
    for migration in migrations[current:]:
        with write_transaction(db):
            current = schema_version(db)  # another process may have migrated since the read above
            _check_not_newer(current, latest)
            if current >= migration.version:
                continue
            if current == 0:
                _check_is_ours(db)
            db.execute(
                f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            migration.apply(db)
            db.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, utc_now()),
            )
        applied.append(migration.version)
    return applied
