from __future__ import annotations

import itertools
import re

import pytest

from rag.chunking import chunk_document, chunk_id, split_text
from rag.config import ChunkingConfig
from rag.embedding import token_counter
from rag.loaders import Document, Section


def words(text: str) -> int:
    return len(text.split())


def doc(*sections: tuple[tuple[str, ...], str], source: str = "d.md") -> Document:
    return Document(source, "Doc", ("hr",), tuple(Section(p, t) for p, t in sections), "h" * 64)


def sentences(n: int, prefix: str = "S") -> str:
    return " ".join(f"{prefix}{i} alpha beta gamma delta." for i in range(n))  # 5 words each


def test_short_sections_stay_one_chunk_each_with_metadata() -> None:
    chunks = chunk_document(
        doc((("A",), "one two three four five six"), (("B",), "seven eight nine ten eleven twelve")),
        words,
        ChunkingConfig(max_tokens=50, overlap_tokens=5, min_tokens=3),
    )
    assert [(c.section, c.text) for c in chunks] == [
        ("A", "one two three four five six"),
        ("B", "seven eight nine ten eleven twelve"),
    ]
    assert all(c.title == "Doc" and c.groups == ("hr",) and c.source == "d.md" for c in chunks)
    assert chunks[0].embed_text == "Doc > A\none two three four five six"


def test_long_section_splits_within_budget_with_overlap() -> None:
    config = ChunkingConfig(max_tokens=40, overlap_tokens=10, min_tokens=0)
    chunks = chunk_document(doc((("Long",), sentences(20))), words, config)
    assert len(chunks) > 1
    for c in chunks:
        assert words(c.embed_text) + 2 <= config.max_tokens  # heading line and [CLS]/[SEP] included
    # consecutive windows share their boundary sentences
    for a, b in itertools.pairwise(chunks):
        last = re.findall(r"S\d+", a.text)[-1]
        assert last in b.text
    # nothing is lost
    joined = " ".join(c.text for c in chunks)
    assert all(f"S{i} " in joined for i in range(20))
    assert [c.section for c in chunks] == ["Long"] * len(chunks)
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_overlap_zero_means_disjoint_windows() -> None:
    windows = split_text(sentences(12), words, budget=20, overlap=0)
    found = [re.findall(r"S\d+", w) for w in windows]
    flat = [s for f in found for s in f]
    assert flat == [f"S{i}" for i in range(12)]


def test_a_sentence_longer_than_the_budget_is_cut_into_word_windows() -> None:
    text = " ".join(f"w{i}" for i in range(100))
    windows = split_text(text, words, budget=30, overlap=0)
    assert all(words(w) <= 30 for w in windows)
    assert " ".join(windows).split() == text.split()


def test_small_section_merges_into_next_keeping_its_heading() -> None:
    chunks = chunk_document(
        doc(
            (("Parking",), "See below."),
            (("Parking", "Boston"), "Garage at 1 Main St, level 2, badge entry."),
        ),
        words,
        ChunkingConfig(max_tokens=60, overlap_tokens=0, min_tokens=4),
    )
    assert len(chunks) == 1
    assert chunks[0].section == "Parking > Boston"
    assert chunks[0].text.startswith("Parking: See below.")


def test_trailing_small_section_merges_backwards() -> None:
    chunks = chunk_document(
        doc((("A",), "a long enough section with many words"), (("B",), "tiny")),
        words,
        ChunkingConfig(max_tokens=60, overlap_tokens=0, min_tokens=4),
    )
    assert len(chunks) == 1 and chunks[0].text.endswith("B: tiny")


def test_ids_are_stable_and_independent_of_other_sections() -> None:
    config = ChunkingConfig(max_tokens=60, overlap_tokens=0, min_tokens=0)
    before = chunk_document(doc((("A",), "alpha text here"), (("B",), "beta text here")), words, config)
    after = chunk_document(doc((("A",), "alpha text CHANGED"), (("B",), "beta text here")), words, config)
    again = chunk_document(doc((("A",), "alpha text here"), (("B",), "beta text here")), words, config)
    assert [c.chunk_id for c in before] == [c.chunk_id for c in again]
    assert before[0].chunk_id == after[0].chunk_id  # same place, new text: same id ...
    assert before[0].content_hash != after[0].content_hash  # ... but a new content hash
    assert before[1].content_hash == after[1].content_hash
    assert before[0].chunk_id == chunk_id("d.md", "A", 0)


def test_ids_differ_by_source_and_duplicate_headings() -> None:
    config = ChunkingConfig(max_tokens=60, overlap_tokens=0, min_tokens=0)
    a = chunk_document(doc((("FAQ",), "first faq"), (("FAQ",), "second faq"), source="x.md"), words, config)
    b = chunk_document(doc((("FAQ",), "first faq"), source="y.md"), words, config)
    assert a[0].chunk_id != a[1].chunk_id
    assert a[0].chunk_id != b[0].chunk_id


def test_real_tokenizer_budget_is_respected() -> None:
    count = token_counter("")  # the bundled MiniLM's tokenizer.json, no torch
    config = ChunkingConfig()
    text = " ".join(
        f"Rule {i}: expense reports over $75 need an itemized receipt uploaded to Concur within 30 days."
        for i in range(60)
    )
    chunks = chunk_document(doc((("Receipts",), text)), count, config)
    assert len(chunks) >= 4
    assert max(count(c.embed_text) + 2 for c in chunks) <= config.max_tokens


@pytest.mark.parametrize("budget", [5, 17, 64])
def test_split_text_never_exceeds_budget(budget: int) -> None:
    windows = split_text(sentences(30), words, budget=budget, overlap=3)
    assert all(words(w) <= budget for w in windows)
