"""`GET /api/answers/{id}`: an answer's provenance record, for its author and for operators."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Query

from feedback.errors import AnswerNotFound, InvalidFilter
from feedback.filters import MAX_OFFSET
from service.api.deps import IdentityDep, OperatorDep, StoreDep
from service.api.responses import errors
from service.errors import InvalidRequest, NotFound

router = APIRouter(tags=["answers"])


@router.get("/api/answers/{answer_id}", responses=errors(401, 404, 422, 503))
def get_answer(answer_id: str, identity: IdentityDep, store: StoreDep) -> dict[str, Any]:
    try:
        record = store.get_answer(answer_id)
    except AnswerNotFound:
        raise NotFound(f"no answer {answer_id!r}") from None
    if not identity.may_access(record.user_id):
        raise NotFound(f"no answer {answer_id!r}")  # not 403: don't confirm other people's answer ids
    return asdict(record)


@router.get("/api/answers", responses=errors(401, 403, 422, 503))
def list_answers(
    _operator: OperatorDep,
    store: StoreDep,
    model_version: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
) -> dict[str, Any]:
    """Recent answers with their provenance (operators only)."""
    try:
        records = store.list_answers(
            since=since, until=until, model_version=model_version, limit=limit, offset=offset
        )
        total = store.count_answers(since=since, until=until, model_version=model_version)
    except InvalidFilter as exc:
        raise InvalidRequest(str(exc)) from exc
    return {"total": total, "answers": [asdict(r) for r in records]}
