"""What every generation backend offers: submit a prompt, stream its tokens back, cancel it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class SamplingParams:
    """How to decode one request. Every backend honours every field (or says in its docstring how it
    maps one it lacks): `repetition_penalty` divides the logits of tokens already in the answer (CTRL,
    1.0 = off; not the prompt's, since an answer should quote its passages); `no_repeat_ngram_size` bans
    a token that would repeat an n-gram of the answer (0 = off); generation ends before any of the
    `stop` strings, which are not returned."""

    max_new_tokens: int = 256
    temperature: float = 0.7  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenerationEvent:
    """New text since the previous event; the last event has `finished` set and the counts."""

    text: str = ""
    finished: bool = False
    finish_reason: str | None = None  # stop | length | cancelled | timeout | error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None


class RequestHandle:
    """One submitted generation: an async stream of events, fed from the engine's thread."""

    def __init__(self, request_id: str, loop: asyncio.AbstractEventLoop, timeout_s: float | None) -> None:
        self.id = request_id
        self.submitted_at = time.perf_counter()
        self.first_token_at: float | None = None
        self.deadline = None if timeout_s is None else self.submitted_at + timeout_s
        self._loop = loop
        self._events: asyncio.Queue[GenerationEvent] = asyncio.Queue()
        self._cancelled = threading.Event()

    # engine side (any thread)
    def emit(self, event: GenerationEvent) -> None:
        if self.first_token_at is None and event.text:
            self.first_token_at = time.perf_counter()
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the event loop is gone (server shutting down): nobody is listening
            self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now > self.deadline

    # client side
    def cancel(self) -> None:
        """Stop generating for this request (the client went away); the engine drops it at its next step."""
        self._cancelled.set()

    async def events(self) -> AsyncIterator[GenerationEvent]:
        while True:
            event = await self._events.get()
            yield event
            if event.finished:
                return


@dataclass
class EngineStats:
    queue_depth: int = 0
    active: int = 0
    batches: int = 0
    steps: int = 0
    tokens: int = 0
    errors: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # rows in each of the last 1000 decode steps


class Generator(Protocol):
    """A generation backend. `submit` raises `QueueFull` when it cannot take more work."""

    model_id: str
    context_window: int
    tokenizer: Any  # a transformers tokenizer with a chat template

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, timeout_s: float | None = None
    ) -> RequestHandle: ...

    def count_tokens(self, text: str) -> int: ...

    def stats(self) -> EngineStats: ...

    def close(self) -> None: ...


class ServerEngine:
    """What the engines that stream from a shared server process (llama.cpp, vLLM) have in common: the
    bounded queue (`QueueFull` once `slots + queue_size` requests are in flight on the backend), one
    asyncio task per request running the subclass's `_run`, token counting and the stats. The backend
    holds `pending` (requests in flight, all versions) and `stats`; subclasses give `_capacity()`."""

    id_prefix = "server"

    def __init__(self, backend: Any, version_id: str, tokenizer: Any, context_window: int) -> None:
        import itertools

        self.backend = backend
        self.model_id = version_id
        self.tokenizer = tokenizer
        self.context_window = context_window
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()

    def _capacity(self) -> tuple[int, int]:
        """(slots decoded together, requests that may wait beyond them)."""
        raise NotImplementedError

    async def _run(self, handle: RequestHandle, prompt_ids: list[int], params: SamplingParams) -> None:
        raise NotImplementedError

    def submit(
        self, prompt_ids: list[int], params: SamplingParams, timeout_s: float | None = None
    ) -> RequestHandle:
        from service.errors import QueueFull

        if not prompt_ids:
            raise ValueError("empty prompt")
        slots, queue_size = self._capacity()
        limit = slots + queue_size
        if self.backend.pending >= limit:
            raise QueueFull(f"the generation queue is full ({limit} in flight); retry shortly", retry_after=1)
        loop = asyncio.get_running_loop()
        handle = RequestHandle(f"{self.id_prefix}-{self.model_id}-{next(self._ids)}", loop, timeout_s)
        self.backend.pending += 1
        task = loop.create_task(self._run(handle, list(prompt_ids), params))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return handle

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stats(self) -> EngineStats:
        stats: EngineStats = self.backend.stats
        slots, _ = self._capacity()
        stats.active = min(self.backend.pending, slots)
        stats.queue_depth = max(self.backend.pending - slots, 0)
        return stats
