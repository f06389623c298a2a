"""The vLLM backend: answers stream from an OpenAI-compatible vLLM server, adapters hot-loaded per version.

The server is either managed (a subprocess of the vLLM venv's python, service/generation/vllm_server.py,
restarted when it dies) or external (KBLOOP_VLLM_URL: started by someone else with `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`; never restarted by us). Requests go to `/v1/completions`
with the prompt as token ids, so the server decodes exactly the prompt the service rendered.

Versions. The base model is served under its own name; a version with a PEFT adapter is loaded with
`/v1/load_lora_adapter` (lora_name = the version id, lora_path = the PEFT folder the trainer wrote)
and its requests name `model=<version id>`, so champion and canary share one server and one batch.
A version becomes servable only when its adapter passes a file check (config, rank within the
server's --max-lora-rank, safetensors not truncated), loads, and answers the smoke prompt; otherwise
it is unloaded again, `AdapterLoadFailed` names why, and the versions already loaded keep serving.
On a managed server, adapters of versions that are no longer kept (not loaded by the runtime, not an
alias) are unloaded with `/v1/unload_lora_adapter` once they have no request in flight. An external
server may be shared by several service replicas over one registry, so there an adapter is never
unloaded (another replica may be streaming with it), and one already loaded under the version's id is
taken as that version's (version ids are immutable); vLLM keeps only `--max-cpu-loras` of them in
memory and reloads the others from their folders. (The HTTP requests and chunks are in
vllm_protocol.py, the adapter checks in peft_check.py, the process in vllm_server.py.)

Sampling (`SamplingParams` → /v1/completions): temperature (0 = greedy), top_p, seed, max_new_tokens →
max_tokens, top_k and min_p off (the distribution the transformers engine samples from), stop → stop:
vLLM's OpenAI API takes at most 4 stop strings, so the first 4 go to the server and any others are
matched here over the streamed text (service/generation/stopping.py), which then hangs up.
repetition_penalty → vLLM's repetition_penalty: the same division of logits (CTRL), but vLLM applies
it to the prompt's tokens as well as the answer's, so a penalty above 1 also discourages quoting the
passages a little. no_repeat_ngram_size is not mapped: vLLM's OpenAI API has no n-gram ban (nor a
DRY sampler); with vLLM the service's answer checks (loops, echo) are what catch a repeating answer.

Failures. The bounded queue answers `QueueFull` (503 + Retry-After) when `max_num_seqs + queue_size`
requests are in flight. Cancellation and deadlines close the HTTP stream, which makes vLLM abort the
request. A server that dies or breaks off mid-stream ends the stream with an error event (never a
hang); a managed server is restarted, with its adapters, on the next request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import ModelUnavailable
from service.generation.base import EngineStats, GenerationEvent, RequestHandle, SamplingParams, ServerEngine
from service.generation.peft_check import AdapterLoadFailed, check_adapter
from service.generation.stopping import StopMatcher
from service.generation.vllm_protocol import (
    MAX_SERVER_STOPS,
    VllmRequestError,
    base_model_name,
    completion_body,
    error_message,
    parse_chunk,
    smoke_completion,
    sse_data,
)
from service.generation.vllm_server import VllmConfig, VllmServer

__all__ = ["AdapterLoadFailed", "VllmBackend", "VllmEngine", "VllmRequestError"]

log = logging.getLogger(__name__)

FINISH = {"stop": "stop", "length": "length", "abort": "error"}


class VllmBackend:
    """One vLLM server (managed or at `url`) and the versions it serves: id -> PEFT folder or None."""

    def __init__(
        self,
        smoke_prompt: list[int],
        *,
        config: VllmConfig | None = None,
        url: str = "",
        slots: int = 16,
        queue_size: int = 64,
    ) -> None:
        if (config is None) == (not url):
            raise ValueError("a vLLM backend is either managed (config) or external (url)")
        self.config = config
        self.smoke_prompt = smoke_prompt
        self.slots, self.queue_size = slots, queue_size
        self._url = url.rstrip("/")
        self._base_name = ""
        self._server: VllmServer | None = None
        self._adapters: dict[str, Path | None] = {}
        self._inflight: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.pending = 0  # requests submitted and not finished (all versions together)
        self.restarts = 0
        self.stats = EngineStats()

    @property
    def server(self) -> VllmServer | None:
        return self._server

    @property
    def url(self) -> str:
        return self._server.url if self._server is not None else self._url

    @property
    def max_lora_rank(self) -> int:
        return self.config.max_lora_rank if self.config is not None else 0

    def loaded(self) -> dict[str, Path | None]:
        return dict(self._adapters)

    def ensure(self, version_id: str, adapter: Path | None, keep: set[str], base: Path | None = None) -> None:
        """Make `version_id` servable (blocking): load its adapter and answer the smoke prompt; then unload
        the adapters of versions outside `keep`. On failure the version is not loaded, nothing else
        changes, and the error is named. `base` (default: the managed server's model folder) is what
        the adapter's shapes are checked against."""
        with self._lock:
            self._running()
            if version_id not in self._adapters:
                if adapter is not None:
                    if base is None and self.config is not None:
                        base = self.config.model
                    check_adapter(adapter, self.max_lora_rank, base)
                    self._load(version_id, adapter)
                try:
                    smoke_completion(self.url, self._model(version_id, adapter), self.smoke_prompt)
                except ModelUnavailable as exc:
                    if adapter is None:
                        raise
                    self._unload(version_id)
                    raise AdapterLoadFailed(f"model version {version_id}: {exc.message}") from exc
                self._adapters[version_id] = adapter
            for other in [v for v in self._adapters if v not in keep and v != version_id]:
                self._forget(other)

    def lease(self, version_id: str) -> tuple[str, str]:
        """The server's URL (a dead managed server is restarted first) and the model name to request."""
        with self._lock:
            if version_id not in self._adapters:
                raise ModelUnavailable(f"model version {version_id} is not loaded on vLLM")
            self._running()
            if version_id not in self._adapters:  # its adapter did not load again after a restart
                raise ModelUnavailable(f"model version {version_id} could not be reloaded on vLLM")
            self._inflight[version_id] += 1
            return self.url, self._model(version_id, self._adapters[version_id])

    def release(self, version_id: str) -> None:
        with self._lock:
            self._inflight[version_id] -= 1

    def forget(self, version_id: str) -> None:
        """The runtime closed the version's engine: unload its adapter (managed server) unless a request
        still uses it."""
        with self._lock:
            self._forget(version_id)

    def unload(self, version_id: str) -> None:
        """Unload a version's adapter now, from any server (the registry's one-off smoke names)."""
        with self._lock:
            if self._adapters.pop(version_id, None) is not None:
                self._unload(version_id)

    def exited(self, within_s: float) -> bool:
        """Whether a managed server has died (within `within_s`); an external one is never known dead."""
        return self._server is not None and self._server.exited(within_s)

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.stop()
                self._server = None

    # under the lock
    def _running(self) -> None:
        """Start the managed server, or restart it with its adapters if it died."""
        if self.config is None or (self._server is not None and self._server.alive()):
            return
        if self._server is not None:
            log.warning("the vLLM server is not running (%s); restarting it", self._server.log_tail(2))
            self._server.stop()
            self.restarts += 1
        server = VllmServer(self.config)
        server.start()
        self._server = server
        for version_id, adapter in list(self._adapters.items()):
            if adapter is None:
                continue
            try:
                self._load(version_id, adapter)
            except AdapterLoadFailed as exc:
                log.warning("version %s is not served after the restart: %s", version_id, exc.message)
                del self._adapters[version_id]

    def _model(self, version_id: str, adapter: Path | None) -> str:
        return version_id if adapter is not None else self._base_model()

    def _base_model(self) -> str:
        if self._server is not None:
            return self._server.served_model
        if not self._base_name:
            self._base_name = base_model_name(self._url)
        return self._base_name

    def _load(self, version_id: str, adapter: Path) -> None:
        body = {"lora_name": version_id, "lora_path": str(adapter.resolve())}
        status, text = self._post("/v1/load_lora_adapter", body)
        if status != 200 and "already" in text.lower():  # another replica (or our last run) loaded it
            log.info("vLLM already has the adapter of %s", version_id)
            return
        if status != 200:
            raise AdapterLoadFailed(
                f"vLLM refused the adapter of {version_id} ({adapter}): {error_message(text)}"
            )
        log.info("vLLM loaded the adapter of %s (%s)", version_id, adapter)

    def _unload(self, version_id: str) -> None:
        status, text = self._post("/v1/unload_lora_adapter", {"lora_name": version_id})
        if status != 200:
            log.warning("vLLM did not unload %s: %s", version_id, error_message(text))

    def _forget(self, version_id: str) -> None:
        if version_id not in self._adapters or self._inflight[version_id] > 0:
            return
        adapter = self._adapters.pop(version_id)
        if adapter is not None and self._server is not None and self._server.alive():
            self._unload(version_id)
            log.info("vLLM unloaded the adapter of %s", version_id)

    def _post(self, path: str, body: dict[str, Any]) -> tuple[int, str]:
        import httpx

        try:
            response = httpx.post(f"{self.url}{path}", json=body, timeout=120)
        except httpx.HTTPError as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        return response.status_code, response.text


class VllmEngine(ServerEngine):
    """The `Generator` for one model version, served by the shared `VllmBackend`."""

    backend: VllmBackend
    id_prefix = "vllm"

    def __init__(self, backend: VllmBackend, version_id: str, tokenizer: Any, context_window: int) -> None:
        super().__init__(backend, version_id, tokenizer, context_window)

    def _capacity(self) -> tuple[int, int]:
        return self.backend.slots, self.backend.queue_size

    def close(self) -> None:
        """Unload the version's adapter from a managed server (unless requests still stream with it); the
        server stays."""
        self.backend.forget(self.model_id)

    async def _run(self, handle: RequestHandle, prompt_ids: list[int], params: SamplingParams) -> None:
        """Stream one request; watch the client and the deadline every 50 ms and hang up on either."""
        counts = _Counts(len(prompt_ids))
        leased = False
        try:
            try:
                url, model = await asyncio.to_thread(self.backend.lease, self.model_id)
            except ModelUnavailable as exc:
                self.backend.stats.errors += 1
                handle.emit(counts.final("error", exc.message))
                return
            leased = True
            stream = asyncio.create_task(self._stream(url, model, handle, prompt_ids, params, counts))
            while not stream.done():
                await asyncio.wait({stream}, timeout=0.05)
                if stream.done():
                    break
                reason = (
                    "cancelled"
                    if handle.cancelled
                    else "timeout"
                    if handle.expired(time.perf_counter())
                    else None
                )
                if reason is not None:
                    stream.cancel()  # closes the HTTP stream: vLLM aborts the request
                    await asyncio.gather(stream, return_exceptions=True)
                    handle.emit(counts.final(reason))
                    return
            error = stream.exception()
            if error is not None:
                self.backend.stats.errors += 1
                message = f"{type(error).__name__}: {error}"
                if await asyncio.to_thread(self.backend.exited, 1.0):
                    message = "the vLLM server exited mid-stream; it restarts on the next request"
                log.warning("vLLM generation failed: %s", message)
                handle.emit(counts.final("error", message))
        except asyncio.CancelledError:  # the engine is closing
            handle.emit(counts.final("cancelled"))
            raise
        finally:
            self.backend.pending -= 1
            if leased:
                self.backend.release(self.model_id)

    async def _stream(
        self,
        url: str,
        model: str,
        handle: RequestHandle,
        prompt_ids: list[int],
        params: SamplingParams,
        counts: _Counts,
    ) -> None:
        import httpx

        body = completion_body(prompt_ids, params, model)
        extra_stops = params.stop[MAX_SERVER_STOPS:]
        matcher = StopMatcher(extra_stops) if extra_stops else None
        finish: str | None = None
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10)) as client,
            client.stream("POST", f"{url}/v1/completions", json=body) as response,
        ):
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                raise VllmRequestError(f"vLLM answered {response.status_code}: {error_message(text)}")
            async for line in response.aiter_lines():
                payload = sse_data(line)
                if payload is None:
                    continue
                if payload == "[DONE]":
                    break
                chunk = parse_chunk(payload)
                if chunk.completion_tokens is not None:
                    self.backend.stats.tokens += max(chunk.completion_tokens - counts.completion, 0)
                    counts.completion = chunk.completion_tokens
                if chunk.prompt_tokens:
                    counts.prompt = chunk.prompt_tokens
                text = chunk.text if matcher is None else matcher.feed(chunk.text)
                if text:
                    handle.emit(GenerationEvent(text=text))
                if matcher is not None and matcher.stopped:
                    handle.emit(counts.final("stop"))
                    return  # leaving the block closes the stream: vLLM aborts the rest
                finish = chunk.finish_reason or finish
        if finish is None:
            raise VllmRequestError("vLLM closed the stream before it finished")
        rest = "" if matcher is None else matcher.flush()
        if rest:
            handle.emit(GenerationEvent(text=rest))
        reason = FINISH.get(finish, "stop")
        handle.emit(counts.final(reason, "vLLM aborted the request" if reason == "error" else None))


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
