"""One answer, end to end: retrieve, refuse or prompt, generate (streaming), cite, record with provenance.

The API and the web UI both call `Answerer.answer`, an async iterator of `Delta` events (the text as it
is generated) that ends with one `Answer` (the whole result, already stored). Retrieval and the store
run in worker threads; generation runs in the engine's own thread. `retrieve` and `render_prompt` are
module functions so the trainer (trainer.prompts) renders prompts exactly as the service does.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings
from feedback.records import AnswerRecord, Citation, RetrievedChunk
from feedback.store import Store
from feedback.timestamps import utc_now
from rag.context import render_prompt, retrieve
from rag.extractive import candidate_sentences, extractive_answer
from rag.grounding import StreamingCheck, coverage
from rag.prompting import (
    PROMPT_TEMPLATE_HASH,
    STOP_STRINGS,
    Passage,
    attributed_numbers,
    cited_numbers,
    refusal_answer,
)
from rag.search import Retriever, SearchResult
from service.auth import Identity
from service.errors import GenerationFailed, GenerationTimeout, InvalidRequest
from service.generation.base import Generator, SamplingParams
from service.metrics import Metrics
from service.runtime import PolicyRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatInput:
    messages: list[dict[str, str]]
    model: str = "champion"
    temperature: float = 0.3
    top_p: float = 1.0
    max_tokens: int | None = None
    seed: int | None = None
    conversation_id: str | None = None
    answer_id: str | None = None


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass
class Answer:
    answer_id: str
    conversation_id: str
    text: str
    refused: bool
    confidence: float
    citations: list[Citation]
    passages: list[Passage]
    model_version: str
    index_version: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: dict[str, float] = field(default_factory=dict)
    cited_by: str | None = None  # "model" ([n] in the text), "attribution" (shared words), None
    kind: str = "generated"  # generated | extractive (passage sentences replaced a failed answer) | refusal

    def kbloop_json(self) -> dict[str, Any]:
        return {
            "answer_id": self.answer_id,
            "conversation_id": self.conversation_id,
            "citations": [
                {"n": c.n, "source": c.source, "section": c.section, "title": c.title, "chunk_id": c.chunk_id}
                for c in self.citations
            ],
            "passages": [
                {"n": p.n, "source": p.source, "section": p.section, "title": p.title, "chunk_id": p.chunk_id}
                for p in self.passages
            ],
            "model_version": self.model_version,
            "index_version": self.index_version,
            "citations_from": self.cited_by,
            "refused": self.refused,
            "kind": self.kind,
            "confidence": round(self.confidence, 4),
            "latency_ms": {k: round(v, 1) for k, v in self.latency_ms.items()},
        }


class Answerer:
    def __init__(
        self, settings: Settings, retriever: Retriever, runtime: PolicyRuntime, store: Store, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self.runtime = runtime
        self.store = store
        self.metrics = metrics
        self._background: set[asyncio.Task[None]] = set()

    async def answer(self, request: ChatInput, identity: Identity) -> AsyncIterator[Delta | Answer]:
        started = time.perf_counter()
        conversation = _validate(request.messages)
        max_tokens = request.max_tokens or self.settings.max_tokens_default
        answer_id = request.answer_id or uuid.uuid4().hex
        conversation_id = request.conversation_id or uuid.uuid4().hex
        version = self.runtime.route(request.model, conversation_id)

        t0 = time.perf_counter()
        groups = identity.groups
        found = await asyncio.to_thread(retrieve, self.retriever, self.settings, conversation, groups)
        retrieval_ms = (time.perf_counter() - t0) * 1000
        self.metrics.retrieval_latency.observe(retrieval_ms / 1000)
        query, result, passages, refused = found.query, found.result, found.passages, found.refused
        params = SamplingParams(
            max_tokens,
            request.temperature,
            request.top_p,
            request.seed,
            repetition_penalty=self.settings.repetition_penalty,
            no_repeat_ngram_size=self.settings.no_repeat_ngram_size,
            stop=STOP_STRINGS if self.settings.answer_checks else (),
        )
        generation: dict[str, Any] = {
            "temperature": request.temperature, "top_p": request.top_p, "max_tokens": max_tokens,
            "seed": request.seed, "repetition_penalty": params.repetition_penalty,
            "no_repeat_ngram_size": params.no_repeat_ngram_size,
        }  # fmt: skip

        if refused:
            text = refusal_answer(passages[:3])
            self.metrics.refusals.inc()
            yield Delta(text)
            answer = Answer(
                answer_id, conversation_id, text, True, result.confidence, [], passages, version.id,
                result.index_version, "refused", 0, 0,
                {"retrieval": retrieval_ms, "total": (time.perf_counter() - started) * 1000},
                kind="refusal",
            )  # fmt: skip
            await self._record(answer, identity, conversation, query, "", result, generation)
            yield answer
            return

        engine = await self.runtime.aengine(version)
        t1 = time.perf_counter()
        prompt_ids, prompt_text = await asyncio.to_thread(
            self._prompt, engine, conversation, passages, max_tokens
        )
        prompt_ms = (time.perf_counter() - t1) * 1000
        handle = engine.submit(prompt_ids, params, timeout_s=self.settings.request_timeout_s)
        question = conversation[-1]["content"]
        texts = [p.text for p in passages]
        # the answer must cover the question better than the passages' best sentence does to be shown
        best = max((coverage(question, s.text) for s in candidate_sentences(texts)), default=0.0)
        check = StreamingCheck(
            question,
            texts,
            enabled=self.settings.answer_checks,
            min_coverage=min(1.0, self.settings.answer_min_coverage * best),
            min_support=self.settings.answer_min_support,
        )
        text, generated, finish, completion, error, done = "", "", "stop", 0, None, False
        try:
            async for event in handle.events():
                if event.text:
                    generated += event.text
                    shown = check.feed(event.text)
                    if shown:
                        text += shown
                        yield Delta(shown)
                    if check.failed is not None:
                        handle.cancel()  # the rest of a failed answer is never shown: stop decoding it
                if event.finished:
                    done = True
                    finish, completion, error = (
                        event.finish_reason or "stop",
                        event.completion_tokens,
                        event.error,
                    )
        finally:
            if not done:  # the consumer went away (client disconnected): stop decoding, keep what was shown
                handle.cancel()
                total_ms = (time.perf_counter() - started) * 1000
                partial = Answer(
                    answer_id, conversation_id, text, False, result.confidence, [], passages, version.id,
                    result.index_version, "cancelled", len(prompt_ids), 0,
                    {"retrieval": retrieval_ms, "prompt": prompt_ms, "total": total_ms},
                )  # fmt: skip
                task = asyncio.get_running_loop().create_task(
                    self._record(partial, identity, conversation, query, prompt_text, result, generation)
                )
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        generation_ms = (time.perf_counter() - t1) * 1000 - prompt_ms
        ttft_ms = ((handle.first_token_at or time.perf_counter()) - started) * 1000
        if finish == "error":
            self.metrics.errors.labels("generation_failed").inc()
            raise GenerationFailed(f"generation failed: {error}")
        if finish == "timeout" and not text and not generated:
            raise GenerationTimeout(f"no answer within {self.settings.request_timeout_s:.0f} s")
        if check.failed is None and finish != "timeout":
            tail = check.finish()
            if tail:
                text += tail
                yield Delta(tail)
        kind = "generated"
        if check.failed is not None:
            finish = "checked"  # stopped at the first sentence that failed its checks
            generation["check"] = check.failed
            generation["generated"] = generated  # what the model wrote, for the trainer to learn from
        if not text.strip():  # nothing passed: the passage sentences that best answer instead
            replacement = await asyncio.to_thread(self._extract, question, passages)
            if replacement:
                text, kind = replacement, "extractive"
                yield Delta(replacement)
        cited = cited_numbers(text, len(passages))
        cited_by = "model" if cited else None
        if not cited:  # small models often answer right without [n]: attribute by shared words
            cited = attributed_numbers(text, passages)
            cited_by = "attribution" if cited else None
        sources = [passages[n - 1] for n in cited]
        citations = [Citation(p.n, p.chunk_id, p.source, p.section, p.title) for p in sources]
        latency = {
            "retrieval": retrieval_ms,
            "prompt": prompt_ms,
            "generation": generation_ms,
            "ttft": ttft_ms,
            "total": (time.perf_counter() - started) * 1000,
        }
        answer = Answer(
            answer_id, conversation_id, text, False, result.confidence, citations, passages, version.id,
            result.index_version, finish, len(prompt_ids), completion, latency, cited_by=cited_by, kind=kind,
        )  # fmt: skip
        self.metrics.ttft.labels(version.id).observe(ttft_ms / 1000)
        self.metrics.generated_tokens.labels(version.id).inc(completion)
        if generation_ms > 0 and completion > 1:
            self.metrics.tokens_per_second.labels(version.id).observe(completion / (generation_ms / 1000))
        await self._record(answer, identity, conversation, query, prompt_text, result, generation)
        yield answer

    def _extract(self, question: str, passages: list[Passage]) -> str:
        """The extractive answer from the prompt's passages (the retriever's embedder ranks sentences)."""
        return extractive_answer(question, [p.text for p in passages], self.retriever.embedder.encode_queries)

    def _prompt(
        self, engine: Generator, conversation: list[dict[str, str]], passages: list[Passage], max_tokens: int
    ) -> tuple[list[int], str]:
        return render_prompt(engine.tokenizer, engine.context_window, conversation, passages, max_tokens)

    async def _record(
        self,
        answer: Answer,
        identity: Identity,
        conversation: list[dict[str, str]],
        query: str,
        prompt: str,
        result: SearchResult,
        generation: dict[str, Any],
    ) -> None:
        record = AnswerRecord(
            answer_id=answer.answer_id,
            conversation_id=answer.conversation_id,
            user_id=identity.user,
            created_at=utc_now(),
            model_version=answer.model_version,
            index_version=answer.index_version,
            prompt_template_hash=PROMPT_TEMPLATE_HASH,
            question=query,
            messages=conversation,
            prompt=prompt,
            answer=answer.text,
            refused=answer.refused,
            confidence=min(max(answer.confidence, 0.0), 1.0),
            retrieved=[
                RetrievedChunk(h.rank, h.chunk_id, h.source, h.section, float(h.score)) for h in result.hits
            ],
            citations=answer.citations,
            generation=generation,
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            latency_ms=answer.latency_ms,
            finish_reason=answer.finish_reason,
            kind=answer.kind,
            passage_groups=sorted({g for p in answer.passages for g in p.groups}),
        )
        await asyncio.to_thread(self.store.record_answer, record)
        self.metrics.answers.labels(answer.model_version, "refused" if answer.refused else "answered").inc()


def _validate(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation as user/assistant turns ending with a user question (system messages dropped:
    the service writes its own)."""
    turns = [m for m in messages if m["role"] in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user":
        raise InvalidRequest("the last message must be the user's question")
    if not turns[-1]["content"].strip():
        raise InvalidRequest("the question is empty")
    return turns
