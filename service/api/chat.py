"""`POST /v1/chat/completions`: OpenAI-compatible chat, answered from the knowledge base with citations.

The response is an OpenAI `chat.completion` (or, with `stream: true`, `chat.completion.chunk` server-sent
events ending with `data: [DONE]`) plus a `kbloop` object: answer id, citations, passages, model and
index versions, whether the question was refused.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import KbloopError
from service.answering import Answer, ChatInput, Delta
from service.api.deps import AnswererDep, IdentityDep, StateDep
from service.api.responses import errors
from service.errors import InvalidRequest, ServiceError

log = logging.getLogger(__name__)
router = APIRouter(tags=["chat"])

MAX_MESSAGE_CHARS = 32_000


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "developer"]
    content: Annotated[str | list[TextPart], Field(description="Text, or a list of text parts.")]

    @field_validator("content")
    @classmethod
    def _flatten(cls, value: str | list[TextPart]) -> str | list[TextPart]:
        text = value if isinstance(value, str) else "".join(p.text for p in value)
        if len(text) > MAX_MESSAGE_CHARS:
            raise ValueError(f"a message may hold at most {MAX_MESSAGE_CHARS} characters")
        return text

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field("champion", max_length=128, description="An alias (champion, canary...) or a version.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    temperature: float = Field(0.3, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stream: bool = False
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: int = Field(1, ge=1, le=1, description="One choice per request.")
    user: str | None = Field(None, max_length=256)
    conversation_id: str | None = Field(None, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")


def _completion_id(answer_id: str) -> str:
    return f"chatcmpl-{answer_id}"


def _usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": answer.prompt_tokens + answer.completion_tokens,
    }


def _finish_reason(answer: Answer) -> str:
    return "length" if answer.finish_reason in ("length", "timeout") else "stop"


STREAMED = {
    "description": "A `chat.completion`, or with `stream: true` `chat.completion.chunk` server-sent events.",
    "content": {
        "text/event-stream": {  # each event, as FastAPI documents its own streams
            "itemSchema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {"type": "string", "description": "A chunk as JSON; the last is `[DONE]`."}
                },
            }
        }
    },
}


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={200: STREAMED, **errors(401, 404, 413, 422, 503, 504)},
)
async def chat_completions(
    body: ChatCompletionRequest, identity: IdentityDep, answerer: AnswererDep, state: StateDep
) -> dict[str, Any] | StreamingResponse:
    limit = state.settings.max_tokens_limit
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None and max_tokens > limit:
        raise InvalidRequest(f"max_tokens is {max_tokens}; this server allows at most {limit}")
    request = ChatInput(
        messages=[{"role": m.role, "content": m.text()} for m in body.messages],
        model=body.model,
        temperature=body.temperature,
        top_p=body.top_p,
        max_tokens=max_tokens,
        seed=body.seed,
        conversation_id=body.conversation_id,
        answer_id=uuid.uuid4().hex,
    )
    events = answerer.answer(request, identity)
    created = int(time.time())
    if not body.stream:
        text = ""
        async for event in events:
            if isinstance(event, Delta):
                text += event.text
            else:
                return {
                    "id": _completion_id(event.answer_id),
                    "object": "chat.completion",
                    "created": created,
                    "model": event.model_version,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": event.text},
                            "finish_reason": _finish_reason(event),
                        }
                    ],
                    "usage": _usage(event),
                    "kbloop": event.kbloop_json(),
                }
        raise ServiceError("the answer ended without a result")
    # Pull the first event before answering 200, so that a full queue, an unknown model or an
    # unready index is still a proper HTTP error rather than a broken stream.
    first = await anext(events)
    return StreamingResponse(
        _sse(first, events, created, body.model, _completion_id(request.answer_id or "")),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    first: Delta | Answer, events: AsyncIterator[Delta | Answer], created: int, model: str, completion_id: str
) -> AsyncIterator[str]:
    def chunk(delta: dict[str, Any], finish: str | None = None, extra: dict[str, Any] | None = None) -> str:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **(extra or {}),
        }
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        event: Delta | Answer = first
        while True:
            if isinstance(event, Delta):
                if event.text:
                    yield chunk({"content": event.text})
            else:
                model = event.model_version
                yield chunk(
                    {}, _finish_reason(event), {"usage": _usage(event), "kbloop": event.kbloop_json()}
                )
                break
            event = await anext(events)
    except KbloopError as exc:
        log.warning("stream failed: %s", exc)
        yield f"data: {json.dumps({'error': {'code': str(exc.code), 'message': exc.message}})}\n\n"
    except StopAsyncIteration:
        pass
    yield "data: [DONE]\n\n"
