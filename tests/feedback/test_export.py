"""TRL JSONL exports: exact keys, the right side chosen, skips counted, filters, files, streaming."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from feedback import Store
from feedback.errors import InvalidFilter
from feedback.export import export_demonstrations, export_preferences, export_thumbs
from feedback.store import _INSERT_ANSWER
from tests.feedback.factory import FakeClock, make_record

REFUSAL = "The knowledge base does not cover this question."


def _lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def seeded(store: Store) -> Store:
    for answer_id, model, prompt, answer, refused in [
        ("p1", "m1", "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>", "25 days [1].", False),
        ("p2", "m2", "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>", "You get 25 days.", False),
        ("p3", "m2", "<|user|>[1] other passage\nQuestion: vacation?<|assistant|>", "No idea.", False),
        ("r1", "m2", "", REFUSAL, True),
        ("r2", "m1", "", REFUSAL, True),
        ("e1", "m2", "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>", "", False),
    ]:
        store.record_answer(
            make_record(answer_id, model_version=model, prompt=prompt, answer=answer, refused=refused)
        )
    return store


def _decide(store: Store, clock: FakeClock, day: str, left: str, right: str, choice: str | None) -> None:
    clock.set(f"2026-11-{day}T12:00:00.000Z")
    shown = store.create_comparison("u-bob", left, right)
    if choice is not None:
        store.choose(shown.comparison_id, "u-bob", choice)


def test_preference_pairs(seeded: Store, clock: FakeClock) -> None:
    for day, left, right, choice in [
        ("20", "p1", "p2", "A"),  # left wins
        ("21", "p2", "p1", "A"),
        ("22", "p1", "p2", "B"),  # right wins
        ("23", "p1", "p2", "tie"),
        ("23", "p1", "p2", "both_bad"),
        ("23", "p1", "p3", "A"),  # other passages: not one prompt
        ("24", "p1", "r1", "B"),  # the refusal preferred: the other side's prompt
        ("24", "r1", "r2", "A"),  # two refusals: no prompt
        ("24", "p1", "e1", "A"),  # an empty answer
        ("25", "p1", "p2", None),  # never chosen
    ]:
        _decide(seeded, clock, day, left, right, choice)
    out = io.StringIO()
    summary = export_preferences(seeded, out)
    prompt = "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>"
    public: dict[str, Any] = {"restricted_groups": []}
    assert _lines(out) == [
        {"prompt": prompt, "chosen": "25 days [1].", "rejected": "You get 25 days.", **public},
        {"prompt": prompt, "chosen": "You get 25 days.", "rejected": "25 days [1].", **public},
        {"prompt": prompt, "chosen": "You get 25 days.", "rejected": "25 days [1].", **public},
        {"prompt": prompt, "chosen": REFUSAL, "rejected": "25 days [1].", **public},
    ]
    keys = ["prompt", "chosen", "rejected", "restricted_groups"]
    assert all(list(example) == keys for example in _lines(out))
    assert summary.kind == "preferences" and summary.written == 4 and summary.path is None
    assert summary.skipped == {
        "tie": 1,
        "both_bad": 1,
        "prompt_mismatch": 1,
        "no_prompt": 1,
        "empty_answer": 1,
    }

    # the window is on when the choice was made; the version on either side of the pair
    window = io.StringIO()
    assert export_preferences(seeded, window, since="2026-11-21", until="2026-11-23").written == 2
    assert [e["chosen"] for e in _lines(window)] == ["You get 25 days.", "You get 25 days."]
    assert export_preferences(seeded, io.StringIO(), model_version="m1").written == 4  # p1 is in every pair
    only_m2 = export_preferences(seeded, io.StringIO(), model_version="m2", since="2026-11-24")
    assert only_m2.written == 1 and only_m2.skipped["no_prompt"] == 1
    assert export_preferences(seeded, io.StringIO(), model_version="m9").written == 0


def test_unpaired_thumbs(seeded: Store, clock: FakeClock) -> None:
    seeded.vote("p1", "u1", "up")
    seeded.vote("p2", "u1", "down", reasons=["incorrect"])
    seeded.vote("p1", "u2", "down")  # two users, two labels for one answer
    seeded.vote("r1", "u1", "down")  # a refusal has no prompt
    seeded.vote("e1", "u1", "up")
    seeded.vote("p3", "u1", "up")
    clock.set("2026-11-30T00:00:00.000Z")
    seeded.vote("p3", "u1", "none")  # withdrawn later
    out = io.StringIO()
    summary = export_thumbs(seeded, out)
    prompt = "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>"
    public: dict[str, Any] = {"restricted_groups": []}
    assert _lines(out) == [
        {"prompt": prompt, "completion": "25 days [1].", "label": True, **public},
        {"prompt": prompt, "completion": "You get 25 days.", "label": False, **public},
        {"prompt": prompt, "completion": "25 days [1].", "label": False, **public},
    ]
    assert summary.skipped == {"withdrawn": 1, "no_prompt": 1, "empty_answer": 1}
    assert export_thumbs(seeded, io.StringIO(), model_version="m2").written == 1
    assert export_thumbs(seeded, io.StringIO(), since="2026-11-30").skipped["withdrawn"] == 1


def test_demonstrations(seeded: Store, clock: FakeClock) -> None:
    seeded.record_answer(
        make_record("odd", messages=[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
    )
    clock.set("2026-11-23T12:00:00.000Z")
    seeded.add_correction("p1", "u1", "Employees get 25 days [1].")
    clock.set("2026-11-24T12:00:00.000Z")
    seeded.add_correction("p1", "u1", "Employees get 25 paid vacation days a year [1].")  # supersedes
    seeded.add_correction("p1", "u2", "25 days.")  # another user: its own example
    seeded.add_correction("r1", "u1", "The handbook says 25 days.")  # a refusal, corrected
    seeded.add_correction("odd", "u1", "x")

    out = io.StringIO()
    summary = export_demonstrations(seeded, out)
    conversation = make_record().messages
    public: dict[str, Any] = {"restricted_groups": []}
    assert _lines(out) == [
        {
            "messages": [
                *conversation,
                {"role": "assistant", "content": "Employees get 25 paid vacation days a year [1]."},
            ],
            **public,
        },
        {"messages": [*conversation, {"role": "assistant", "content": "25 days."}], **public},
        {
            "messages": [*conversation, {"role": "assistant", "content": "The handbook says 25 days."}],
            **public,
        },
    ]
    assert summary.kind == "demonstrations-messages"
    assert summary.skipped == {"superseded": 1, "no_prompt": 0, "no_question": 1}

    prompts = io.StringIO()
    summary = export_demonstrations(seeded, prompts, style="prompt")
    assert [list(e) for e in _lines(prompts)] == [["prompt", "completion", "restricted_groups"]] * 3
    assert _lines(prompts)[0] == {
        "prompt": "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>",
        "completion": "Employees get 25 paid vacation days a year [1].",
        "restricted_groups": [],
    }
    assert summary.skipped["no_prompt"] == 1  # the refusal has no rendered prompt

    # superseded within the window only: before the 24th the first correction was the newest
    early = io.StringIO()
    assert export_demonstrations(seeded, early, until="2026-11-24").written == 1
    assert _lines(early)[0]["messages"][-1]["content"] == "Employees get 25 days [1]."
    assert export_demonstrations(seeded, io.StringIO(), model_version="m2").written == 1
    with pytest.raises(ValueError, match="style"):
        export_demonstrations(seeded, io.StringIO(), style="chat")  # type: ignore[arg-type]


def test_exports_write_files_atomically(
    seeded: Store, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _decide(seeded, clock, "20", "p1", "p2", "A")
    _decide(seeded, clock, "21", "p1", "p2", "B")
    path = tmp_path / "exports" / "prefs.jsonl"
    summary = export_preferences(seeded, path)
    assert summary.path == str(path) and summary.written == 2
    assert [json.loads(line)["chosen"] for line in path.read_text(encoding="utf-8").splitlines()] == [
        "25 days [1].",
        "You get 25 days.",
    ]
    assert os.listdir(path.parent) == ["prefs.jsonl"]

    import feedback.export

    calls = 0
    real_line = feedback.export._line

    def failing_line(stream: Any, example: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full")
        real_line(stream, example)

    monkeypatch.setattr(feedback.export, "_line", failing_line)
    with pytest.raises(OSError, match="disk full"):
        export_preferences(seeded, path)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 2  # the previous export is intact
    assert os.listdir(path.parent) == ["prefs.jsonl"]  # and no partial file is left behind


def test_malformed_filters_are_invalid_filter(seeded: Store) -> None:
    with pytest.raises(InvalidFilter, match="since"):
        export_preferences(seeded, io.StringIO(), since="yesterday")


def test_an_export_does_not_block_writers_and_sees_one_snapshot(
    seeded: Store, clock: FakeClock, tmp_path: Path
) -> None:
    seeded.vote("p1", "u1", "up")
    seeded.vote("p2", "u1", "up")

    class WritingStream(io.StringIO):
        def write(self, text: str) -> int:
            seeded.vote("p3", "u1", "up")  # another thread of the service writing mid-export
            return super().write(text)

    out = WritingStream()
    assert export_thumbs(seeded, out).written == 2  # the vote written during the export is not in it
    assert len(seeded.list_votes()) == 3


def test_large_exports_stream_row_by_row(store: Store) -> None:
    # 1,500 answers with 20 kB prompts (30 MB): exporting them must not hold them all in memory
    n, prompt = 1500, "context " * 2500
    rows = [make_record(f"a{i:04d}", prompt=prompt + str(i)).to_row() for i in range(n)]
    conn = store._db.conn
    with conn:
        conn.executemany(_INSERT_ANSWER, rows)
        conn.executemany(
            "INSERT INTO votes VALUES (?, 'u1', 'up', '[]', NULL, ?, ?)",
            [(f"a{i:04d}", "2026-11-23T10:00:00.000Z", "2026-11-23T10:00:00.000Z") for i in range(n)],
        )
    del rows
    with open(os.devnull, "w", encoding="utf-8") as sink:
        tracemalloc.start()
        try:
            summary = export_thumbs(store, sink)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert summary.written == n
    assert peak < 2_000_000, f"peak {peak / 1e6:.1f} MB: the export loaded the rows at once"
