"""The smoke test asks the deployment's own question: its first golden question, else one about the
first public passage of its index, never a fixed company's."""

from __future__ import annotations

import json
from pathlib import Path

from core.settings import Settings
from registry.smoke_prompt import FALLBACK, smoke_prompt


def write_index(index_dir: Path, chunks: list[dict[str, object]]) -> None:
    """A published index as far as the smoke prompt reads it: CURRENT and the version's chunks.jsonl."""
    (index_dir / "versions" / "v1").mkdir(parents=True)
    (index_dir / "CURRENT").write_text("v1\n")
    lines = "".join(json.dumps(c) + "\n" for c in chunks)
    (index_dir / "versions" / "v1" / "chunks.jsonl").write_text(lines, encoding="utf-8")


def test_the_smoke_prompt_comes_from_the_deployment(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    assert smoke_prompt(settings) == FALLBACK  # nothing ingested, no golden set

    write_index(
        settings.resolved_index_dir,
        [
            {"chunk_id": "c1", "source": "pay/bands.md", "title": "Salary Bands", "groups": ["managers"]},
            {"chunk_id": "c2", "source": "ops/runbook.md", "title": "Pump Station Runbook", "groups": []},
        ],
    )
    assert smoke_prompt(settings) == "What is Pump Station Runbook about?"  # the first public passage

    settings.golden_path.write_text(
        json.dumps({"id": "g1", "question": "How often is pump 3 serviced?", "answer": "Monthly.",
                    "sources": ["ops/runbook.md"], "answerable": True}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    assert smoke_prompt(settings) == "How often is pump 3 serviced?"
    settings.golden_path.write_text("not json\n", encoding="utf-8")  # broken: reported elsewhere
    assert smoke_prompt(settings) == "What is Pump Station Runbook about?"
