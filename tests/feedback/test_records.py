"""Answer records: row round trip, validation, timestamps."""

from __future__ import annotations

import json
import math
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from feedback.errors import FeedbackErrorCode, InvalidRecord
from feedback.records import AnswerRecord, Citation, RetrievedChunk
from feedback.timestamps import format_timestamp, is_canonical, normalize_timestamp, utc_now
from tests.feedback.factory import make_record


def test_row_round_trip_keeps_every_field() -> None:
    rec = make_record()
    row = rec.to_row()
    assert list(row) == [f.name for f in fields(AnswerRecord)]
    assert row["refused"] == 0
    assert json.loads(row["retrieved"])[0] == {
        "rank": 1,
        "chunk_id": "hr/leave.md#3",
        "source": "hr/leave.md",
        "section": "Vacation",
        "score": 0.71,
    }
    back = AnswerRecord.from_row(row)
    assert back == rec
    assert isinstance(back.retrieved[0], RetrievedChunk) and isinstance(back.citations[0], Citation)
    assert back.refused is False


def test_json_columns_are_canonical_text() -> None:
    a = make_record(generation={"top_p": 0.9, "temperature": 0.2})
    b = make_record(generation={"temperature": 0.2, "top_p": 0.9})
    assert a.to_row()["generation"] == b.to_row()["generation"] == '{"temperature":0.2,"top_p":0.9}'
    assert "✓" in a.to_row()["messages"]  # UTF-8 kept, not \u-escaped


BAD: list[tuple[str, Any]] = [
    ("answer_id", ""),
    ("answer_id", "   "),
    ("answer_id", " padded "),
    ("answer_id", "x" * 300),
    ("answer_id", None),
    ("conversation_id", ""),
    ("user_id", ""),
    ("model_version", ""),
    ("index_version", ""),
    ("prompt_template_hash", ""),
    ("finish_reason", ""),
    ("question", ""),
    ("prompt", ""),
    ("answer", None),
    ("created_at", "2026-11-23 16:54:00"),
    ("created_at", "2026-11-23T16:54:00Z"),
    ("created_at", "2026-11-23T16:54:00.123+01:00"),
    ("created_at", "2026-02-30T16:54:00.123Z"),
    ("messages", []),
    ("messages", [{"role": "user"}]),
    ("messages", [{"content": "hi"}]),
    ("messages", [{"role": "user", "content": 3}]),
    ("messages", ["hi"]),
    ("refused", 0),
    ("refused", "no"),
    ("confidence", 1.5),
    ("confidence", -0.1),
    ("confidence", math.nan),
    ("confidence", "high"),
    ("retrieved", [{"rank": 1}]),
    ("citations", [RetrievedChunk(1, "c", "s", "", 0.5)]),
    ("generation", {"seed": object()}),
    ("generation", {"temperature": math.inf}),
    ("generation", {1: 2}),
    ("generation", []),
    ("prompt_tokens", -1),
    ("prompt_tokens", 1.5),
    ("prompt_tokens", True),
    ("completion_tokens", -3),
    ("latency_ms", {"total": -1.0}),
    ("latency_ms", {"total": "fast"}),
    ("latency_ms", {"total": math.nan}),
]


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}={v!r}"[:40] for f, v in BAD])
def test_invalid_records_are_rejected(field: str, value: Any) -> None:
    with pytest.raises(InvalidRecord) as info:
        make_record(**{field: value})
    assert info.value.code is FeedbackErrorCode.INVALID_RECORD
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: RetrievedChunk(rank=0, chunk_id="c", source="s", section="", score=0.5), "rank"),
        (lambda: RetrievedChunk(rank=1, chunk_id="", source="s", section="", score=0.5), "chunk_id"),
        (lambda: RetrievedChunk(rank=1, chunk_id="c", source="", section="", score=0.5), "source"),
        (lambda: RetrievedChunk(rank=1, chunk_id="c", source="s", section="", score=math.inf), "score"),
        (lambda: Citation(n=0, chunk_id="c", source="s", section="", title=""), "n"),
        (lambda: Citation(n=1, chunk_id="", source="s", section="", title=""), "chunk_id"),
    ],
)
def test_invalid_chunks_and_citations_are_rejected(build: Any, field: str) -> None:
    with pytest.raises(InvalidRecord, match=field):
        build()


def test_validate_sees_mutations_after_construction() -> None:
    rec = make_record()
    rec.messages.append({"role": "user"})
    with pytest.raises(InvalidRecord, match=r"messages\[3\]"):
        rec.validate()


def test_empty_answer_and_lists_are_allowed() -> None:
    rec = make_record(answer="", refused=True, confidence=0.0, retrieved=[], citations=[], latency_ms={})
    assert AnswerRecord.from_row(rec.to_row()) == rec


def test_from_row_rejects_malformed_rows() -> None:
    row = make_record().to_row()
    with pytest.raises(InvalidRecord, match="JSON"):
        AnswerRecord.from_row({**row, "messages": "[not json"})
    with pytest.raises(InvalidRecord, match="columns"):
        AnswerRecord.from_row({k: v for k, v in row.items() if k != "prompt"})
    with pytest.raises(InvalidRecord, match="RetrievedChunk"):
        AnswerRecord.from_row({**row, "retrieved": '[{"rank": 1, "chunk_id": "c"}]'})


def test_timestamps() -> None:
    moment = datetime(2026, 11, 23, 17, 54, 0, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-11-23T16:54:00.123Z"
    with pytest.raises(ValueError, match="naive"):
        format_timestamp(datetime(2026, 11, 23))
    now = utc_now()
    assert is_canonical(now)
    assert abs(datetime.fromisoformat(now) - datetime.now(UTC)) < timedelta(seconds=5)
    assert normalize_timestamp("2026-11-23") == "2026-11-23T00:00:00.000Z"
    assert normalize_timestamp("2026-11-23T18:00:00+02:00") == "2026-11-23T16:00:00.000Z"
    assert normalize_timestamp("2026-11-23T16:54:00.5Z") == "2026-11-23T16:54:00.500Z"
    with pytest.raises(ValueError, match="ISO-8601"):
        normalize_timestamp("yesterday")
