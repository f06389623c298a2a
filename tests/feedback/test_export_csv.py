"""CSV exports of votes, comparisons and corrections: header, quoting, filters."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from feedback import Store
from feedback.export_csv import export_csv
from tests.feedback.factory import FakeClock


def _read(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_votes_csv(answered: Store, clock: FakeClock) -> None:
    tricky = 'Wrong, "very" wrong;\nsee =HR page'
    answered.vote("a-1", "u-bob", "down", reasons=["outdated", "incorrect"], comment=tricky)
    clock.set("2026-11-24T00:00:00.000Z")
    answered.vote("a-2", "u-bob", "up")
    out = io.StringIO(newline="")
    summary = export_csv(answered, out, "votes")
    assert summary.written == 2 and summary.kind == "votes-csv"
    rows = _read(out.getvalue())
    assert list(rows[0]) == [
        "answer_id",
        "user_id",
        "model_version",
        "value",
        "reasons",
        "comment",
        "created_at",
        "updated_at",
        "restricted_groups",
    ]
    assert rows[0] == {
        "answer_id": "a-1",
        "user_id": "u-bob",
        "model_version": "m1",
        "value": "down",
        "reasons": "incorrect;outdated",
        "comment": tricky,  # commas, quotes and newlines survive the round trip
        "created_at": "2026-11-23T10:00:00.000Z",
        "updated_at": "2026-11-23T10:00:00.000Z",
        "restricted_groups": "",
    }
    assert (rows[1]["answer_id"], rows[1]["reasons"], rows[1]["comment"]) == ("a-2", "", "")
    assert [r["answer_id"] for r in _read(_csv(answered, "votes", since="2026-11-24"))] == ["a-2"]
    assert [r["answer_id"] for r in _read(_csv(answered, "votes", model_version="m1"))] == ["a-1"]


def _csv(store: Store, table: str, **filters: str) -> str:
    out = io.StringIO(newline="")
    export_csv(store, out, table, **filters)  # type: ignore[arg-type]
    return out.getvalue()


def test_comparisons_csv(answered: Store) -> None:
    open_one = answered.create_comparison("u-bob", "a-1", "a-2")
    decided = answered.create_comparison("u-bob", "a-2", "a-1")
    chosen = answered.choose(decided.comparison_id, "u-bob", "both_bad")
    rows = _read(_csv(answered, "comparisons"))
    assert [
        (r["comparison_id"], r["left_model_version"], r["right_model_version"], r["choice"]) for r in rows
    ] == [
        (open_one.comparison_id, "m1", "m2", ""),
        (decided.comparison_id, "m2", "m1", "both_bad"),
    ]
    assert chosen.chosen_at is not None
    assert (rows[0]["chosen_at"], rows[1]["chosen_at"]) == ("", chosen.chosen_at)
    assert len(_read(_csv(answered, "comparisons", model_version="m2"))) == 2  # either side matches


def test_corrections_csv_to_a_file(answered: Store, tmp_path: Path) -> None:
    answered.add_correction("a-1", "u-bob", "Line one\nline two, with ünïcødé")
    path = tmp_path / "corrections.csv"
    summary = export_csv(answered, path, "corrections")
    assert summary.path == str(path) and summary.written == 1
    with path.open(encoding="utf-8", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert (row["answer_id"], row["model_version"], row["text"]) == (
        "a-1",
        "m1",
        "Line one\nline two, with ünïcødé",
    )


def test_an_empty_table_still_has_its_header(store: Store) -> None:
    assert _csv(store, "corrections").splitlines() == [
        "correction_id,answer_id,user_id,model_version,created_at,text,restricted_groups"
    ]
    with pytest.raises(ValueError, match="table"):
        export_csv(store, io.StringIO(), "answers")  # type: ignore[arg-type]
