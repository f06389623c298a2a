"""Loaded policies: one generation engine per model version, loaded on first use and kept warm.

The champion is loaded at startup; any other version (an id or an alias such as `candidate`) is
loaded when a request first names it, at most `max_loaded` at a time (the least recently used one that
is not the champion is closed first).

The backend is chosen once (KBLOOP_BACKEND, service/generation/backends.py). On the transformers backend
each version is its own engine; on llama.cpp the versions share one server process per base GGUF and
each request selects its version's LoRA, and a version the process lacks (a fresh promotion) starts a
new process that replaces the old one once it answers (the old one drains first). On vLLM the versions
share one server (managed, or at KBLOOP_VLLM_URL) and a new version's PEFT adapter is loaded into it
while it serves; an evicted version's adapter is unloaded.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict

from core.settings import Settings
from registry.registry import read_canary_share
from registry.versions import ModelDirectory, ModelVersion
from service.generation.backends import LlamaCppVersions, VllmVersions, choose_backend
from service.generation.base import Generator

log = logging.getLogger(__name__)


class PolicyRuntime:
    def __init__(self, models: ModelDirectory, settings: Settings, max_loaded: int = 2) -> None:
        self.models = models
        self.settings = settings
        self.max_loaded = max_loaded
        self._engines: OrderedDict[str, Generator] = OrderedDict()
        self._lock = threading.Lock()
        self._share, self._share_read_at = 0.0, float("-inf")
        self.backend = choose_backend(settings)
        self._llamacpp = LlamaCppVersions(settings) if self.backend == "llamacpp" else None
        self._vllm = VllmVersions(settings) if self.backend == "vllm" else None
        log.info("generation backend: %s", self.backend)

    def resolve(self, name: str) -> ModelVersion:
        return self.models.resolve(name or "champion")

    def route(self, name: str, conversation_id: str) -> ModelVersion:
        """The version that answers: `champion` (or no name) sends the canary's share of conversations to
        the canary, the same conversations every time (sticky: a hash of the conversation id decides)."""
        if name in ("", "champion"):
            aliases = self.models.aliases()
            share = self.canary_share()
            if "canary" in aliases and share > 0 and canary_bucket(conversation_id) < share:
                return self.models.resolve("canary")
        return self.resolve(name)

    def canary_share(self) -> float:
        """The canary's traffic share from the registry (re-read at most once a second)."""
        now = time.monotonic()
        if now - self._share_read_at > 1.0:
            self._share = read_canary_share(self.models.root)
            self._share_read_at = now
        return self._share

    def engine(self, version: ModelVersion) -> Generator:
        """The engine serving `version`, loading it if needed (blocking: call it off the event loop)."""
        with self._lock:
            if version.id in self._engines:
                self._engines.move_to_end(version.id)
                return self._engines[version.id]
            engine = self._load(version)
            self._engines[version.id] = engine
            self._evict()
            log.info("loaded model version %s (%s)", version.id, version.base)
            return engine

    def _load(self, version: ModelVersion) -> Generator:
        if self._llamacpp is not None:
            keep = {*self._engines, version.id, *self.models.aliases().values()}
            return self._llamacpp.engine(version, keep)
        if self._vllm is not None:
            keep = {*self._engines, version.id, *self.models.aliases().values()}
            return self._vllm.engine(version, keep)
        from registry.loading import load_policy
        from service.generation.engine import BatchingEngine

        model, tokenizer = load_policy(
            version.base, version.adapter_path(self.models.root), self.settings.device
        )
        return BatchingEngine(
            model,
            tokenizer,
            model_id=version.id,
            max_batch=self.settings.max_batch,
            batch_wait_ms=self.settings.batch_wait_ms,
            queue_size=self.settings.queue_size,
        )

    async def aengine(self, version: ModelVersion) -> Generator:
        with self._lock:
            if version.id in self._engines:
                self._engines.move_to_end(version.id)
                return self._engines[version.id]
        return await asyncio.to_thread(self.engine, version)

    def loaded(self) -> list[str]:
        return list(self._engines)

    def queue_depth(self) -> int:
        if self._llamacpp is not None:  # the versions share their backend's queue: count it once
            return sum(max(b.pending - b.config.slots, 0) for b in self._llamacpp.backends())
        if self._vllm is not None:
            return sum(max(b.pending - b.slots, 0) for b in self._vllm.backends())
        return sum(e.stats().queue_depth for e in list(self._engines.values()))

    def active(self) -> int:
        if self._llamacpp is not None:
            return sum(min(b.pending, b.config.slots) for b in self._llamacpp.backends())
        if self._vllm is not None:
            return sum(min(b.pending, b.slots) for b in self._vllm.backends())
        return sum(e.stats().active for e in list(self._engines.values()))

    def _evict(self) -> None:
        champion = self.models.aliases().get("champion")
        while len(self._engines) > self.max_loaded:
            victim = next((v for v in self._engines if v != champion), None)
            if victim is None:
                return
            self._engines.pop(victim).close()

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.close()
            self._engines.clear()
            if self._llamacpp is not None:
                self._llamacpp.close()
            if self._vllm is not None:
                self._vllm.close()


def canary_bucket(conversation_id: str) -> float:
    """A stable number in [0, 1) per conversation."""
    return int(hashlib.sha256(conversation_id.encode()).hexdigest()[:8], 16) / 2**32
