"""The deployment's golden set over HTTP (operators): turn an answer and its correction into a golden
item (`POST /api/golden`), list the set (`GET /api/golden`). feedback.golden owns the file."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from feedback.golden import add_item, golden_set, item_from_answer
from service.api.deps import OperatorDep, StateDep, StoreDep
from service.api.responses import errors

router = APIRouter(tags=["golden"])


class GoldenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer_id: str = Field(min_length=1, max_length=256, description="The stored answer to learn from.")
    question: str | None = Field(
        None, min_length=1, max_length=4000, description="Default: the question the answer was given to."
    )
    answer: str | None = Field(
        None, min_length=1, max_length=8000, description="Default: the newest correction of the answer."
    )
    answerable: bool = Field(True, description="False: the knowledge base does not cover it (a refusal).")
    category: str = Field("", max_length=100)


@router.post("/api/golden", responses=errors(401, 403, 404, 409, 413, 422, 503))
async def add_golden(
    body: GoldenBody, operator: OperatorDep, store: StoreDep, state: StateDep
) -> dict[str, Any]:
    """An answer plus its correction becomes a golden item: the answer's question and its newest
    correction (unless `question` / `answer` are given), the sources the answer cited. 404: unknown
    answer; 409: the golden set already holds this question (or this answer's item with other text);
    422: no correction and no `answer`. Sending the same item again returns it (`created` false)."""
    path = state.settings.golden_path

    def write() -> dict[str, Any]:
        item = item_from_answer(
            store,
            body.answer_id,
            question=body.question,
            answer=body.answer,
            answerable=body.answerable,
            category=body.category,
            added_by=operator.user,
        )
        stored, created = add_item(path, item)
        return {"item": stored.to_json(), "created": created}

    return await asyncio.to_thread(write)


@router.get("/api/golden", responses=errors(401, 403, 422, 503))
async def list_golden(
    _operator: OperatorDep,
    state: StateDep,
    split: Literal["train", "heldout"] | None = Query(None, description="Only this side of the split."),
) -> dict[str, Any]:
    """The golden set's items in file order, with where it lives."""
    items = await asyncio.to_thread(golden_set, state.settings.golden_path)
    if split is not None:
        items = [item for item in items if item.split == split]
    return {
        "path": str(state.settings.golden_path),
        "total": len(items),
        "items": [i.to_json() for i in items],
    }
