from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app

runner = CliRunner()


@pytest.fixture
def index(fixture_index: Path, monkeypatch: pytest.MonkeyPatch, embedder) -> Path:
    # the CLI builds its own Retriever; hand it the session's already loaded model
    import rag.search

    monkeypatch.setattr(rag.search, "Embedder", lambda *a, **k: embedder)
    return fixture_index


def test_search_json_is_a_list_of_hits(index: Path) -> None:
    result = runner.invoke(
        app, ["search", "how much is a parking permit", "-k", "2", "--json", "--index", str(index)]
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert isinstance(hits, list) and len(hits) == 2
    assert {"chunk_id", "source", "section", "score", "text", "index_version"} <= set(hits[0])
    assert hits[0]["source"] == "policies/parking.md"  # relative to the ingested root
    assert hits[0]["section"] == "Permits"


def test_search_queries_file_prints_one_list_per_line(index: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.txt"
    queries.write_text("parking permit cost\n\nlost badge\n")
    result = runner.invoke(
        app, ["search", "--queries", str(queries), "-k", "3", "--json", "--index", str(index)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().split("\n")
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    assert parsed[1] == []
    assert parsed[0][0]["source"] == "policies/parking.md"
    assert parsed[2][0]["source"] == "security.html"
    assert all(len(p) == 3 for p in (parsed[0], parsed[2]))


def test_search_text_output_and_groups(index: Path) -> None:
    result = runner.invoke(app, ["search", "vpn tunnel drops", "--groups", "sales", "--index", str(index)])
    assert result.exit_code == 0
    assert "confidence" in result.stdout and "policies/vpn.md" not in result.stdout


def test_search_without_index_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["search", "anything", "--index", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "index_not_found" in result.stderr and "kbloop ingest" in result.stderr


def test_search_needs_a_question_or_a_file(index: Path) -> None:
    result = runner.invoke(app, ["search", "--index", str(index)])
    assert result.exit_code == 2 and "QUESTION" in result.stderr


def test_ingest_missing_path_and_info(tmp_path: Path, corpus: Path, embedder, monkeypatch) -> None:
    import rag.ingest

    monkeypatch.setattr(rag.ingest, "Embedder", lambda *a, **k: embedder)
    result = runner.invoke(app, ["ingest", str(tmp_path / "missing"), "--index", str(tmp_path / "ix")])
    assert result.exit_code == 2 and "corpus_not_found" in result.stderr

    result = runner.invoke(app, ["ingest", str(corpus), "--index", str(tmp_path / "ix")])
    assert result.exit_code == 0, result.output
    assert "5 indexed" in result.stdout and "skipped notes.docx: unsupported file type .docx" in result.stdout

    again = runner.invoke(app, ["ingest", "--index", str(tmp_path / "ix"), "--json"])  # roots remembered
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["published"] is False and report["files_unchanged"] == 5

    info = runner.invoke(app, ["index", "info", "--json", "--index", str(tmp_path / "ix")])
    data = json.loads(info.stdout)
    assert data["files"] == 5 and data["groups"] == {"engineering": 1}
    assert data["file_types"] == {".html": 1, ".md": 2, ".pdf": 1, ".txt": 1}


def test_calibrate_writes_calibration(index: Path, tmp_path: Path) -> None:
    import shutil

    target = tmp_path / "ix"
    shutil.copytree(index, target)
    golden = tmp_path / "golden.jsonl"
    covered = ["how much is a parking permit", "when is lunch served", "lost badge"]
    uncovered = ["stock options vesting", "company car lease", "pet policy dogs"]
    rows = [(q, True) for q in covered] + [(q, False) for q in uncovered]
    golden.write_text("\n".join(json.dumps({"question": q, "answerable": a}) for q, a in rows))
    result = runner.invoke(app, ["index", "calibrate", "--golden", str(golden), "--index", str(target)])
    assert result.exit_code == 0, result.output
    saved = json.loads((target / "calibration.json").read_text())
    assert saved["fitted_on"] == str(golden) and len(saved["weights"]) == 2
