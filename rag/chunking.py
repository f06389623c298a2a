"""Heading-aware chunking: one chunk per section, long sections split at sentences with overlap.

Chunk ids are stable: they depend on the source path, the section path and the chunk's ordinal within
that section, not on the text, so editing one section leaves every other chunk's id unchanged. The
content hash (of the exact text that gets embedded) decides whether a chunk must be embedded again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from rag.config import ChunkingConfig
from rag.loaders import Document, Section

TokenCounter = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+(?=[\"'(\[]?[A-Z0-9\-*])")
_SPECIAL_TOKENS = 2  # [CLS] and [SEP] that the encoder adds around every text


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    source: str
    title: str
    section: str  # "Leave > Parental leave"; "" for text before the first heading
    text: str
    content_hash: str
    groups: tuple[str, ...]

    @property
    def heading(self) -> str:
        return f"{self.title} > {self.section}" if self.section else self.title

    @property
    def embed_text(self) -> str:
        """What the encoder and BM25 see: the heading line gives each passage its context."""
        return f"{self.heading}\n{self.text}"


def approximate_tokens(text: str) -> int:
    """A tokenizer-free estimate (word pieces run ~1.3 per word) for when no tokenizer is at hand."""
    return int(len(re.findall(r"\w+|[^\w\s]", text)) * 1.15) + 1


def chunk_id(source: str, section: str, ordinal: int) -> str:
    return hashlib.sha1(f"{source}\x1f{section}\x1f{ordinal}".encode()).hexdigest()[:16]


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def chunk_document(doc: Document, count: TokenCounter, config: ChunkingConfig) -> list[Chunk]:
    """Split a document into chunks that fit `config.max_tokens` (heading line included)."""
    pieces: list[tuple[tuple[str, ...], str]] = []
    for section in _merge_small_sections(list(doc.sections), count, config):
        heading = _heading(doc.title, section.path)
        budget = config.max_tokens - count(heading) - _SPECIAL_TOKENS
        budget = max(budget, config.max_tokens // 4)
        for text in split_text(section.text, count, budget, config.overlap_tokens):
            pieces.append((section.path, text))

    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for path, text in pieces:
        section_name = " > ".join(path)
        ordinal = seen.get(section_name, 0)
        seen[section_name] = ordinal + 1
        heading = _heading(doc.title, path)
        chunks.append(
            Chunk(
                chunk_id=chunk_id(doc.source, section_name, ordinal),
                source=doc.source,
                title=doc.title,
                section=section_name,
                text=text,
                content_hash=content_hash(f"{heading}\n{text}"),
                groups=doc.groups,
            )
        )
    return chunks


def _heading(title: str, path: tuple[str, ...]) -> str:
    return " > ".join((title, *path)) if path else title


def _merge_small_sections(
    sections: list[Section], count: TokenCounter, config: ChunkingConfig
) -> list[Section]:
    """Fold a section shorter than `min_tokens` into the next one (or the previous one, at the end).

    The small section's heading stays in the text, so "## Parking" + one line still reads right.
    """
    out: list[Section] = []
    carry = ""
    for i, section in enumerate(sections):
        text = f"{carry}\n\n{section.text}".strip() if carry else section.text
        carry = ""
        if count(text) >= config.min_tokens:
            out.append(Section(section.path, text))
            continue
        label = section.path[-1] if section.path else ""
        labelled = f"{label}: {text}" if label else text
        if i < len(sections) - 1:
            carry = labelled
        elif out:
            out[-1] = Section(out[-1].path, f"{out[-1].text}\n\n{labelled}")
        else:
            out.append(Section(section.path, text))
    return out


def split_text(text: str, count: TokenCounter, budget: int, overlap: int) -> list[str]:
    """Pack sentences into windows of at most `budget` tokens; consecutive windows share ~`overlap`."""
    if count(text) <= budget:
        return [text]
    units = _units(text, count, budget)
    windows: list[str] = []
    current: list[tuple[str, int, bool]] = []  # (text, tokens, starts a paragraph)
    size = 0
    for unit in units:
        if current and size + unit[1] > budget:
            windows.append(_join(current))
            # Keep the trailing units that fit in the overlap to open the next window.
            tail: list[tuple[str, int, bool]] = []
            tail_size = 0
            for prev in reversed(current):
                if tail_size + prev[1] > overlap:
                    break
                tail.insert(0, prev)
                tail_size += prev[1]
            if tail_size + unit[1] > budget:
                tail, tail_size = [], 0
            current, size = tail, tail_size
        current.append(unit)
        size += unit[1]
    if current:
        windows.append(_join(current))
    return windows


def _units(text: str, count: TokenCounter, budget: int) -> list[tuple[str, int, bool]]:
    """Sentences (split further into word windows when one alone exceeds the budget)."""
    units: list[tuple[str, int, bool]] = []
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        first = True
        for line in paragraph.split("\n"):
            for sentence in _SENTENCE_END.split(line.strip()):
                if not sentence:
                    continue
                tokens = count(sentence)
                if tokens <= budget:
                    units.append((sentence, tokens, first))
                    first = False
                    continue
                words = sentence.split()
                step = max(1, int(len(words) * budget / tokens * 0.9))
                for start in range(0, len(words), step):
                    piece = " ".join(words[start : start + step])
                    units.append((piece, count(piece), first))
                    first = False
    return units


def _join(units: list[tuple[str, int, bool]]) -> str:
    out = ""
    for i, (text, _, starts_paragraph) in enumerate(units):
        if i == 0:
            out = text
        elif starts_paragraph:
            out += "\n\n" + text
        else:
            out += "\n" + text if text.startswith(("-", "*", "|")) else " " + text
    return out
