"""The extractive answer: the passage sentences that best answer the question, each with its [n].

It is what the service shows when a generated answer fails its checks (rag/grounding.py): every word of
it is in the passages, so it can be incomplete but never invented. Sentences are ranked by how much of
the question they cover (content words weighted by their rarity among the candidate sentences, so
"vacation" counts more than "employees") plus, when an embedder is given, their cosine similarity to
the question; the passage rank breaks near-ties. The chosen sentences are shown in document order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rag.grounding import MARKER, asks_quantity, degeneration, sentences, states_quantity, words

Embed = Callable[[list[str]], Any]  # texts -> (n, dim) unit-norm float array


@dataclass(frozen=True)
class Sentence:
    n: int  # passage number, 1-based
    position: int  # index of the sentence inside its passage
    text: str
    score: float = 0.0


def _content(text: str) -> set[str]:
    from rag.lexical import STOPWORDS

    return {w for w in words(text) if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def candidate_sentences(passages: Sequence[str], min_words: int = 4) -> list[Sentence]:
    """The passages' sentences (lines too: lists and tables are one item a line), headings and fragments
    under `min_words` words left out."""
    out: list[Sentence] = []
    for n, passage in enumerate(passages, start=1):
        for i, sentence in enumerate(sentences(MARKER.sub(" ", passage))):
            clean = sentence.strip(" -*#>\t")
            if len(words(clean)) >= min_words:
                out.append(Sentence(n, i, clean))
    return out


def rank_sentences(
    question: str,
    passages: Sequence[str],
    embed: Embed | None = None,
    rank_weight: float = 0.05,
    carry: float = 0.5,
    type_bonus: float = 0.2,
) -> list[Sentence]:
    """Every candidate sentence with its score, best first.

    A sentence's score is its coverage of the question's content words (rarity-weighted) plus its
    cosine similarity to the question. Two corrections for sentences that answer without restating
    the topic: `carry` of the coverage its predecessor in the same passage adds (a sentence that
    continues "LAB-101 has a practical part." with "Sessions run every Tuesday at 14:00." inherits
    part of "LAB-101"), and `type_bonus` when the question asks for a quantity or a time and the
    sentence states one."""
    candidates = candidate_sentences(passages)
    if not candidates:
        return []
    asked = _content(question)
    bags = [_content(s.text) for s in candidates]
    df = {w: sum(1 for bag in bags if w in bag) for w in asked}
    idf = {w: math.log(1 + len(bags) / (1 + df[w])) for w in asked}
    total = sum(idf.values()) or 1.0

    def coverage(bag: set[str]) -> float:
        return sum(idf[w] for w in asked & bag) / total

    lexical = [coverage(bag) for bag in bags]
    for i in range(len(candidates) - 1, 0, -1):
        if candidates[i - 1].n == candidates[i].n:
            lexical[i] += carry * (coverage(bags[i] | bags[i - 1]) - lexical[i])
    if type_bonus and asks_quantity(question):
        lexical = [x + type_bonus * states_quantity(s.text) for x, s in zip(lexical, candidates, strict=True)]
    dense = [0.0] * len(candidates)
    if embed is not None:
        vectors = embed([question, *(s.text for s in candidates)])
        q = vectors[0]
        dense = [float(v @ q) for v in vectors[1:]]
    scored = [
        Sentence(s.n, s.position, s.text, lex + den - rank_weight * (s.n - 1))
        for s, lex, den in zip(candidates, lexical, dense, strict=True)
    ]
    return sorted(scored, key=lambda s: (-s.score, s.n, s.position))


def extractive_answer(
    question: str,
    passages: Sequence[str],
    embed: Embed | None = None,
    max_sentences: int = 3,
    min_relative: float = 0.4,
) -> str:
    """The best sentences (at most `max_sentences`, each scoring at least `min_relative` of the best one),
    in passage order, each followed by its [n]. Empty when the passages have no usable sentence."""
    ranked = rank_sentences(question, passages, embed)
    if not ranked:
        return ""
    best = ranked[0].score
    chosen: list[Sentence] = []
    for s in ranked[:max_sentences]:
        if best > 0 and s.score < min_relative * best:
            break
        # sentences that say the same words again read as a loop: keep the answer free of one
        if degeneration(" ".join(c.text for c in [*chosen, s])) is None or not chosen:
            chosen.append(s)
    chosen.sort(key=lambda s: (s.n, s.position))
    parts = []
    for s in chosen:
        text = s.text if s.text[-1] in ".!?:" else s.text + "."
        parts.append(f"{text} [{s.n}]")
    return " ".join(parts)
