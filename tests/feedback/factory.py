"""Answer records and a fake clock for the feedback tests (also imported by the child processes they
start)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from feedback.records import AnswerRecord, Citation, RetrievedChunk
from feedback.timestamps import format_timestamp


def make_record(answer_id: str = "a-1", **overrides: Any) -> AnswerRecord:
    """A complete, valid record: every field set to a distinctive value, any of them overridable."""
    values: dict[str, Any] = {
        "answer_id": answer_id,
        "conversation_id": "c-1",
        "user_id": "u-alice",
        "created_at": "2026-11-23T16:54:00.123Z",
        "model_version": "smollm2-135m@champion-3",
        "index_version": "20261123-165400-ab12",
        "prompt_template_hash": "sha256:9f2c",
        "question": "How many vacation days do I get?",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "How many vacation days do I get? ünïcødé ✓"},
        ],
        "prompt": "<|system|>Answer from the context.\n[1] Employees get 25 days...\n<|user|>How many...",
        "answer": "You get 25 vacation days a year [1].",
        "refused": False,
        "confidence": 0.87,
        "retrieved": [
            RetrievedChunk(
                rank=1, chunk_id="hr/leave.md#3", source="hr/leave.md", section="Vacation", score=0.71
            ),
            RetrievedChunk(rank=2, chunk_id="hr/faq.md#1", source="hr/faq.md", section="", score=0.0325),
        ],
        "citations": [
            Citation(
                n=1, chunk_id="hr/leave.md#3", source="hr/leave.md", section="Vacation", title="Leave policy"
            )
        ],
        "generation": {"temperature": 0.2, "top_p": 0.9, "max_tokens": 256, "seed": 7, "stop": ["</s>"]},
        "prompt_tokens": 412,
        "completion_tokens": 19,
        "latency_ms": {"retrieval": 12.5, "prompt": 0.4, "generation": 830.25, "total": 845.0, "ttft": 95.0},
        "finish_reason": "stop",
    }
    values.update(overrides)
    return AnswerRecord(**values)


class FakeClock:
    """A store clock that starts at `start` and moves `step_ms` forward on every reading; `set` jumps."""

    def __init__(self, start: str = "2026-11-23T10:00:00.000Z", step_ms: int = 1) -> None:
        self._now = datetime.fromisoformat(start)
        self._step = timedelta(milliseconds=step_ms)

    def set(self, moment: str) -> None:
        self._now = datetime.fromisoformat(moment)

    def __call__(self) -> str:
        now = format_timestamp(self._now)
        self._now += self._step
        return now


def run_threads(target: Callable[[int], None], n: int) -> None:
    """Run `target(k)` for k in range(n) in n threads released together; re-raise what any raised."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def guarded(k: int) -> None:
        try:
            barrier.wait()
            target(k)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
