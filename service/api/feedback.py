"""Feedback endpoints: votes, corrections, side-by-side comparisons, statistics, exports.

Every write takes an optional idempotency key (`Idempotency-Key` header or `idempotency_key` field): a
retried request is stored once and answers like the first time.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import asdict
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from feedback.corrections import Correction
from feedback.errors import AnswerNotFound
from feedback.group_commit import GroupCommit
from feedback.store import Store
from feedback.votes import Reason, Vote
from service.api.chat import ChatMessage
from service.api.deps import AnswererDep, AppState, IdentityDep, OperatorDep, StoreDep
from service.api.responses import errors
from service.auth import Identity
from service.comparing import create_pair
from service.errors import InvalidRequest, NotFound, NotReady

router = APIRouter(tags=["feedback"])

MAX_KEY_CHARS = 128
KeyHeader = Annotated[str | None, Header(alias="Idempotency-Key", max_length=MAX_KEY_CHARS)]
B = TypeVar("B", bound=BaseModel)


class VoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Literal["up", "down", "none"]
    reasons: list[Reason] = Field(default_factory=list, max_length=7)
    comment: str | None = Field(None, max_length=2000)
    idempotency_key: str | None = Field(None, max_length=128)


class CorrectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=8000)
    idempotency_key: str | None = Field(None, max_length=128)


class CompareBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str | None = Field(None, min_length=1, max_length=4000)
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=256)
    max_tokens: int | None = Field(None, ge=1, le=1024)
    idempotency_key: str | None = Field(None, max_length=128)


class ChoiceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    choice: Literal["A", "B", "tie", "both_bad"]
    idempotency_key: str | None = Field(None, max_length=128)


def _visible_answer(store: Store, answer_id: str, identity: Identity) -> None:
    """404 unless the answer exists and the caller asked it (or is an operator)."""
    try:
        owner = store.answer_owner(answer_id)
    except AnswerNotFound:
        raise NotFound(f"no answer {answer_id!r}") from None
    if not identity.may_access(owner):
        raise NotFound(f"no answer {answer_id!r}")


async def _write_request(request: Request, model: type[B]) -> tuple[GroupCommit, Identity, str | None, B]:
    """(the writer, the caller, the Idempotency-Key header, the JSON body as `model`): 401, 503 or 422
    otherwise."""
    state: AppState = request.app.state.kbloop
    identity = state.auth.identify(request.headers.get("authorization"))
    if state.writer is None:
        raise NotReady(state.startup_error or "the service is starting")
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) > MAX_KEY_CHARS:
        raise InvalidRequest(f"Idempotency-Key: String should have at most {MAX_KEY_CHARS} characters")
    if not _is_json(request.headers.get("content-type", "")):
        raise InvalidRequest("send the body as JSON, with `Content-Type: application/json`")
    try:
        return state.writer, identity, key, model.model_validate_json(await request.body())
    except ValidationError as exc:  # answered like FastAPI's own body errors (service.app)
        raise RequestValidationError(exc.errors(include_url=False)) from None


def _is_json(content_type: str) -> bool:
    kind = content_type.partition(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _documented(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI of a write endpoint that reads its own request (`_write_request`)."""
    header = {"in": "header", "required": False, "schema": {"type": "string"}}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inlined(model.model_json_schema())}},
        },
        "parameters": [
            {"name": "answer_id", "in": "path", "required": True, "schema": {"type": "string"}},
            {**header, "name": "Idempotency-Key", "schema": {"type": "string", "maxLength": MAX_KEY_CHARS}},
        ],
        "security": [{"HTTPBearer": []}],  # service.api.deps.BEARER
    }


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its `$defs` put in place: in an OpenAPI document `#/$defs/...` would
    point at the document's root, where there are none."""
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


def _json(obj: Any) -> dict[str, Any]:
    data: dict[str, Any] = asdict(obj)
    return data


def _written(obj: Vote | Correction) -> Response:
    """A stored vote or correction as JSON, without FastAPI's response-model pass (the write endpoints
    are the hot path of feedback ingestion; see bench/feedback.py)."""
    return Response(json.dumps(obj.to_dict(), ensure_ascii=False), media_type="application/json")


# The two writes below are the hot path of feedback ingestion (bench/feedback.py). They read their
# request by hand (`_write_request`: the checks and errors of FastAPI's dependencies and body parsing,
# which took about a third of the app's CPU per vote, measured in-process), then run in the group
# commit's batches (feedback.group_commit) and are answered once their batch has committed.


@router.post(
    "/api/answers/{answer_id}/vote",
    openapi_extra=_documented(VoteBody),
    responses=errors(401, 404, 409, 413, 422, 503),
)
async def vote(request: Request) -> Response:
    """Thumbs up, down (with reasons and a comment) or `none` (withdrawn) on an answer you asked."""
    answer_id = request.path_params["answer_id"]
    writer, identity, key, body = await _write_request(request, VoteBody)
    store = writer.store

    def write() -> Vote:
        _visible_answer(store, answer_id, identity)
        return store.vote(answer_id, identity.user, body.value, reasons=body.reasons, comment=body.comment,
                          idempotency_key=body.idempotency_key or key)  # fmt: skip

    return _written(await writer.run(write))


@router.post(
    "/api/answers/{answer_id}/correction",
    openapi_extra=_documented(CorrectionBody),
    responses=errors(401, 404, 409, 413, 422, 503),
)
async def correction(request: Request) -> Response:
    """The answer as it should have been (kept as an SFT demonstration)."""
    answer_id = request.path_params["answer_id"]
    writer, identity, key, body = await _write_request(request, CorrectionBody)
    store = writer.store

    def write() -> Correction:
        _visible_answer(store, answer_id, identity)
        return store.add_correction(
            answer_id, identity.user, body.text, idempotency_key=body.idempotency_key or key
        )

    return _written(await writer.run(write))


def _side(answer: Any) -> dict[str, Any]:
    return {
        "answer_id": answer.answer_id,
        "text": answer.text,
        "citations": answer.kbloop_json()["citations"],
    }


@router.post("/api/compare", responses=errors(401, 404, 409, 413, 422, 503, 504))
async def compare(
    body: CompareBody, identity: IdentityDep, answerer: AnswererDep, key: KeyHeader = None
) -> dict[str, Any]:
    """Two anonymous answers to one question; the model versions are revealed after the choice."""
    if body.messages is None and body.question is None:
        raise InvalidRequest("send a `question` or the conversation as `messages`")
    if body.messages is not None:
        messages = [{"role": m.role, "content": m.text()} for m in body.messages]
    else:
        messages = [{"role": "user", "content": body.question or ""}]
    pair = await create_pair(
        answerer, identity, messages, max_tokens=body.max_tokens, idempotency_key=body.idempotency_key or key
    )
    return {
        "comparison_id": pair.comparison.comparison_id,
        "left": _side(pair.left),
        "right": _side(pair.right),
    }


@router.post("/api/compare/{comparison_id}/choice", responses=errors(401, 404, 409, 413, 422, 503))
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


@router.get("/api/stats", responses=errors(401, 403, 422, 503))
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


EXPORTED = {
    "description": "JSONL (preferences, thumbs, sft) or CSV (the `.csv` kinds), as an attachment.",
    "content": {
        "application/x-ndjson": {"schema": {"type": "string"}},
        "text/csv": {"schema": {"type": "string"}},
    },
}


@router.get("/api/export", response_class=Response, responses={200: EXPORTED, **errors(401, 403, 422, 503)})
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
