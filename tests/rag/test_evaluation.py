from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.evaluation import load_golden, mean, recall_at_k, reciprocal_rank
from tests.conftest import REPO


def test_recall_and_reciprocal_rank_hand_computed() -> None:
    ranked = ["a.md", "b.md", "a.md", "c.md"]
    assert recall_at_k(ranked, {"c.md"}, 4) == 1.0
    assert recall_at_k(ranked, {"c.md"}, 3) == 0.0
    assert reciprocal_rank(ranked, {"b.md", "c.md"}, 10) == 0.5
    assert reciprocal_rank(ranked, {"z.md"}, 10) == 0.0
    assert mean([1.0, 0.5, 0.0]) == 0.5 and mean([]) == 0.0


def test_load_golden_reports_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "g.jsonl"
    good = {"id": "1", "question": "q", "answer": "a", "sources": ["x.md"], "answerable": True}
    path.write_text(json.dumps(good) + "\n\n{not json}\n")
    with pytest.raises(ValueError, match=r"g\.jsonl:3"):
        load_golden(path)


def test_bundled_golden_set_is_complete() -> None:
    root = REPO / "examples" / "acme-handbook"
    golden = load_golden(root / "golden.jsonl")
    assert len(golden) >= 60
    assert len({g.id for g in golden}) == len(golden)
    unanswerable = [g for g in golden if not g.answerable]
    assert len(unanswerable) >= 8 and all(not g.sources for g in unanswerable)
    for g in golden:
        if g.answerable:
            assert g.sources and g.answer.strip()
            for source in g.sources:
                assert (root / source).is_file(), f"{g.id}: {source} does not exist"
    assert any(g.question == "Where is the HR department in Boston?" for g in golden)


def test_bundled_handbook_has_the_promised_shape() -> None:
    root = REPO / "examples" / "acme-handbook"
    files = [p for p in root.rglob("*") if p.is_file() and p.suffix in (".md", ".html", ".txt", ".pdf")]
    by_type = {s: sum(1 for p in files if p.suffix == s) for s in (".md", ".html", ".txt", ".pdf")}
    assert len(files) >= 40
    assert by_type[".html"] >= 3 and by_type[".pdf"] >= 2 and by_type[".txt"] >= 2
    restricted = [
        p for p in files if p.suffix == ".md" and "\ngroups:" in p.read_text(encoding="utf-8")[:400]
    ]
    assert len(restricted) >= 4
