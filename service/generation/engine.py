"""Dynamic micro-batching over a transformers causal LM, on one worker thread.

Requests wait in a bounded queue. The worker takes the first one, waits `batch_wait_ms` for others to
arrive, prefills them together (left-padded) and then decodes the whole batch one token per step.
Between steps it admits newly queued requests: they are prefilled on their own and their KV cache is
joined to the running batch (both sides left-padded to a common length), so a request never waits for
a whole batch to finish. Finished, cancelled and timed-out rows leave the batch between steps.

Positions are passed explicitly (the count of real tokens in each row), so left padding changes
nothing: a row decodes the same tokens alone or in a batch (tests/service/test_engine.py checks it).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from service.errors import QueueFull
from service.generation.base import EngineStats, GenerationEvent, RequestHandle, SamplingParams
from service.generation.sampling import choose_next
from service.generation.stopping import StopMatcher

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


@dataclass
class _Request:
    handle: RequestHandle
    prompt_ids: list[int]
    params: SamplingParams


@dataclass
class _Row:
    request: _Request
    generator: Any  # torch.Generator | None
    ids: list[int] = field(default_factory=list)  # generated token ids
    prefix: int = 0  # decoding window start (see IncrementalDecoder)
    read: int = 0  # ids up to here have been emitted as text
    length: int = 0  # real tokens in the cache (prompt + generated)
    stopper: StopMatcher = field(default_factory=lambda: StopMatcher(()))


class IncrementalDecoder:
    """Text deltas from a growing list of token ids, decoding only a window of recent tokens.

    The text of ids[prefix:] is compared with that of ids[prefix:read] (what was already emitted from
    that window); the difference is new. A delta ending in U+FFFD (half of a multi-byte character) is
    held back until the next token completes it.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer

    def _text(self, ids: list[int]) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=True)
        return text

    def delta(self, row: _Row, final: bool = False) -> str:
        before = self._text(row.ids[row.prefix : row.read])
        now = self._text(row.ids[row.prefix :])
        if len(now) > len(before) and (final or not now.endswith("\ufffd")):
            row.prefix, row.read = row.read, len(row.ids)
            return now[len(before) :]
        return ""


class BatchingEngine:
    """The `Generator` for a transformers model (any device), batching concurrent requests."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_id: str = "model",
        max_batch: int = 8,
        batch_wait_ms: float = 5.0,
        queue_size: int = 64,
    ) -> None:
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_ms / 1000
        self.device = next(model.parameters()).device
        self.batch_prefill = self.device.type != "cpu"
        config = model.config
        self.context_window = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        eos = model.generation_config.eos_token_id if model.generation_config else None
        eos_ids = {eos} if isinstance(eos, int) else set(eos or [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(int(tokenizer.eos_token_id))
        self.stop_ids = frozenset(eos_ids)
        self.pad_id = int(
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos_ids, default=0)
        )
        self._torch = torch
        self._queue: queue.Queue[_Request] = queue.Queue(maxsize=queue_size)
        self._decoder = IncrementalDecoder(tokenizer)
        self._stats = EngineStats()
        self._pending = 0
        self._ids = itertools.count(1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kbloop-generation", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- client side
    def submit(
        self, prompt_ids: list[int], params: SamplingParams, timeout_s: float | None = None
    ) -> RequestHandle:
        import asyncio

        if not prompt_ids:
            raise ValueError("empty prompt")
        handle = RequestHandle(f"gen-{next(self._ids)}", asyncio.get_running_loop(), timeout_s)
        try:
            self._queue.put_nowait(_Request(handle, list(prompt_ids), params))
        except queue.Full:
            raise QueueFull(
                f"the generation queue is full ({self._queue.maxsize} waiting); retry shortly", retry_after=1
            ) from None
        return handle

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stats(self) -> EngineStats:
        self._stats.queue_depth = self._queue.qsize() + self._pending
        return self._stats

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # ---------------------------------------------------------------- worker side
    def _run(self) -> None:
        torch = self._torch
        rows: list[_Row] = []
        cache: Any = None
        mask: Any = None  # (batch, cache_len) long tensor, 1 = real token
        pending: deque[_Request] = deque()  # taken from the queue, not prefilled yet
        while not self._stop.is_set():
            incoming: list[_Request] = []
            try:
                pending.extend(self._take(active=len(rows) + len(pending)))
                pending = deque(self._live(pending))
                if pending:
                    # On a GPU the waiting prompts are prefilled together. On a CPU a prefill costs the
                    # same batched or not, and padding only adds work: one prompt per step, between
                    # decode steps, so running answers keep streaming while newcomers are admitted.
                    take = len(pending) if self.batch_prefill else 1
                    incoming = [pending.popleft() for _ in range(take)]
                    new_rows, new_cache, new_mask, first_logits = self._prefill(incoming)
                    incoming = []  # from here on they are rows (finished with the batch on an error)
                    running, rows = rows, rows + new_rows
                    self._advance(new_rows, first_logits)
                    if running:
                        cache, mask = _join(cache, mask, new_cache, new_mask)
                    else:
                        cache, mask = new_cache, new_mask
                    self._stats.batches += 1
                    rows, cache, mask = self._retire(rows, cache, mask)
                    if not rows:
                        continue
                if not rows:
                    continue
                assert mask is not None
                last = torch.tensor([[r.ids[-1]] for r in rows], device=self.device)
                mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
                positions = torch.tensor([[r.length] for r in rows], device=self.device)
                with torch.inference_mode():
                    out = self.model(
                        input_ids=last,
                        attention_mask=mask,
                        position_ids=positions,
                        past_key_values=cache,
                        use_cache=True,
                        logits_to_keep=1,
                    )
                cache = out.past_key_values
                for r in rows:
                    r.length += 1
                self._stats.steps += 1
                self._stats.batch_sizes.append(len(rows))
                del self._stats.batch_sizes[:-1000]
                self._advance(rows, out.logits[:, -1, :])
                rows, cache, mask = self._retire(rows, cache, mask)
            except Exception as exc:  # OOM, a model bug: fail the rows in flight, keep serving
                log.exception("generation failed")
                self._stats.errors += 1
                message = f"{type(exc).__name__}: {exc}"
                for r in rows:
                    self._finish(r, "error", error=message)
                for req in incoming:
                    req.handle.emit(GenerationEvent(finished=True, finish_reason="error", error=message,
                                                    prompt_tokens=len(req.prompt_ids)))  # fmt: skip
                rows, cache, mask = [], None, None
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
            self._stats.active = len(rows)
            self._pending = len(pending)
        for r in rows:
            self._finish(r, "cancelled")
        for req in pending:
            req.handle.emit(GenerationEvent(finished=True, finish_reason="cancelled"))

    def _take(self, active: int) -> list[_Request]:
        """Queued requests: when idle, block for one and give others `batch_wait_s` to join it; when
        busy, whatever is waiting, up to the batch limit."""
        taken: list[_Request] = []
        room = self.max_batch - active
        if active == 0:
            try:
                taken.append(self._queue.get(timeout=0.05))
            except queue.Empty:
                return []
            deadline = time.perf_counter() + self.batch_wait_s
            while len(taken) < room:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    taken.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
        else:
            while len(taken) < room:
                try:
                    taken.append(self._queue.get_nowait())
                except queue.Empty:
                    break
        return taken

    @staticmethod
    def _live(requests: Iterable[_Request]) -> list[_Request]:
        """The requests still wanted: cancelled ones are dropped, expired ones finished as timeouts."""
        live = []
        now = time.perf_counter()
        for req in requests:
            if req.handle.cancelled:
                continue
            if req.handle.expired(now):
                req.handle.emit(GenerationEvent(finished=True, finish_reason="timeout",
                                                prompt_tokens=len(req.prompt_ids)))  # fmt: skip
                continue
            live.append(req)
        return live

    def _prefill(self, requests: list[_Request]) -> tuple[list[_Row], Any, torch.Tensor, torch.Tensor]:
        torch = self._torch
        width = max(len(r.prompt_ids) for r in requests)
        ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(requests), width), dtype=torch.long)
        for i, r in enumerate(requests):
            ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            # only the last position's logits are needed: skipping the vocabulary projection of every
            # prompt token saves ~25% of a prefill on SmolLM2 (a 49k-word vocabulary)
            out = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
            )
        rows = []
        for r in requests:
            gen = None
            if r.params.seed is not None:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(r.params.seed)
            rows.append(_Row(r, gen, length=len(r.prompt_ids), stopper=StopMatcher(r.params.stop)))
        return rows, out.past_key_values, mask, out.logits[:, -1, :]

    def _advance(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Choose each row's next token from its logits (batch, vocab) and stream the new text."""
        greedy = logits.argmax(dim=-1).tolist()  # one device sync for the whole batch
        for r, row_logits, best in zip(rows, logits, greedy, strict=True):
            p = r.request.params
            plain = p.repetition_penalty == 1.0 and p.no_repeat_ngram_size <= 0
            token = (
                int(best)
                if plain and p.temperature <= 0
                else choose_next(
                    row_logits,
                    p.temperature,
                    p.top_p,
                    answer=r.ids,
                    repetition_penalty=p.repetition_penalty,
                    no_repeat_ngram_size=p.no_repeat_ngram_size,
                    generator=r.generator,
                )
            )
            r.ids.append(token)
            self._stats.tokens += 1
            if token in self.stop_ids:
                continue
            text = r.stopper.feed(self._decoder.delta(r))
            if text:
                r.request.handle.emit(GenerationEvent(text=text))

    def _retire(self, rows: list[_Row], cache: Any, mask: torch.Tensor | None) -> tuple[list[_Row], Any, Any]:
        """Finish rows at a stop token, their budget or deadline, or cancelled; keep the rest."""
        now = time.perf_counter()
        keep: list[int] = []
        for i, r in enumerate(rows):
            handle = r.request.handle
            if (r.ids and r.ids[-1] in self.stop_ids) or r.stopper.stopped:
                self._finish(r, "stop")
            elif len(r.ids) >= r.request.params.max_new_tokens or r.length + 1 >= self.context_window:
                self._finish(r, "length")
            elif handle.cancelled:
                self._finish(r, "cancelled")
            elif handle.expired(now):
                self._finish(r, "timeout")
            else:
                keep.append(i)
        if len(keep) == len(rows):
            return rows, cache, mask
        if not keep:
            return [], None, None
        assert mask is not None
        index = self._torch.tensor(keep, device=self.device)
        cache.batch_select_indices(index)
        mask = mask.index_select(0, index)
        # drop leading columns that are padding for every remaining row
        first_real = int((mask.sum(0) > 0).nonzero()[0].item())
        if first_real > 0:
            for layer in cache.layers:
                layer.keys = layer.keys[:, :, first_real:, :]
                layer.values = layer.values[:, :, first_real:, :]
            mask = mask[:, first_real:]
        return [rows[i] for i in keep], cache, mask

    def _finish(self, row: _Row, reason: str, error: str | None = None) -> None:
        if reason != "error":
            tail = row.stopper.feed(self._decoder.delta(row, final=True)) + row.stopper.flush()
            if tail:
                row.request.handle.emit(GenerationEvent(text=tail))
        completion = len(row.ids) - (1 if row.ids and row.ids[-1] in self.stop_ids else 0)
        row.request.handle.emit(
            GenerationEvent(
                finished=True,
                finish_reason=reason,
                prompt_tokens=len(row.request.prompt_ids),
                completion_tokens=completion,
                error=error,
            )
        )


def _join(cache_a: Any, mask_a: Any, cache_b: Any, mask_b: Any) -> tuple[Any, Any]:
    """One batch from two: left-pad the shorter KV cache and mask, then stack along the batch."""
    import torch

    length = max(mask_a.shape[1], mask_b.shape[1])

    def pad(
        t: torch.Tensor, n: int
    ) -> torch.Tensor:  # (batch, heads, seq, dim) -> (batch, heads, seq+n, dim)
        if n == 0:
            return t
        return torch.cat([t.new_zeros((*t.shape[:2], n, t.shape[3])), t], dim=2)

    pad_a, pad_b = length - mask_a.shape[1], length - mask_b.shape[1]
    for layer_a, layer_b in zip(cache_a.layers, cache_b.layers, strict=True):
        layer_a.keys = torch.cat([pad(layer_a.keys, pad_a), pad(layer_b.keys, pad_b)], dim=0)
        layer_a.values = torch.cat([pad(layer_a.values, pad_a), pad(layer_b.values, pad_b)], dim=0)
    mask = torch.cat(
        [
            torch.cat([mask_a.new_zeros((mask_a.shape[0], pad_a)), mask_a], dim=1),
            torch.cat([mask_b.new_zeros((mask_b.shape[0], pad_b)), mask_b], dim=1),
        ],
        dim=0,
    )
    return cache_a, mask
