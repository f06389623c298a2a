"""The Knowledge tab: the indexed documents, and uploads indexed with a progress bar."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from service.api.deps import AppState
from service.errors import Forbidden
from tests.service.conftest import EMPLOYEE, OPERATOR
from ui.knowledge import add_documents, documents, max_upload_bytes, safe_name
from ui.render import code


@pytest.fixture
def state(
    make_client: Callable[..., TestClient], tokens_file: Path, fixture_index: Path, tmp_path: Path
) -> AppState:
    index = tmp_path / "index"
    shutil.copytree(fixture_index, index)  # the shared fixture index must stay as it is
    client = make_client(tokens_file=tokens_file, index_dir=index)
    app_state: AppState = client.app.state.kbloop  # type: ignore[attr-defined]
    return app_state


def test_safe_names() -> None:
    assert safe_name("../../etc/Bike policy.md") == "Bike policy.md"
    assert safe_name("C:\\Users\\me\\notes<1>.TXT") == "notes_1_.TXT"
    for bad in ("run.exe", "noext", "...md", ".md"):
        with pytest.raises(gr.Error):
            safe_name(bad)


def test_lists_documents_and_adds_an_upload(state: AppState, tmp_path: Path) -> None:
    with pytest.raises(Forbidden):
        documents(state, EMPLOYEE)
    summary, rows = documents(state, OPERATOR)
    assert "documents" in summary
    parking = next(r for r in rows if r[0] == "policies/parking.md")
    assert parking[1] == "Parking Policy" and parking[3] >= 1

    upload = tmp_path / "tmp-upload" / "Bike policy.md"
    upload.parent.mkdir()
    upload.write_text("# Bike policy\n\nBicycles are stored in the basement rack next to door B, free.\n")
    calls: list[tuple[Any, str]] = []
    added = add_documents(
        state, OPERATOR, [str(upload)], lambda p, desc="": calls.append((p, desc)), uploaded=[str(upload)]
    )

    assert added.report.published and added.report.chunks_embedded >= 1
    assert (state.settings.data_dir / "uploads" / "Bike policy.md").exists()
    assert {desc for _, desc in calls} >= {"reading", "writing index"}
    assert code("Bike policy.md") in added.markdown()
    _, rows = documents(state, OPERATOR)
    sources = {r[0] for r in rows}
    # the first root keeps its names: uploading does not rename the documents already indexed
    assert "uploads/Bike policy.md" in sources and "policies/parking.md" in sources
    hits = state.retriever.search("Where do I store my bicycle?", 3, []).hits  # type: ignore[union-attr]
    assert hits[0].source == "uploads/Bike policy.md"


def test_upload_limits(state: AppState, tmp_path: Path) -> None:
    big = tmp_path / "big.md"
    big.write_text("x" * 2048)
    assert max_upload_bytes(state) == int(state.settings.max_file_mb * 1024 * 1024)  # what ingest reads
    state.settings.max_file_mb = 0.001  # about 1 KB
    with pytest.raises(gr.Error, match="larger than"):
        add_documents(state, OPERATOR, [str(big)], lambda *a, **k: None, uploaded=[str(big)])
    exe = str(tmp_path / "x.exe")
    with pytest.raises(gr.Error, match="only"):
        add_documents(state, OPERATOR, [exe], lambda *a, **k: None, uploaded=[exe])
    with pytest.raises(Forbidden):
        add_documents(state, EMPLOYEE, [str(big)], lambda *a, **k: None, uploaded=[str(big)])
    assert not (state.settings.data_dir / "uploads").exists()
