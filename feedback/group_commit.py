"""Group commit: one writer thread that commits the queued writes of a Store together.

A commit with `synchronous=FULL` waits for the disk (an fsync of the WAL); writing each feedback event
in its own transaction pays that wait, and a thread hop and the store's lock, once per event. Here
callers queue their write (any call of the store's methods) and wait; the writer thread takes
everything queued, runs it through `Store.run_batch` (one transaction, a savepoint per call, one
COMMIT) and only then settles each caller's future with its own result or exception. So:

- nothing is acknowledged before it is durable: a crash before the COMMIT loses the batch, and none of
  its callers has been answered;
- a call that raises (unknown answer, invalid value, idempotency conflict) fails alone, the rest of
  its batch commits;
- each call still sees the writes before it in the batch (one connection, one transaction), so the
  rules that read before they write (one current vote per user, idempotency keys) hold as before.

Batches form by themselves: while one commits, the next queues; under light load a batch is one write
and waits for nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from feedback.errors import StoreUnavailable
from feedback.store import Outcome, Store

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_BATCH = 256

_STOP = object()


@dataclass(slots=True)
class _Item:
    """A queued call and where its outcome goes: a concurrent future, or an asyncio one on `loop`."""

    call: Callable[[], Any]
    future: concurrent.futures.Future[Any] | asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop | None = None


class GroupCommit:
    """Writes of `store`, committed in batches of at most `max_batch` by a thread of its own.

    `await run(call)` from an event loop (no thread hop per call: the writer settles a batch's futures
    in one callback on their loop), `submit(call).result()` from a thread. `close()` commits what is
    queued, then stops the thread; later calls raise StoreUnavailable.
    """

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self.batches = 0  # committed so far, and the calls in them (for tests and metrics)
        self.calls = 0
        self._queue: queue.SimpleQueue[_Item | object] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders `closed` and the queue: nothing is queued after _STOP
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="kbloop-group-commit", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Queue `call`; the future holds its result (or exception) once its batch has committed."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._put(_Item(call, future))
        return future

    async def run(self, call: Callable[[], T]) -> T:
        """`call`'s result once its batch has committed (its exception if it raised)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._put(_Item(call, future, loop))
        return await future

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()

    def __enter__(self) -> GroupCommit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _put(self, item: _Item) -> None:
        with self._lock:
            if self._closed:
                raise StoreUnavailable(f"the writes to {self.store.path} are closed: the service is stopping")
            self._queue.put(item)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Item)
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                assert isinstance(item, _Item)
                batch.append(item)
            try:
                outcomes: list[Outcome[Any]] = self.store.run_batch([item.call for item in batch])
            except Exception as exc:  # the store is closed, or a bug: every caller hears of it
                log.exception("a batch of %d writes failed", len(batch))
                outcomes = [Outcome(error=exc)] * len(batch)
            self.batches += 1
            self.calls += len(batch)
            _settle(batch, outcomes)


def _settle(batch: list[_Item], outcomes: list[Outcome[Any]]) -> None:
    """Give each caller its outcome: concurrent futures here, asyncio ones in one callback per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome[Any]]]] = {}
    for item, outcome in zip(batch, outcomes, strict=True):
        future, loop = item.future, item.loop
        if loop is None:
            assert isinstance(future, concurrent.futures.Future)
            if future.set_running_or_notify_cancel():
                if outcome.error is not None:
                    future.set_exception(outcome.error)
                else:
                    future.set_result(outcome.result)
        else:
            assert isinstance(future, asyncio.Future)
            by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits any more
            loop.call_soon_threadsafe(_settle_on_loop, settled)


def _settle_on_loop(settled: list[tuple[asyncio.Future[Any], Outcome[Any]]]) -> None:
    for future, outcome in settled:
        if future.done():  # cancelled: the client went away (the write itself stands)
            continue
        if outcome.error is not None:
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome.result)
