"""Loaded policies: one generation engine per model version, loaded on first use and kept warm.

The champion is loaded at startup; any other version (an id or an alias such as `candidate`) is
loaded when a request first names it, at most `max_loaded` at a time (the least recently used one that
is not the champion is closed first).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict

from service.generation.base import Generator
from service.generation.engine import BatchingEngine
from service.policy import load_policy
from service.settings import Settings
from service.versions import ModelDirectory, ModelVersion

log = logging.getLogger(__name__)


class PolicyRuntime:
    def __init__(self, models: ModelDirectory, settings: Settings, max_loaded: int = 2) -> None:
        self.models = models
        self.settings = settings
        self.max_loaded = max_loaded
        self._engines: OrderedDict[str, Generator] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, name: str) -> ModelVersion:
        return self.models.resolve(name or "champion")

    def engine(self, version: ModelVersion) -> Generator:
        """The engine serving `version`, loading it if needed (blocking: call it off the event loop)."""
        with self._lock:
            if version.id in self._engines:
                self._engines.move_to_end(version.id)
                return self._engines[version.id]
            model, tokenizer = load_policy(
                version.base, version.adapter_path(self.models.root), self.settings.device
            )
            engine = BatchingEngine(
                model,
                tokenizer,
                model_id=version.id,
                max_batch=self.settings.max_batch,
                batch_wait_ms=self.settings.batch_wait_ms,
                queue_size=self.settings.queue_size,
            )
            self._engines[version.id] = engine
            self._evict()
            log.info("loaded model version %s (%s)", version.id, version.base)
            return engine

    async def aengine(self, version: ModelVersion) -> Generator:
        with self._lock:
            if version.id in self._engines:
                self._engines.move_to_end(version.id)
                return self._engines[version.id]
        return await asyncio.to_thread(self.engine, version)

    def loaded(self) -> list[str]:
        return list(self._engines)

    def queue_depth(self) -> int:
        return sum(e.stats().queue_depth for e in list(self._engines.values()))

    def active(self) -> int:
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
