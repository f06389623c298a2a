"""The Store's feedback methods: votes, corrections, comparisons, audit events.

A mixin of feedback.store.Store, kept apart so each file reads in one sitting: every method checks
its input, then runs the concept module's write (feedback.votes, .corrections, .comparisons, .audit)
through `Store._write` (one transaction, at most once per idempotency key) or reads through
`Store._session`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from feedback import audit, comparisons, corrections, idempotency, votes
from feedback.audit import AuditEvent
from feedback.comparisons import Choice, Comparison
from feedback.corrections import Correction
from feedback.errors import InvalidRecord
from feedback.filters import check_page
from feedback.timestamps import normalize_timestamp
from feedback.votes import Reason, Vote, VoteEvent, VoteValue

if TYPE_CHECKING:
    from sqlite_utils import Database

R = TypeVar("R", bound=idempotency.JsonResult)


class FeedbackMethods:
    # provided by Store
    def _session(self) -> AbstractContextManager[Database]:
        raise NotImplementedError

    def _transaction(self, db: Database) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _write(
        self,
        user_id: str,
        endpoint: str,
        key: str | None,
        request: dict[str, Any],
        result_type: type[R],
        write: Callable[[sqlite3.Connection, str], R],
    ) -> R:
        raise NotImplementedError

    # -- votes ------------------------------------------------------------------------------------

    def vote(
        self,
        answer_id: str,
        user_id: str,
        value: VoteValue | str,
        *,
        reasons: Iterable[Reason | str] = (),
        comment: str | None = None,
        idempotency_key: str | None = None,
    ) -> Vote:
        """Set the user's current vote on the answer (`up`, `down`, or `none` to withdraw it) and log
        the change; see feedback.votes for the rules. Raises AnswerNotFound, InvalidRecord (a value to
        fix) or IdempotencyConflict."""
        v, r, c = votes.normalize(value, reasons, comment)
        request = {"answer_id": answer_id, "value": v.value, "reasons": [x.value for x in r], "comment": c}
        return self._write(
            user_id, "vote", idempotency_key, request, Vote,
            lambda conn, now: votes.cast(conn, answer_id, user_id, v, r, c, now),
        )  # fmt: skip

    def get_vote(self, answer_id: str, user_id: str) -> Vote | None:
        """The user's current vote on the answer, None when they never voted on it."""
        with self._session() as db:
            return votes.get(db.conn, answer_id, user_id)

    def list_votes(
        self, *, answer_id: str | None = None, user_id: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Vote]:
        """Current votes (withdrawn ones included, as `none`), most recently changed first."""
        check_page(limit, offset)
        with self._session() as db:
            return votes.listing(db.conn, answer_id, user_id, limit, offset)

    def vote_history(self, answer_id: str, *, user_id: str | None = None) -> list[VoteEvent]:
        """Every change of the votes on the answer (of one user, or all), oldest first."""
        with self._session() as db:
            return votes.history(db.conn, answer_id, user_id)

    # -- corrections ------------------------------------------------------------------------------

    def add_correction(
        self, answer_id: str, user_id: str, text: str, *, idempotency_key: str | None = None
    ) -> Correction:
        """Store the answer as it should have been (see feedback.corrections). Raises AnswerNotFound,
        InvalidRecord or IdempotencyConflict."""
        text = corrections.normalize_text(text)
        return self._write(
            user_id, "correction", idempotency_key, {"answer_id": answer_id, "text": text}, Correction,
            lambda conn, now: corrections.add(conn, uuid.uuid4().hex, answer_id, user_id, text, now),
        )  # fmt: skip

    def list_corrections(
        self,
        *,
        answer_id: str | None = None,
        user_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Correction]:
        """Corrections written in [since, until), newest first (every version, superseded ones too)."""
        check_page(limit, offset)
        with self._session() as db:
            return corrections.listing(db.conn, answer_id, user_id, since, until, limit, offset)

    # -- comparisons ------------------------------------------------------------------------------

    def create_comparison(
        self, user_id: str, left_answer_id: str, right_answer_id: str, *, idempotency_key: str | None = None
    ) -> Comparison:
        """Record a pair shown to the user, `left_answer_id` on the left (see feedback.comparisons).
        Raises AnswerNotFound, InvalidRecord or IdempotencyConflict."""
        request = {"left_answer_id": left_answer_id, "right_answer_id": right_answer_id}
        return self._write(
            user_id, "comparison", idempotency_key, request, Comparison,
            lambda conn, now: comparisons.create(
                conn, uuid.uuid4().hex, user_id, left_answer_id, right_answer_id, now
            ),
        )  # fmt: skip

    def choose(
        self, comparison_id: str, user_id: str, choice: Choice | str, *, idempotency_key: str | None = None
    ) -> Comparison:
        """Record the user's choice: `A` (left), `B` (right), `tie` or `both_bad`. Final: the same
        choice again returns the comparison unchanged, another raises AlreadyChosen. Raises also
        ComparisonNotFound (unknown id, or another user's), InvalidRecord or IdempotencyConflict."""
        chosen = comparisons.check_choice(choice)
        return self._write(
            user_id, "choice", idempotency_key,
            {"comparison_id": comparison_id, "choice": chosen.value}, Comparison,
            lambda conn, now: comparisons.choose(conn, comparison_id, user_id, chosen, now),
        )  # fmt: skip

    def get_comparison(self, comparison_id: str) -> Comparison:
        with self._session() as db:
            return comparisons.get(db.conn, comparison_id)

    def list_comparisons(
        self,
        *,
        user_id: str | None = None,
        since: str | None = None,
        until: str | None = None,
        decided: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Comparison]:
        """Comparisons shown in [since, until), newest first; `decided` keeps chosen (True) or open
        (False) ones only."""
        check_page(limit, offset)
        with self._session() as db:
            return comparisons.listing(db.conn, user_id, since, until, decided, limit, offset)

    # -- audit ------------------------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> AuditEvent:
        """Append an audit event: `actor` did `action` (e.g. "model.promote") to `target`."""
        details = {} if details is None else details
        audit.check(actor, action, target, details)
        request = {"action": action, "target": target, "details": details}
        return self._write(
            actor, "audit", idempotency_key, request, AuditEvent,
            lambda conn, now: audit.record(conn, actor, action, target, details, now),
        )  # fmt: skip

    def list_audit_events(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEvent]:
        """Audit events in [since, until), newest first."""
        check_page(limit, offset)
        with self._session() as db:
            return audit.listing(db.conn, actor, action, target, since, until, limit, offset)

    def forget_idempotency_keys(self, before: str) -> int:
        """Drop idempotency keys first used before `before` (any ISO-8601 time); returns how many."""
        try:
            cutoff = normalize_timestamp(before)
        except (ValueError, AttributeError) as exc:
            raise InvalidRecord(f"before: {exc}") from None
        with self._session() as db, self._transaction(db):
            return idempotency.forget_before(db.conn, cutoff)
