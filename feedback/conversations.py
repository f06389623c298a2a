"""Conversations as their asker sees them again: read from the answers table, never stored apart.

A conversation is the answers one user received under one `conversation_id`, oldest first: each answer
row holds the question it answered (the last message the client sent) and the answer. Left out:
- answers cut off when the client went away (`finish_reason = 'cancelled'`): the chat took the
  question back, so it is no turn of the conversation;
- the two answers of a side-by-side comparison (a vote between alternatives, not a chat).

Conversation ids are chosen by clients (the chat API takes one), so two users can write under the same
id: every reader here takes the user whose turns it returns, and a listing counts only that user's.
The `ConversationMethods` mixin gives `feedback.store.Store` its readers.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from feedback.errors import StoreCorrupt
from feedback.filters import check_page
from feedback.records import Citation
from feedback.validation import check_id

if TYPE_CHECKING:
    import sqlite3

    from sqlite_utils import Database

# the answer rows that are turns of a conversation (alias `a`)
_TURNS = """
    a.finish_reason <> 'cancelled'
    AND NOT EXISTS (SELECT 1 FROM comparisons c WHERE c.left_answer_id = a.answer_id)
    AND NOT EXISTS (SELECT 1 FROM comparisons c WHERE c.right_answer_id = a.answer_id)
"""
_LIST = f"""
    SELECT a.conversation_id,
           min(a.created_at) AS started_at,
           max(a.created_at) AS last_activity,
           count(*) AS turns,
           max(a.rowid) AS last_row,
           (SELECT json_extract(f.messages, '$[#-1].content') FROM answers f
             WHERE f.conversation_id = a.conversation_id AND f.user_id = a.user_id
               AND f.finish_reason <> 'cancelled'
             ORDER BY f.created_at, f.rowid LIMIT 1) AS title
    FROM answers a
    WHERE a.user_id = ? AND {_TURNS}
    GROUP BY a.conversation_id
    ORDER BY last_activity DESC, last_row DESC
    LIMIT ? OFFSET ?
"""
_COUNT = f"SELECT count(DISTINCT a.conversation_id) FROM answers a WHERE a.user_id = ? AND {_TURNS}"
_GET = f"""
    SELECT a.answer_id, a.user_id, a.created_at, a.messages, a.answer, a.citations, a.kind, a.refused
    FROM answers a
    WHERE a.conversation_id = ? AND (? IS NULL OR a.user_id = ?) AND {_TURNS}
    ORDER BY a.created_at, a.rowid
"""


@dataclass(frozen=True)
class ConversationSummary:
    """One line of a user's history: the first question is its title."""

    conversation_id: str
    title: str
    started_at: str
    last_activity: str
    turns: int


@dataclass(frozen=True)
class ConversationTurn:
    """A question and the answer it got, with what the answer cited and how it was made."""

    answer_id: str
    user_id: str
    created_at: str
    question: str
    answer: str
    citations: list[Citation]
    kind: str  # generated | extractive | refusal
    refused: bool


def list_conversations(
    conn: sqlite3.Connection, user_id: str, *, limit: int = 20, offset: int = 0
) -> list[ConversationSummary]:
    """`user_id`'s conversations, the most recently active first (ties: the latest written first)."""
    check_id("list_conversations", "user_id", user_id)
    check_page(limit, offset)
    rows = conn.execute(_LIST, (user_id, limit, offset)).fetchall()
    return [
        ConversationSummary(
            conversation_id=str(cid),
            title=str(title or ""),
            started_at=str(started),
            last_activity=str(last),
            turns=int(turns),
        )
        for cid, started, last, turns, _row, title in rows
    ]


def count_conversations(conn: sqlite3.Connection, user_id: str) -> int:
    """How many conversations `list_conversations` pages through."""
    check_id("count_conversations", "user_id", user_id)
    return int(conn.execute(_COUNT, (user_id,)).fetchone()[0])


def conversation_turns(
    conn: sqlite3.Connection, conversation_id: str, user_id: str | None
) -> list[ConversationTurn]:
    """The turns of `conversation_id` in order, only `user_id`'s (None: everybody's, for operators);
    empty when there is none."""
    check_id("conversation_turns", "conversation_id", conversation_id)
    if user_id is not None:
        check_id("conversation_turns", "user_id", user_id)
    rows = conn.execute(_GET, (conversation_id, user_id, user_id)).fetchall()
    return [_turn(row) for row in rows]


def _turn(row: tuple[Any, ...]) -> ConversationTurn:
    answer_id, user_id, created_at, messages, answer, citations, kind, refused = row
    try:
        asked = json.loads(messages)
        question = str(asked[-1]["content"])
        cited = [Citation.from_dict(c) for c in json.loads(citations)]
    except (TypeError, ValueError, KeyError, IndexError) as exc:
        raise StoreCorrupt(f"answer {answer_id!r} cannot be read as a conversation turn ({exc})") from exc
    return ConversationTurn(
        str(answer_id), str(user_id), str(created_at), question, str(answer), cited, str(kind), bool(refused)
    )


class ConversationMethods:
    """The Store's conversation readers (a mixin of feedback.store.Store)."""

    # provided by Store
    def _session(self) -> AbstractContextManager[Database]:
        raise NotImplementedError

    def list_conversations(
        self, user_id: str, *, limit: int = 20, offset: int = 0
    ) -> list[ConversationSummary]:
        """`user_id`'s conversations, most recently active first; page with `limit` and `offset`."""
        with self._session() as db:
            return list_conversations(db.conn, user_id, limit=limit, offset=offset)

    def count_conversations(self, user_id: str) -> int:
        with self._session() as db:
            return count_conversations(db.conn, user_id)

    def conversation(self, conversation_id: str, user_id: str | None) -> list[ConversationTurn]:
        """The turns of one conversation, oldest first: `user_id`'s only, or everybody's with None."""
        with self._session() as db:
            return conversation_turns(db.conn, conversation_id, user_id)
