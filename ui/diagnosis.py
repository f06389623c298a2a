"""A first guess at why an answer got a thumbs down: retrieval (the right passage was not found) or
generation (it was found, and the model answered wrong), for the operator to confirm by reading.

The strongest evidence is an employee's correction: when a retrieved passage holds most of the
corrected answer's content words, retrieval did its job. Without one, the reasons and the citations
give weaker hints. Pure function over plain data: no store, no index, no Gradio.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Stage = Literal["retrieval", "generation", "documents", "unknown"]

# share of the correction's content words a passage must hold to count as holding the answer
HOLDS_ANSWER = 0.6
_WORDS = re.compile(r"[a-z0-9]+", re.IGNORECASE)
_STOP = frozenset(
    ("a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "has", "have",
     "how", "i", "in", "is", "it", "its", "of", "on", "or", "per", "the", "their", "there", "this", "to",
     "was", "what", "when", "where", "which", "who", "why", "will", "with", "you", "your")
)  # fmt: skip


@dataclass(frozen=True)
class Diagnosis:
    stage: Stage
    hint: str  # plain text: escape it where it is rendered


def content_words(text: str) -> set[str]:
    return {w.lower() for w in _WORDS.findall(text)} - _STOP


def diagnose(
    *,
    refused: bool,
    retrieved: Sequence[tuple[int, str]],  # (rank, chunk id) in rank order
    cited: Sequence[str],  # chunk ids the answer cites
    passage_text: Mapping[str, str],  # chunk id -> text, for the retrieved chunks still indexed
    reasons: Sequence[str],
    corrections: Sequence[str],
) -> Diagnosis:
    if not retrieved:
        return Diagnosis("retrieval", "Retrieval found nothing: the expected source was not retrieved.")
    expected = set().union(*(content_words(c) for c in corrections)) if corrections else set()
    if expected:
        best_rank, best_share = 0, 0.0
        for rank, chunk_id in retrieved:
            share = len(expected & content_words(passage_text.get(chunk_id, ""))) / len(expected)
            if share > best_share:
                best_rank, best_share = rank, share
        if best_share >= HOLDS_ANSWER:
            if refused:
                return Diagnosis(
                    "retrieval",
                    f"The passage ranked {best_rank} holds the corrected answer, but retrieval's "
                    "confidence was below the refusal threshold: check the calibration.",
                )
            return Diagnosis(
                "generation",
                f"Retrieved but answered wrong: the passage ranked {best_rank} holds "
                f"{best_share:.0%} of the corrected answer's words.",
            )
        return Diagnosis(
            "retrieval",
            "The corrected answer is in none of the retrieved passages (best: "
            f"{best_share:.0%} of its words): the expected source was not retrieved, or is not indexed.",
        )
    if refused:
        return Diagnosis(
            "retrieval",
            "The answer was refused as not covered: if the documents do cover it, the expected source "
            "was not retrieved (a correction would tell).",
        )
    if "wrong_source" in reasons:
        return Diagnosis("retrieval", "The employee says the cited source is the wrong one.")
    if "outdated" in reasons:
        return Diagnosis("documents", "Said to be outdated: check that the source document is current.")
    if not cited:
        return Diagnosis("generation", "The answer cites none of the retrieved passages.")
    return Diagnosis(
        "unknown",
        "The answer cites retrieved passages; without a correction, read them against the answer to "
        "tell a retrieval failure from a generation failure.",
    )
