"""Retrieval quality on a golden set: recall@k and MRR@k over source documents. Pure functions."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GoldenQuestion:
    id: str
    question: str
    answer: str
    sources: tuple[str, ...]
    answerable: bool
    category: str = ""


def load_golden(path: Path) -> list[GoldenQuestion]:
    """Read a golden JSONL file; a malformed line is an error that names the line."""
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(
                GoldenQuestion(
                    id=str(row["id"]),
                    question=str(row["question"]),
                    answer=str(row["answer"]),
                    sources=tuple(row.get("sources", ())),
                    answerable=bool(row["answerable"]),
                    category=str(row.get("category", "")),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a golden question ({exc})") from exc
    return out


def recall_at_k(ranked_sources: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1.0 when any relevant document is among the first k results, else 0.0."""
    return 1.0 if any(s in relevant for s in ranked_sources[:k]) else 0.0


def reciprocal_rank(ranked_sources: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1/rank of the first relevant document within the first k results (0.0 if none)."""
    for rank, source in enumerate(ranked_sources[:k], start=1):
        if source in relevant:
            return 1.0 / rank
    return 0.0


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0
