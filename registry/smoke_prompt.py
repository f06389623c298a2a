"""The smoke test's question, from the deployment rather than from any one company: the first question
of its golden set when it has one, else a question about the first public passage of its index (its
document's title), else a generic question (no index yet)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

FALLBACK = "What does the knowledge base cover?"


def smoke_prompt(settings: Settings) -> str:
    """A short question to load a version with and answer (service.smoke)."""
    from feedback.errors import InvalidGolden
    from feedback.golden import golden_set

    try:
        items = golden_set(settings.golden_path)
    except InvalidGolden:  # a broken golden set is reported where it is used; the smoke test goes on
        items = []
    if items:
        return items[0].question
    title = first_public_title(settings)
    return f"What is {title} about?" if title else FALLBACK


def first_public_title(settings: Settings) -> str | None:
    """The title (else the source) of the first passage of the published index that everyone may read;
    None without an index. Reads one line at a time: no embeddings, no faiss."""
    from rag.index import current_version, version_dir

    index_dir = settings.resolved_index_dir
    version = current_version(index_dir)
    if version is None:
        return None
    try:
        with (version_dir(index_dir, version) / "chunks.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                chunk = json.loads(line) if line.strip() else {}
                if chunk and not chunk.get("groups"):
                    name = str(chunk.get("title") or chunk.get("source") or "").strip()
                    if name:
                        return name
    except (OSError, ValueError):
        return None
    return None
