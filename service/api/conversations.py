"""`GET /api/conversations` and `GET /api/conversations/{id}`: the caller's conversation history.

Each caller lists and opens their own conversations only; another user's conversation answers 404, as
one that does not exist (never 403, which would confirm that the id is in use). Operators may open
anyone's conversation by id (every user's turns under that id, each with its asker); their listing is
still their own.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Path, Query

from feedback.filters import MAX_OFFSET
from service.api.deps import IdentityDep, StoreDep
from service.api.responses import errors
from service.errors import NotFound

router = APIRouter(tags=["conversations"])

CONVERSATION_ID = Path(max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$", description="As the chat API takes it.")


@router.get("/api/conversations", responses=errors(401, 422, 503))
def list_conversations(
    identity: IdentityDep,
    store: StoreDep,
    limit: int = Query(20, ge=1, le=200),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """The caller's conversations, most recently active first: id, title (the first question), start,
    last activity and number of turns."""
    conversations = store.list_conversations(identity.user, limit=limit, offset=offset)
    return {
        "total": store.count_conversations(identity.user),
        "conversations": [asdict(c) for c in conversations],
    }


@router.get("/api/conversations/{conversation_id}", responses=errors(401, 404, 422, 503))
def get_conversation(
    identity: IdentityDep, store: StoreDep, conversation_id: str = CONVERSATION_ID
) -> dict[str, Any]:
    """One conversation's turns in order (question, answer, citations, kind): the caller's own, or, for an
    operator, everybody's under this id. Send the turns back as `messages`, with this
    `conversation_id`, to continue it through `POST /v1/chat/completions`."""
    turns = store.conversation(conversation_id, None if identity.is_operator else identity.user)
    if not turns:
        raise NotFound(f"no conversation {conversation_id!r}")  # nor one of someone else's
    return {"conversation_id": conversation_id, "turns": [asdict(t) for t in turns]}
