"""The llama.cpp backend: answers stream from a managed `llama-server` with parallel slots.

Why a server and not the binding: llama-cpp-python's `Llama` decodes one sequence at a time, so eight
concurrent answers would queue behind each other. llama.cpp's own server batches its slots
continuously, and the service talks to it over HTTP on localhost (`/completion`, streamed).

Versions. One process holds the base GGUF and the GGUF LoRA of every loaded version, all at scale 0;
each request names its version's adapter (`"lora": [{"id": i, "scale": 1}]`), so champion and canary
are served by the same process (llama.cpp batches requests with the same adapter set together). A
version the process has not loaded (a newly promoted candidate) needs a new process: it is started
with the new adapter set, must answer the smoke prompt, then takes the new requests while the old
process finishes the ones it is streaming and is stopped (`LlamaCppBackend.ensure`). If the new
process fails (corrupt adapter, wrong base), the old one keeps serving and the error is named.

Sampling (`SamplingParams` → /completion): temperature (0 = greedy), top_p, seed, max_new_tokens →
n_predict, repetition_penalty → repeat_penalty over the whole context (repeat_last_n = the slot's
window), stop → stop. The sampler chain is set to penalties → DRY → temperature → top-p
(`SAMPLERS`): llama.cpp's default top_k = 40 and min_p = 0.05 are left out, so the distribution is
the one the transformers engine samples from. llama.cpp has no no-repeat-n-gram ban;
`no_repeat_ngram_size = n` maps to its DRY sampler (penalises a token that extends a sequence already
seen, exponentially in the length beyond n - 1 tokens) over the last `max_new_tokens` tokens of
context: a strong discouragement, not a hard ban, and it also sees the end of the prompt.

Failures. The bounded queue answers `QueueFull` (503 + Retry-After) when `slots + queue_size`
requests are in flight. Cancellation and deadlines close the HTTP stream, which frees the slot. A
process that dies mid-stream ends its streams with an error event; the next request restarts it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import ModelUnavailable
from service.generation.base import EngineStats, GenerationEvent, RequestHandle, SamplingParams, ServerEngine
from service.generation.llama_server import LlamaServer

log = logging.getLogger(__name__)

# the transformers engine's order: penalties, then temperature, then top-p (llama.cpp's default chain
# applies top-p before temperature and adds top-k 40 and min-p 0.05)
SAMPLERS = ("penalties", "dry", "temperature", "top_p")
FINISH = {"eos": "stop", "word": "stop", "limit": "length"}
SMOKE_TOKENS = 4


@dataclass(frozen=True)
class ServerConfig:
    binary: Path
    model: Path  # the base GGUF
    slots: int
    context_per_slot: int
    threads: int
    queue_size: int
    log_dir: Path
    drain_timeout_s: float = 120.0


def completion_body(
    prompt_ids: list[int], params: SamplingParams, lora_id: int | None, context: int, adapters: int = 0
) -> dict[str, Any]:
    """The /completion request for one generation (see the module docstring for the mapping);
    `context` is the slot's window: the repetition penalty looks back over all of it. `adapters` is how
    many LoRAs the process loaded: a base-model request on such a process names adapter 0 at scale 0
    (an empty list would let the slot reuse a prompt cache computed with another request's adapter)."""
    if lora_id is not None:
        lora = [{"id": lora_id, "scale": 1.0}]
    else:
        lora = [{"id": 0, "scale": 0.0}] if adapters else []
    body: dict[str, Any] = {
        "prompt": list(prompt_ids),
        "stream": True,
        "n_predict": params.max_new_tokens,
        "temperature": max(params.temperature, 0.0),
        "top_p": params.top_p,
        "top_k": 0,
        "min_p": 0.0,
        "samplers": list(SAMPLERS),
        "repeat_penalty": params.repetition_penalty,
        "repeat_last_n": context,
        "stop": list(params.stop),
        "cache_prompt": True,
        "lora": lora,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    if params.no_repeat_ngram_size > 0:
        body.update(
            dry_multiplier=1.0,
            dry_base=1.75,
            dry_allowed_length=max(params.no_repeat_ngram_size - 1, 1),
            dry_penalty_last_n=params.max_new_tokens,
        )
    return body


class LlamaCppBackend:
    """The llama-server process behind every loaded version, replaced when the adapter set changes."""

    def __init__(self, config: ServerConfig, smoke_prompt: list[int]) -> None:
        self.config = config
        self.smoke_prompt = smoke_prompt
        self._server: LlamaServer | None = None
        self._adapters: dict[str, Path | None] = {}  # version -> GGUF LoRA, in the process's order
        self._lock = threading.Lock()
        self.pending = 0  # requests submitted and not finished (all backends' engines together)
        self.restarts = 0
        self.stats = EngineStats()

    @property
    def server(self) -> LlamaServer | None:
        return self._server

    def lora_id(self, version_id: str) -> int | None:
        paths = [p for p in self._adapters.values() if p is not None]
        path = self._adapters.get(version_id)
        return None if path is None else paths.index(path)

    def ensure(self, version_id: str, adapter: Path | None, keep: set[str]) -> None:
        """Make `version_id` servable (blocking). A new adapter means a new process: started, smoke
        tested, then swapped in while the old one drains. On failure nothing changes."""
        with self._lock:
            if version_id in self._adapters and self._server is not None and self._server.alive():
                return
            wanted = {v: p for v, p in self._adapters.items() if v in keep}
            wanted[version_id] = adapter
            self._replace(wanted, smoke=version_id)

    def lease(self, version_id: str) -> tuple[LlamaServer, int | None]:
        """The process to send a request to (restarted if it died) and the version's adapter id."""
        with self._lock:
            server = self._server
            if server is None or not server.alive():
                if version_id not in self._adapters:
                    raise ModelUnavailable(f"model version {version_id} is not loaded on llama.cpp")
                log.warning("llama-server is not running (%s); restarting it", server and server.log_tail(2))
                self.restarts += 1
                self._replace(dict(self._adapters), smoke=None)
                server = self._server
            assert server is not None
            if version_id not in self._adapters:
                raise ModelUnavailable(f"model version {version_id} is no longer loaded on llama.cpp")
            server.acquire()
            return server, self.lora_id(version_id)

    def _replace(self, adapters: dict[str, Path | None], smoke: str | None) -> None:
        cfg = self.config
        loras = [p for p in adapters.values() if p is not None]
        new = LlamaServer(
            cfg.binary,
            cfg.model,
            loras,
            slots=cfg.slots,
            context_per_slot=cfg.context_per_slot,
            threads=cfg.threads,
            log_dir=cfg.log_dir,
        )
        new.start()
        if smoke is not None:
            path = adapters[smoke]
            try:
                smoke_server(new, self.smoke_prompt, None if path is None else loras.index(path))
            except ModelUnavailable:
                new.stop()
                raise
        old, self._server, self._adapters = self._server, new, adapters
        if old is not None:
            threading.Thread(
                target=old.drain_and_stop, args=(cfg.drain_timeout_s,), name="llama-drain", daemon=True
            ).start()

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None


def smoke_server(server: LlamaServer, prompt_ids: list[int], lora_id: int | None) -> str:
    """A few greedy tokens from `server` with the adapter `lora_id`; raises ModelUnavailable when it
    answers nothing (a LoRA that loaded but breaks the model)."""
    import httpx

    params = SamplingParams(max_new_tokens=SMOKE_TOKENS, temperature=0)
    body = completion_body(prompt_ids, params, lora_id, server.context_per_slot, len(server.loras))
    body["stream"] = False
    try:
        response = httpx.post(f"{server.url}/completion", json=body, timeout=60)
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ModelUnavailable(f"llama-server failed the smoke prompt: {exc}; {server.log_tail(2)}") from exc
    if response.status_code != 200 or not data.get("tokens_predicted"):
        raise ModelUnavailable(f"llama-server failed the smoke prompt: {str(data)[:300]}")
    return str(data.get("content", ""))


class LlamaCppEngine(ServerEngine):
    """The `Generator` for one model version, served by the shared `LlamaCppBackend`."""

    backend: LlamaCppBackend
    id_prefix = "llama"

    def __init__(self, backend: LlamaCppBackend, version_id: str, tokenizer: Any) -> None:
        super().__init__(backend, version_id, tokenizer, backend.config.context_per_slot)

    def _capacity(self) -> tuple[int, int]:
        return self.backend.config.slots, self.backend.config.queue_size

    def close(self) -> None:
        """Nothing to free: the process belongs to the backend (closed with the runtime), and requests
        in flight finish on it."""

    async def _run(self, handle: RequestHandle, prompt_ids: list[int], params: SamplingParams) -> None:
        """Stream one request; watch the client and the deadline every 50 ms and hang up on either."""
        counts = _Counts(len(prompt_ids))
        server: LlamaServer | None = None
        try:
            try:
                leased, lora_id = await asyncio.to_thread(self.backend.lease, self.model_id)
            except ModelUnavailable as exc:
                handle.emit(counts.final("error", exc.message))
                return
            server = leased
            stream = asyncio.create_task(self._stream(leased, handle, prompt_ids, params, lora_id, counts))
            while not stream.done():
                await asyncio.wait({stream}, timeout=0.05)
                if stream.done():
                    break
                reason = "cancelled" if handle.cancelled else "timeout" if handle.expired(_now()) else None
                if reason is not None:
                    stream.cancel()  # closes the HTTP stream: llama-server frees the slot
                    await asyncio.gather(stream, return_exceptions=True)
                    handle.emit(counts.final(reason))
                    return
            error = stream.exception()
            if error is not None:
                self.backend.stats.errors += 1
                message = f"{type(error).__name__}: {error}"
                if await asyncio.to_thread(leased.exited, 1.0):
                    message = (
                        f"llama-server exited mid-stream ({leased.log_tail(2)}); "
                        "it restarts on the next request"
                    )
                log.warning("llama.cpp generation failed: %s", message)
                handle.emit(counts.final("error", message))
        except asyncio.CancelledError:  # the engine is closing
            handle.emit(counts.final("cancelled"))
            raise
        finally:
            self.backend.pending -= 1
            if server is not None:
                server.release()

    async def _stream(
        self,
        server: LlamaServer,
        handle: RequestHandle,
        prompt_ids: list[int],
        params: SamplingParams,
        lora_id: int | None,
        counts: _Counts,
    ) -> None:
        import httpx

        body = completion_body(prompt_ids, params, lora_id, server.context_per_slot, len(server.loras))
        timeout = httpx.Timeout(None, connect=10)
        async with (
            httpx.AsyncClient(timeout=timeout) as client,
            client.stream("POST", f"{server.url}/completion", json=body) as response,
        ):
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                raise GenerationError(f"llama-server answered {response.status_code}: {_error_message(text)}")
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise GenerationError(f"llama-server: {_error_message(json.dumps(chunk))}")
                text = chunk.get("content", "")
                counts.completion += len(chunk.get("tokens") or ())
                self.backend.stats.tokens += len(chunk.get("tokens") or ())
                if text:
                    handle.emit(GenerationEvent(text=text))
                if chunk.get("stop"):
                    counts.completion = int(chunk.get("tokens_predicted", counts.completion))
                    reason = FINISH.get(str(chunk.get("stop_type")), "stop")
                    if reason == "stop" and chunk.get("stop_type") == "eos":
                        counts.completion = max(counts.completion - 1, 0)
                    handle.emit(counts.final(reason))
                    return
        raise GenerationError("llama-server closed the stream before it finished")


@dataclass
class _Counts:
    prompt: int
    completion: int = 0

    def final(self, reason: str, error: str | None = None) -> GenerationEvent:
        return GenerationEvent(
            finished=True,
            finish_reason=reason,
            prompt_tokens=self.prompt,
            completion_tokens=self.completion,
            error=error,
        )


class GenerationError(RuntimeError):
    """llama-server refused a request or broke off its stream."""


def _error_message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    error = data.get("error", data) if isinstance(data, dict) else data
    return str(error.get("message", error) if isinstance(error, dict) else error)[:300]


def _now() -> float:
    import time

    return time.perf_counter()
