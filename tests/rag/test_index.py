"""Atomic publish: readers only ever see complete versions, also while an ingest runs or dies."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from rag.config import RagConfig
from rag.errors import IndexCorrupt, IndexNotFound, IndexWriteFailed
from rag.index import CURRENT, collect_garbage, current_version, list_versions, load_version, write_version
from rag.ingest import ingest
from rag.search import Retriever


def test_reader_during_reindex_sees_only_complete_versions(tmp_path: Path, embedder) -> None:
    corpus = tmp_path / "docs"
    corpus.mkdir()
    index = tmp_path / "index"

    def generation(n: int) -> None:
        # every file of generation n says n; a half-published index would mix generations
        for i in range(4):
            (corpus / f"doc{i}.md").write_text(f"# Doc {i}\n\n## Status\n\nThis is release generation {n}.\n")

    generation(0)
    ingest([corpus], index, RagConfig(), embedder=embedder)
    versions_seen: dict[str, set[str]] = {}
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        retriever = Retriever(index, RagConfig(), embedder=embedder)
        try:
            while not stop.is_set():
                result = retriever.search("release generation", k=4)
                gens = {h.text.rsplit(" ", 1)[-1] for h in result.hits}
                versions_seen.setdefault(result.index_version, set()).update(gens)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for n in range(1, 5):
            generation(n)
            assert ingest([corpus], index, RagConfig(keep_versions=2), embedder=embedder).published
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert len(versions_seen) >= 2
    for version, gens in versions_seen.items():
        assert len(gens) == 1, f"version {version} mixed generations {gens}"


def test_crash_while_writing_leaves_current_untouched(
    tmp_path: Path, corpus: Path, embedder, monkeypatch
) -> None:
    index = tmp_path / "index"
    first = ingest([corpus], index, RagConfig(), embedder=embedder)
    (corpus / "more.md").write_text("# More\n\nAnother policy about printers on floor three.\n")

    import rag.index

    def explode(texts):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rag.index.LexicalIndex, "build", staticmethod(explode))
    with pytest.raises(IndexWriteFailed, match=r"No space left.*stays current"):
        ingest([corpus], index, RagConfig(), embedder=embedder)
    assert current_version(index) == first.version
    assert list_versions(index) == [first.version]
    assert not list((index / "versions").glob(".tmp-*"))
    assert load_version(index).version == first.version


def test_leftover_temp_folder_from_a_killed_ingest_is_ignored_and_collected(
    tmp_path: Path, corpus: Path, embedder
):
    index = tmp_path / "index"
    first = ingest([corpus], index, RagConfig(), embedder=embedder)
    leftover = index / "versions" / ".tmp-20990101-000000-dead-123"
    leftover.mkdir()
    (leftover / "chunks.jsonl").write_text("{half a line")
    assert list_versions(index) == [first.version]
    assert (
        Retriever(index, RagConfig(), embedder=embedder).search("parking", k=1).index_version == first.version
    )
    collect_garbage(index, keep=3)
    assert not leftover.exists()


def test_garbage_collection_keeps_current_and_newest(tmp_path: Path) -> None:
    index = tmp_path / "index"
    from rag.chunking import Chunk

    chunk = Chunk("id1", "a.md", "A", "", "text about things", "h", ())
    vectors = np.ones((1, 4), dtype=np.float32) / 2
    for version in ("v1", "v2", "v3", "v4"):
        write_version(index, version, [chunk], vectors, {"version": version})
    (index / CURRENT).write_text("v1\n")  # an operator pinned an old version
    collect_garbage(index, keep=2)
    assert list_versions(index) == ["v1", "v3", "v4"]


def test_missing_and_corrupt_index_errors(tmp_path: Path, corpus: Path, embedder) -> None:
    with pytest.raises(IndexNotFound, match="kbloop ingest"):
        load_version(tmp_path / "nothing")
    index = tmp_path / "index"
    report = ingest([corpus], index, RagConfig(), embedder=embedder)
    (index / "versions" / report.version / "embeddings.npy").write_bytes(b"garbage")
    with pytest.raises(IndexCorrupt, match="re-run"):
        load_version(index)
    # the files are the source of truth: an ingest over a corrupt version rebuilds it
    rebuilt = ingest([corpus], index, RagConfig(), embedder=embedder)
    assert rebuilt.published and rebuilt.chunks_embedded == rebuilt.chunks
    assert load_version(index).version == rebuilt.version
