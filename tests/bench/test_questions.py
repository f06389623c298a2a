"""The benchmark question files: every `phrase` is verbatim in its one source, as written and as indexed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rag.loaders import load_document

REPO = Path(__file__).resolve().parents[2]
RIVERBEND = REPO / "examples" / "riverbend-water"
ACME = REPO / "examples" / "acme-handbook"
FILES = {  # name: (question file, the corpus its sources are relative to)
    "riverbend": (RIVERBEND / "golden.jsonl", RIVERBEND),
    "extra-heldout": (REPO / "bench" / "questions" / "extra-heldout.jsonl", ACME),
}
FIELDS = {"id", "question", "answer", "sources", "answerable", "category", "phrase"}


def questions(name: str) -> list[dict[str, Any]]:
    path, _ = FILES[name]
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def indexed_text(corpus: Path, source: str) -> str:
    """What the loader extracts from a document: the text the index and the prompts see."""
    document = load_document(corpus / source, source, 50_000_000)
    return "\n".join(section.text for section in document.sections)


@pytest.mark.parametrize("name", sorted(FILES))
def test_ids_are_unique_and_fields_complete(name: str) -> None:
    items = questions(name)
    ids = [q["id"] for q in items]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    for q in items:
        assert set(q) == FIELDS, (q["id"], set(q) ^ FIELDS)
        assert q["question"].strip() and q["answer"].strip(), q["id"]


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_phrase_is_verbatim_in_its_source(name: str) -> None:
    _, corpus = FILES[name]
    for q in questions(name):
        if not q["answerable"]:
            assert q["phrase"] == "" and q["sources"] == [], q["id"]
            continue
        assert len(q["sources"]) == 1, q["id"]
        source = q["sources"][0]
        assert (corpus / source).is_file(), (q["id"], source)
        phrase = q["phrase"]
        assert phrase.strip() and len(phrase) <= 80, (q["id"], phrase)
        if not source.endswith(".pdf"):  # a PDF's text exists only as the loader extracts it
            assert phrase in (corpus / source).read_text(encoding="utf-8"), (q["id"], source, phrase)
        assert phrase in indexed_text(corpus, source), (q["id"], source, phrase)


def test_riverbend_has_the_planned_mix() -> None:
    items = questions("riverbend")
    answerable = [q for q in items if q["answerable"]]
    assert len(answerable) == 70
    assert len(items) - len(answerable) == 12
    for q in items:
        if not q["answerable"]:
            assert q["answer"] == "The knowledge base does not cover this question."


def test_extra_heldout_keeps_its_48_questions() -> None:
    assert len(questions("extra-heldout")) == 48
