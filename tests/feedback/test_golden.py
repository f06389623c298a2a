"""The deployment's golden set: reading JSONL and CSV, errors that name line and column, duplicates
reported instead of doubled, atomic writes, the stable split, and the `kbloop golden` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from feedback.errors import DuplicateGolden, InvalidGolden
from feedback.golden import (
    GoldenItem,
    add_item,
    add_items,
    golden_set,
    load_golden,
    merge,
    normalize_question,
    read_items,
    split_draw,
    split_of,
    with_splits,
)
from tests.conftest import REPO

ACME = REPO / "examples" / "acme-handbook" / "golden.jsonl"
CSV = (
    "id,question,answer,sources,answerable,category,phrase\n"
    'c-1,Where is the HR office?,"At 451 Congress Street, 4th floor.",hr/a.md; hr/b.md,true,hr,451 Congress\n'
    "c-2,What is the stock option vesting schedule?,The knowledge base does not cover it.,,false,,\n"
)


def item(item_id: str, question: str, **extra: object) -> GoldenItem:
    return GoldenItem(item_id, question, "An answer.", ("a.md",), True, "", extra)


def test_normalised_questions_and_the_stable_split() -> None:
    assert normalize_question("  Where is   the HR office?? ") == "where is the hr office"
    assert split_draw("Where is the HR office?") == split_draw("where is the hr  office")
    # the same draw in another process (a different hash seed): sha256, not Python's hash()
    code = "from feedback.golden import split_draw; print(repr(split_draw('Where is the HR office?')))"
    other = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "123", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert float(other.stdout) == split_draw("Where is the HR office?")
    assert 0.0 <= split_draw("x") < 1.0
    assert split_of("anything", 0.0) == "train" and split_of("anything", 1.0) == "heldout"
    with pytest.raises(InvalidGolden, match="fraction"):
        split_of("anything", 1.5)
    questions = [i.question for i in load_golden(ACME)]
    held = sum(split_of(q, 0.2) == "heldout" for q in questions)
    assert 0.1 * len(questions) <= held <= 0.3 * len(questions)
    # a larger fraction only moves questions from train to held out
    wider = {q for q in questions if split_of(q, 0.5) == "heldout"}
    assert {q for q in questions if split_of(q, 0.2) == "heldout"} <= wider
    # recorded in each item; kept where present unless overwritten
    marked = with_splits([item("a", "Q?", split="heldout"), item("b", "R?")], 0.0, overwrite=False)
    assert [m.split for m in marked] == ["heldout", "train"]
    assert [m.split for m in with_splits(marked, 0.0)] == ["train", "train"]


def test_jsonl_and_csv_read_the_same_columns_and_keep_extra_fields(tmp_path: Path) -> None:
    csv_path = tmp_path / "g.csv"
    csv_path.write_text(CSV, encoding="utf-8")
    (at, first), (_, second) = read_items(csv_path)
    assert at == f"{csv_path}:2"
    assert first == GoldenItem("c-1", "Where is the HR office?", "At 451 Congress Street, 4th floor.",
                               ("hr/a.md", "hr/b.md"), True, "hr")  # fmt: skip
    assert first.extra == {"phrase": "451 Congress"} and first.split is None
    assert second.sources == () and not second.answerable and second.extra == {}
    # written as JSONL and read back: the same items, extra fields included
    jsonl = tmp_path / "g.jsonl"
    jsonl.write_text("".join(json.dumps(i.to_json()) + "\n" for i in (first, second)), encoding="utf-8")
    again = load_golden(jsonl)
    assert again == [first, second] and again[0].extra == {"phrase": "451 Congress"}
    acme = load_golden(ACME)
    assert len(acme) == 68 and acme[0].to_json()["id"] == "a-001"


def test_every_malformed_line_is_named_with_its_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        CSV + "c-3,,An answer.,,true,,\nc-4,Why?,Because.,,maybe,,\nc-5,How?,So.,,true,,,surplus\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidGolden) as caught:
        read_items(path)
    lines = caught.value.message.splitlines()
    assert lines == [
        f"{path}:4: 'question' must be a non-empty str, got ''",
        f"{path}:5: 'answerable' must be true or false, got 'maybe'",
        f"{path}:6: more cells than the header has columns",
    ]
    headless = tmp_path / "headless.csv"
    headless.write_text("id,question\nx,y\n", encoding="utf-8")
    with pytest.raises(
        InvalidGolden, match=r"headless\.csv:1: the header lacks the columns \['answer', 'answerable'\]"
    ):
        read_items(headless)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"id": "x"\n[1]\n{"id": "y", "question": "Q", "answer": "A", "answerable": true, '
                     '"split": "test"}\n', encoding="utf-8")  # fmt: skip
    with pytest.raises(InvalidGolden) as caught:
        read_items(jsonl)
    assert [line.split(": ", 1)[0] for line in caught.value.message.splitlines()] == [
        f"{jsonl}:{n}" for n in (1, 2, 3)
    ]
    assert (
        "not valid JSON (Expecting ',' delimiter at column" in caught.value.message
        and "'split' must be one of train, heldout" in caught.value.message
    )


def test_duplicates_are_reported_not_doubled_and_writes_are_atomic(tmp_path: Path) -> None:
    existing = [item("a", "Where is the HR office?")]
    added, duplicates = merge(
        existing,
        [("f:1", item("a", "Other?")), ("f:2", item("b", "where is the hr office")),
         ("f:3", item("c", "New?")), ("f:4", item("d", "NEW"))],
    )  # fmt: skip
    assert [a.id for a in added] == ["c"]
    assert [(d.at, d.id) for d in duplicates] == [("f:1", "a"), ("f:2", "b"), ("f:4", "d")]
    assert (
        "already in the golden set as 'a'" in duplicates[1].reason
        and "'a' is already" in duplicates[0].reason
    )

    path = tmp_path / "var" / "golden.jsonl"
    assert golden_set(path) == []  # a deployment without a golden set
    report = add_items(path, [("f:1", item("a", "Q one?")), ("f:2", item("b", "Q two?"))])
    assert [a.id for a in report.added] == ["a", "b"] and report.total == 2
    assert all(i.split in ("train", "heldout") for i in golden_set(path))
    before = path.read_bytes()
    report = add_items(path, [("f:1", item("c", "q ONE"))])
    assert report.added == () and len(report.duplicates) == 1 and path.read_bytes() == before
    with pytest.raises(DuplicateGolden, match="already in the golden set"):
        add_item(path, item("z", "Q two"))
    stored, created = add_item(path, item("z", "Q three?"))
    assert stored.id == "z" and created and stored.split in ("train", "heldout")
    assert add_item(path, item("z", "Q three?")) == (stored, False)  # a retry is stored once
    assert [i.id for i in golden_set(path)] == ["a", "b", "z"]
    report = add_items(path, [("f:1", item("n", "Only me?"))], replace_all=True)
    assert [i.id for i in golden_set(path)] == ["n"] and report.total == 1
    assert sorted(p.name for p in path.parent.iterdir()) == [".golden.jsonl.lock", "golden.jsonl"]


def test_the_golden_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import get_settings

    target = tmp_path / "deploy" / "golden.jsonl"
    monkeypatch.setenv("KBLOOP_GOLDEN", str(target))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        source = tmp_path / "g.csv"
        source.write_text(
            CSV + "c-3,where is the  hr office,Dup.,,yes,,\nc-4,Why?,So.,,maybe,,\n", encoding="utf-8"
        )
        bad = runner.invoke(app, ["golden", "import", str(source)])
        assert bad.exit_code == 2 and f"{source}:5: 'answerable'" in bad.output and not target.exists()
        source.write_text(CSV + "c-3,where is the  hr office,Dup.,,yes,,\n", encoding="utf-8")
        done = runner.invoke(app, ["golden", "import", str(source)])
        assert done.exit_code == 0, done.output
        assert "2 items added" in done.output and f"{source}:4: c-3: the same question" in done.output
        assert [i.id for i in golden_set(target)] == ["c-1", "c-2"]

        assert runner.invoke(app, ["golden", "import", str(ACME)]).exit_code == 0
        assert len(golden_set(target)) == 70
        assert runner.invoke(app, ["golden", "split", "--heldout-fraction", "0.3"]).exit_code == 0
        listed = runner.invoke(app, ["golden", "list", "--json", "--split", "heldout"])
        held = json.loads(listed.stdout)
        assert held and all(
            r["split"] == "heldout" and split_of(r["question"], 0.3) == "heldout" for r in held
        )
        assert {r["id"] for r in held} == {
            i.id for i in golden_set(target) if split_of(i.question, 0.3) == "heldout"
        }
        table = runner.invoke(app, ["golden", "list"])
        assert table.exit_code == 0 and "c-1\t" in table.stdout and "refusal" in table.stdout
        assert runner.invoke(app, ["golden", "list", "--split", "test"]).exit_code == 2

        kept = runner.invoke(app, ["golden", "import", "--if-empty", str(ACME)])  # `make run` on a set
        assert kept.exit_code == 0 and "already has items" in kept.output and len(golden_set(target)) == 70
        replaced = runner.invoke(app, ["golden", "import", "--replace", str(source)])
        assert replaced.exit_code == 0 and [i.id for i in golden_set(target)] == ["c-1", "c-2"]
    finally:
        get_settings.cache_clear()
