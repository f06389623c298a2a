"""Feedback endpoints: votes, corrections, side-by-side comparisons, statistics, exports.

Every write takes an optional idempotency key (`Idempotency-Key` header or `idempotency_key` field): a
retried request is stored once and answers like the first time.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from feedback.errors import AnswerNotFound
from feedback.store import Store
from service.api.deps import AnswererDep, IdentityDep, OperatorDep, StoreDep
from service.auth import Identity
from service.comparing import create_pair
from service.errors import InvalidRequest, NotFound

router = APIRouter(tags=["feedback"])

KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128)]


class VoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Literal["up", "down", "none"]
    reasons: list[str] = Field(default_factory=list, max_length=7)
    comment: str | None = Field(None, max_length=2000)
    idempotency_key: str | None = Field(None, max_length=128)


class CorrectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=8000)
    idempotency_key: str | None = Field(None, max_length=128)


class CompareBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(None, min_length=1, max_length=4000)
    messages: list[dict[str, str]] | None = Field(None, min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=1024)
    idempotency_key: str | None = Field(None, max_length=128)


class ChoiceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    choice: Literal["A", "B", "tie", "both_bad"]
    idempotency_key: str | None = Field(None, max_length=128)


def _visible_answer(store: Store, answer_id: str, identity: Identity) -> None:
    """404 unless the answer exists and the caller asked it (or is an operator)."""
    try:
        record = store.get_answer(answer_id)
    except AnswerNotFound:
        raise NotFound(f"no answer {answer_id!r}") from None
    if record.user_id != identity.user and not identity.is_operator:
        raise NotFound(f"no answer {answer_id!r}")


def _json(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = asdict(obj)
    return data


def _written(obj: Any) -> Response:
    """A stored record as JSON, without FastAPI's response-model pass (the write endpoints are the hot
    path of feedback ingestion; see bench/feedback.py)."""
    return Response(json.dumps(asdict(obj), ensure_ascii=False), media_type="application/json")


@router.post("/api/answers/{answer_id}/vote")
async def vote(
    answer_id: str, body: VoteBody, identity: IdentityDep, store: StoreDep, key: KeyHeader = None
) -> Response:
    def write() -> Any:
        _visible_answer(store, answer_id, identity)
        return store.vote(answer_id, identity.user, body.value, reasons=body.reasons, comment=body.comment,
                          idempotency_key=body.idempotency_key or key)  # fmt: skip

    return _written(await asyncio.to_thread(write))


@router.post("/api/answers/{answer_id}/correction")
async def correction(
    answer_id: str, body: CorrectionBody, identity: IdentityDep, store: StoreDep, key: KeyHeader = None
) -> Response:
    def write() -> Any:
        _visible_answer(store, answer_id, identity)
        return store.add_correction(
            answer_id, identity.user, body.text, idempotency_key=body.idempotency_key or key
        )

    return _written(await asyncio.to_thread(write))


def _side(answer: Any) -> dict[str, Any]:
    return {
        "answer_id": answer.answer_id,
        "text": answer.text,
        "citations": answer.kbloop_json()["citations"],
    }


@router.post("/api/compare")
async def compare(
    body: CompareBody, identity: IdentityDep, answerer: AnswererDep, key: KeyHeader = None
) -> dict[str, Any]:
    """Two anonymous answers to one question; the model versions are revealed after the choice."""
    if body.messages is None and body.question is None:
        raise InvalidRequest("send a `question` or the conversation as `messages`")
    messages = body.messages or [{"role": "user", "content": body.question or ""}]
    pair = await create_pair(
        answerer, identity, messages, max_tokens=body.max_tokens, idempotency_key=body.idempotency_key or key
    )
    return {
        "comparison_id": pair.comparison.comparison_id,
        "left": _side(pair.left),
        "right": _side(pair.right),
    }


@router.post("/api/compare/{comparison_id}/choice")
async def choose(
    comparison_id: str, body: ChoiceBody, identity: IdentityDep, store: StoreDep, key: KeyHeader = None
) -> dict[str, Any]:
    result = await asyncio.to_thread(
        store.choose, comparison_id, identity.user, body.choice, idempotency_key=body.idempotency_key or key
    )
    left, right = await asyncio.gather(
        asyncio.to_thread(store.get_answer, result.left_answer_id),
        asyncio.to_thread(store.get_answer, result.right_answer_id),
    )
    return {
        **_json(result),
        "left_model_version": left.model_version,
        "right_model_version": right.model_version,
    }


@router.get("/api/stats")
async def stats(
    _operator: OperatorDep,
    store: StoreDep,
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
) -> dict[str, Any]:
    """Thumbs-up rates, win rates, the Bradley–Terry ranking, position bias, reasons (operators)."""

    def collect() -> dict[str, Any]:
        return {
            "thumbs": [
                _json(t) for t in store.thumbs_stats(since=since, until=until, model_version=model_version)
            ],
            "reasons": [
                _json(r) for r in store.reason_stats(since=since, until=until, model_version=model_version)
            ],
            "win_rates": [_json(w) for w in store.win_rates(since=since, until=until)],
            "ranking": [_json(r) for r in store.ranking(since=since, until=until, resamples=500)],
            "position_bias": _json(store.position_bias(since=since, until=until)),
        }

    return await asyncio.to_thread(collect)


ExportKind = Literal["preferences", "thumbs", "sft", "votes.csv", "comparisons.csv", "corrections.csv"]
EXPORT_KINDS = ("preferences", "thumbs", "sft", "votes.csv", "comparisons.csv", "corrections.csv")


def export_to_text(
    store: Store, kind: str, since: str | None, until: str | None, model_version: str | None
) -> tuple[str, Any]:
    """(the export as text, its summary) — shared by the API and `kbloop export`."""
    from feedback.export import export_demonstrations, export_preferences, export_thumbs
    from feedback.export_csv import Table, export_csv

    out = io.StringIO()
    if kind == "preferences":
        summary = export_preferences(store, out, since=since, until=until, model_version=model_version)
    elif kind == "thumbs":
        summary = export_thumbs(store, out, since=since, until=until, model_version=model_version)
    elif kind == "sft":
        summary = export_demonstrations(store, out, since=since, until=until, model_version=model_version)
    elif kind in ("votes.csv", "comparisons.csv", "corrections.csv"):
        table: Table = kind.removesuffix(".csv")  # type: ignore[assignment]
        summary = export_csv(store, out, table, since=since, until=until, model_version=model_version)
    else:
        raise InvalidRequest(f"unknown export {kind!r}; one of {', '.join(EXPORT_KINDS)}")
    return out.getvalue(), summary


@router.get("/api/export")
async def export(
    _operator: OperatorDep,
    store: StoreDep,
    kind: Annotated[ExportKind, Query(description="what to export")],
    since: str | None = None,
    until: str | None = None,
    model_version: str | None = None,
) -> Response:
    """TRL-ready JSONL (preference pairs, unpaired thumbs, SFT demonstrations) or CSV (operators)."""
    text, summary = await asyncio.to_thread(export_to_text, store, kind, since, until, model_version)
    media = "text/csv" if kind.endswith(".csv") else "application/x-ndjson"
    filename = kind if kind.endswith(".csv") else f"{kind}.jsonl"
    return Response(
        text,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Kbloop-Written": str(summary.written),
            "X-Kbloop-Skipped": str(sum(summary.skipped.values())),
        },
    )
