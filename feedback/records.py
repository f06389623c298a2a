"""What the store keeps about each answer: the question, the answer and everything that produced it.

An `AnswerRecord` holds enough provenance to learn from the answer and to explain it later (model,
index and prompt-template versions, the retrieved chunks with their scores, the generation
parameters, the full prompt the model saw, token counts and latencies). Records validate themselves
on construction, and the store validates them again before writing, since their lists and dicts
stay mutable.

`to_row()` / `from_row()` convert to and from a row of the `answers` table: one column per field,
lists and dicts as JSON text (keys sorted, no NaN), `refused` as 0/1.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from feedback.errors import InvalidRecord
from feedback.validation import (
    MAX_ID_CHARS,
    check_count,
    check_fields,
    check_id,
    check_json_object,
    check_number,
    check_text,
    check_timestamp,
    dump_json,
    fail,
)

__all__ = ["MAX_ID_CHARS", "AnswerRecord", "Citation", "RetrievedChunk", "dump_json"]


@dataclass(frozen=True)
class RetrievedChunk:
    """One passage retrieval returned for the question, in rank order (rank 1 is the best)."""

    rank: int
    chunk_id: str
    source: str
    section: str
    score: float

    def __post_init__(self) -> None:
        check_count("RetrievedChunk", "rank", self.rank, minimum=1)
        check_id("RetrievedChunk", "chunk_id", self.chunk_id)
        check_text("RetrievedChunk", "source", self.source)
        check_text("RetrievedChunk", "section", self.section, required=False)
        check_number("RetrievedChunk", "score", self.score)

    @classmethod
    def from_dict(cls, data: Any) -> RetrievedChunk:
        d = check_fields("RetrievedChunk", data, tuple(f.name for f in fields(cls)))
        return cls(**d)


@dataclass(frozen=True)
class Citation:
    """A numbered citation `[n]` in the answer and the chunk it points to."""

    n: int
    chunk_id: str
    source: str
    section: str
    title: str

    def __post_init__(self) -> None:
        check_count("Citation", "n", self.n, minimum=1)
        check_id("Citation", "chunk_id", self.chunk_id)
        check_text("Citation", "source", self.source)
        check_text("Citation", "section", self.section, required=False)
        check_text("Citation", "title", self.title, required=False)

    @classmethod
    def from_dict(cls, data: Any) -> Citation:
        d = check_fields("Citation", data, tuple(f.name for f in fields(cls)))
        return cls(**d)


@dataclass(frozen=True)
class AnswerRecord:
    """One answer the service gave, with its provenance. `created_at` is canonical UTC text
    (`feedback.timestamps.utc_now()`)."""

    answer_id: str
    conversation_id: str
    user_id: str
    created_at: str
    model_version: str
    index_version: str
    prompt_template_hash: str
    question: str
    messages: list[dict[str, str]]  # the conversation as the client sent it: role/content
    prompt: str  # the full rendered prompt the model saw, retrieved context included ("" when refused)
    answer: str
    refused: bool
    confidence: float  # P(answerable) from the retrieval signals, 0..1
    retrieved: list[RetrievedChunk]
    citations: list[Citation]
    generation: dict[str, Any]  # temperature, top_p, max_tokens, seed...
    prompt_tokens: int
    completion_tokens: int
    latency_ms: dict[str, float]  # retrieval, prompt, generation, total, ttft...
    finish_reason: str
    kind: str = "generated"  # generated | extractive (passage sentences replaced a failed answer) | refusal
    passage_groups: list[str] = field(default_factory=list)  # access groups of the prompt's passages

    KINDS: ClassVar[tuple[str, ...]] = ("generated", "extractive", "refusal")
    JSON_COLUMNS: ClassVar[tuple[str, ...]] = (
        "messages",
        "retrieved",
        "citations",
        "generation",
        "latency_ms",
        "passage_groups",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise InvalidRecord naming the first malformed field."""
        owner = "AnswerRecord"
        for name in ("answer_id", "conversation_id", "user_id"):
            check_id(owner, name, getattr(self, name))
        check_timestamp(owner, "created_at", self.created_at)
        for name in ("model_version", "index_version", "prompt_template_hash", "finish_reason"):
            check_id(owner, name, getattr(self, name))
        check_text(owner, "question", self.question)
        check_text(owner, "prompt", self.prompt, required=not self.refused)  # a refusal prompts nothing
        check_text(owner, "answer", self.answer, required=False)
        if not isinstance(self.messages, list) or not self.messages:
            raise fail(
                owner, "messages", "a non-empty list of {'role': ..., 'content': ...} dicts", self.messages
            )
        for i, message in enumerate(self.messages):
            if not (
                isinstance(message, dict)
                and all(isinstance(k, str) and isinstance(v, str) for k, v in message.items())
                and isinstance(message.get("role"), str)
                and message["role"].strip()
                and "content" in message
            ):
                raise fail(
                    owner, f"messages[{i}]", "a dict of strings with a 'role' and a 'content'", message
                )
        if not isinstance(self.refused, bool):
            raise fail(owner, "refused", "True or False", self.refused)
        check_number(owner, "confidence", self.confidence, low=0.0, high=1.0)
        for name, kind in (("retrieved", RetrievedChunk), ("citations", Citation)):
            items = getattr(self, name)
            if not isinstance(items, list) or not all(isinstance(item, kind) for item in items):
                raise fail(owner, name, f"a list of {kind.__name__}", items)
            for item in items:
                item.__post_init__()  # lists are mutable: re-check what they hold now
        check_json_object(owner, "generation", self.generation)
        check_count(owner, "prompt_tokens", self.prompt_tokens)
        check_count(owner, "completion_tokens", self.completion_tokens)
        check_json_object(owner, "latency_ms", self.latency_ms)
        for stage, ms in self.latency_ms.items():
            check_number(owner, f"latency_ms[{stage!r}]", ms, low=0.0)
        if self.kind not in self.KINDS:
            raise fail(owner, "kind", f"one of {', '.join(self.KINDS)}", self.kind)
        if not isinstance(self.passage_groups, list) or not all(
            isinstance(g, str) and g for g in self.passage_groups
        ):
            raise fail(owner, "passage_groups", "a list of group names", self.passage_groups)

    def to_row(self) -> dict[str, Any]:
        """The `answers` row: scalar fields as they are, `refused` as 0/1, lists and dicts as JSON text."""
        row: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        row["refused"] = int(self.refused)
        row["retrieved"] = [asdict(chunk) for chunk in self.retrieved]
        row["citations"] = [asdict(citation) for citation in self.citations]
        for name in self.JSON_COLUMNS:
            row[name] = dump_json(row[name])
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AnswerRecord:
        """The record a row holds; InvalidRecord when the row is incomplete or malformed."""
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in row]
        if missing:
            raise InvalidRecord(f"answer row lacks the columns {missing}")
        values = {name: row[name] for name in names}
        try:
            for name in cls.JSON_COLUMNS:
                values[name] = json.loads(values[name])
        except (TypeError, ValueError) as exc:
            raise InvalidRecord(f"answer row {row['answer_id']!r} holds malformed JSON: {exc}") from None
        if values["refused"] in (0, 1):
            values["refused"] = bool(values["refused"])
        if not isinstance(values["retrieved"], list) or not isinstance(values["citations"], list):
            raise InvalidRecord(
                f"answer row {row['answer_id']!r}: retrieved and citations must be JSON lists"
            )
        values["retrieved"] = [RetrievedChunk.from_dict(d) for d in values["retrieved"]]
        values["citations"] = [Citation.from_dict(d) for d in values["citations"]]
        return cls(**values)
