from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.config import RagConfig
from rag.errors import IndexCorrupt, InvalidQuery
from rag.search import Retriever


@pytest.fixture
def retriever(fixture_index: Path, embedder) -> Retriever:
    return Retriever(fixture_index, RagConfig(), embedder=embedder)


@pytest.mark.parametrize(
    ("question", "source", "fact"),
    [
        ("how much is a monthly parking permit?", "policies/parking.md", "45 dollars per month"),
        ("my tunnel keeps disconnecting", "policies/vpn.md", "extension 4357"),
        ("I lost my badge, who do I tell?", "security.html", "badges@example.test"),
        ("when can I get lunch", "lunch.txt", "lunch from 11:45"),
        ("daily food allowance in Chicago", "handbook.pdf", "75 dollars"),
        ("do contractors need an escort", "security.html", "Contractor | Not required"),
    ],
)
@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_top_hit_holds_the_answer(retriever: Retriever, question: str, source: str, fact: str, mode) -> None:
    result = retriever.search(question, k=3, mode=mode)
    assert result.hits[0].source == source
    assert fact in result.hits[0].text


def test_result_shape_and_scores(retriever: Retriever, fixture_index: Path) -> None:
    result = retriever.search("parking permit price", k=3)
    assert [h.rank for h in result.hits] == [1, 2, 3]
    assert all(a.score >= b.score for a, b in zip(result.hits, result.hits[1:], strict=False))
    top = result.hits[0]
    assert top.dense_score is not None and 0 < top.dense_score <= 1
    assert top.lexical_score is not None and top.lexical_score > 0
    assert result.index_version == (fixture_index / "CURRENT").read_text().strip()
    data = result.to_json()
    assert data["index_version"] == result.index_version
    assert set(data["hits"][0]) >= {"chunk_id", "source", "section", "score", "text"}


def test_hybrid_fuses_both_lists(retriever: Retriever) -> None:
    # RRF: the top hit's score is the sum of its reciprocal ranks in both lists
    result = retriever.search("parking permit price", k=1)
    assert result.hits[0].score == pytest.approx(2 / 61)


def test_access_groups_filter_restricted_chunks(retriever: Retriever) -> None:
    question = "VPN tunnel drops, which extension is the helpdesk"
    public = retriever.search(question, k=10, groups=["sales"])
    assert all(h.source != "policies/vpn.md" for h in public.hits)
    member = retriever.search(question, k=10, groups=["Engineering"])
    assert member.hits[0].source == "policies/vpn.md"
    everyone = retriever.search(question, k=10, groups=None)
    assert everyone.hits[0].source == "policies/vpn.md"
    assert len(public.hits) == len(everyone.hits) - 2  # vpn.md has two chunks


def test_confidence_separates_covered_from_uncovered(retriever: Retriever) -> None:
    covered = retriever.search("how much does a parking permit cost per month", k=5)
    uncovered = retriever.search("what is the stock option vesting schedule", k=5)
    assert covered.confidence > retriever.calibration.threshold > uncovered.confidence
    assert covered.answerable and not uncovered.answerable
    assert covered.features["coverage"] > uncovered.features["coverage"]
    assert uncovered.features["uncovered"] > covered.features["uncovered"]


def test_corrupt_calibration_file_is_a_clear_error(fixture_index: Path, tmp_path: Path, embedder) -> None:
    index = tmp_path / "index"
    shutil.copytree(fixture_index, index)
    (index / "calibration.json").write_text("{oops")
    retriever = Retriever(index, RagConfig(), embedder=embedder)
    with pytest.raises(IndexCorrupt, match="kbloop index calibrate"):
        retriever.search("parking permit", k=1)


@pytest.mark.parametrize(("query", "k", "message"), [("", 5, "empty"), ("   ", 5, "empty"),
                         ("x" * 5000, 5, "limit"), ("ok", 0, "k must"), ("ok", 101, "k must")])  # fmt: skip
def test_invalid_queries(retriever: Retriever, query: str, k: int, message: str) -> None:
    with pytest.raises(InvalidQuery, match=message):
        retriever.search(query, k=k)


def test_query_of_only_stopwords_still_answers(retriever: Retriever) -> None:
    result = retriever.search("what is it?", k=2)
    assert len(result.hits) == 2
    assert result.features["coverage"] == 0.0


def test_retriever_follows_new_versions(corpus: Path, tmp_path: Path, embedder) -> None:
    from rag.ingest import ingest

    index = tmp_path / "index"
    first = ingest([corpus], index, RagConfig(), embedder=embedder)
    retriever = Retriever(index, RagConfig(), embedder=embedder)
    assert retriever.search("bike racks", k=1).index_version == first.version
    (corpus / "bikes.md").write_text(
        "# Bikes\n\n## Storage\n\nBike racks are in the courtyard behind building C.\n"
    )
    second = ingest([corpus], index, RagConfig(), embedder=embedder)
    result = retriever.search("where are the bike racks", k=1)
    assert result.index_version == second.version
    assert result.hits[0].source == "bikes.md"


def test_index_built_with_another_embedder_is_refused(fixture_index: Path, embedder) -> None:
    from rag.embedding import Embedder
    from rag.errors import EmbedderUnavailable

    other = Embedder("some/other-model")
    with pytest.raises(EmbedderUnavailable, match="built with"):
        Retriever(fixture_index, RagConfig(), embedder=other).search("parking")
