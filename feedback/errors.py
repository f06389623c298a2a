"""Named errors of the feedback store, each with a stable code the API and CLI can report.

Three families tell the API which status to answer without a table of codes: `NotFoundError` (an id
that names nothing: 404), `InvalidInput` (a value the caller must fix: 422) and `ConflictError` (a
write that contradicts one already made: 409). The rest (corrupt, busy, unavailable, too new) are
the server's problem.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from core.errors import KbloopError


class FeedbackErrorCode(StrEnum):
    ANSWER_NOT_FOUND = "answer_not_found"
    SCHEMA_TOO_NEW = "schema_too_new"
    STORE_CORRUPT = "store_corrupt"
    STORE_UNAVAILABLE = "store_unavailable"
    STORE_FULL = "store_full"
    STORE_BUSY = "store_busy"
    INVALID_RECORD = "invalid_record"
    INVALID_FILTER = "invalid_filter"
    COMPARISON_NOT_FOUND = "comparison_not_found"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    ALREADY_CHOSEN = "already_chosen"
    INVALID_GOLDEN = "invalid_golden"
    DUPLICATE_GOLDEN = "duplicate_golden"


class FeedbackError(KbloopError):
    """Base class: `code` says what went wrong, the message says what to do about it."""

    code: ClassVar[FeedbackErrorCode] = FeedbackErrorCode.STORE_CORRUPT


class NotFoundError(FeedbackError):
    """An id names nothing in this store (404)."""

    status = 404


class InvalidInput(FeedbackError):
    """The caller sent a value it must fix before retrying (422)."""

    status = 422


class ConflictError(FeedbackError):
    """The write contradicts one already made; retrying the same request will not help (409)."""

    status = 409


class AnswerNotFound(NotFoundError):
    """No answer has this id (a typo, or an answer recorded in another data directory)."""

    code = FeedbackErrorCode.ANSWER_NOT_FOUND


class SchemaTooNew(FeedbackError):
    """The database was migrated by a newer kbloop; this one must not write into it."""

    code = FeedbackErrorCode.SCHEMA_TOO_NEW


class StoreCorrupt(FeedbackError):
    """The file is not a SQLite database, not a kbloop store, or holds rows that cannot be read."""

    code = FeedbackErrorCode.STORE_CORRUPT


class StoreUnavailable(FeedbackError):
    """The database cannot be opened or written (permissions, disk full, store closed)."""

    code = FeedbackErrorCode.STORE_UNAVAILABLE
    status = 503
    retry_after = 1


class StoreFull(StoreUnavailable):
    """The disk holding the database is full: the write was not stored, and storing works again once
    space is freed (no restart needed)."""

    code = FeedbackErrorCode.STORE_FULL
    status = 507  # Insufficient Storage: retrying soon will not help
    retry_after = 60


class StoreBusy(FeedbackError):
    """Another connection held the write lock for longer than the busy timeout; retrying may work."""

    code = FeedbackErrorCode.STORE_BUSY
    status = 503
    retry_after = 1


class InvalidRecord(InvalidInput):
    """A record is malformed, or reuses an id that already names a different record."""

    code = FeedbackErrorCode.INVALID_RECORD


class InvalidFilter(InvalidInput):
    """A listing filter (time bound, limit, offset) is malformed."""

    code = FeedbackErrorCode.INVALID_FILTER


class ComparisonNotFound(NotFoundError):
    """No comparison has this id, or it was shown to another user (whose ids are not confirmed)."""

    code = FeedbackErrorCode.COMPARISON_NOT_FOUND


class IdempotencyConflict(ConflictError):
    """An idempotency key this user already used on this endpoint came back with a different request."""

    code = FeedbackErrorCode.IDEMPOTENCY_CONFLICT


class AlreadyChosen(ConflictError):
    """The comparison already holds a different choice; a choice is final once made."""

    code = FeedbackErrorCode.ALREADY_CHOSEN


class InvalidGolden(InvalidInput):
    """A golden-set file or item is malformed; the message names the file, the line and the column."""

    code = FeedbackErrorCode.INVALID_GOLDEN


class DuplicateGolden(ConflictError):
    """The golden set already holds an item with this id or this (normalised) question."""

    code = FeedbackErrorCode.DUPLICATE_GOLDEN
