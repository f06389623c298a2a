from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from rag.config import RagConfig
from rag.embedding import Embedder
from rag.errors import CorpusNotFound, EmptyCorpus, IndexLocked
from rag.index import current_version, ingest_lock, list_versions, read_chunks, read_manifest
from rag.ingest import ingest


class CountingEmbedder(Embedder):
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner.name, inner.batch_size)
        self._model = inner.model()
        self.embedded: list[str] = []

    def encode(self, texts, progress=None):  # type: ignore[no-untyped-def]
        self.embedded.extend(texts)
        return super().encode(texts, progress)


def test_first_ingest_indexes_supported_files_and_lists_skipped(
    corpus: Path, tmp_path: Path, embedder
) -> None:
    report = ingest([corpus], tmp_path / "index", RagConfig(), embedder=embedder)
    assert report.published and report.previous_version is None
    assert report.files_indexed == 5 and report.files_new == 5
    assert dict(report.skipped) == {
        "broken.pdf": report.skipped[0][1],
        "empty.md": "empty file",
        "image.txt": "binary file (contains NUL bytes)",
        "notes.docx": "unsupported file type .docx",
    }
    assert report.skipped[0][1].startswith("corrupt PDF")
    manifest = read_manifest(tmp_path / "index")
    assert set(manifest["files"]) == {"handbook.pdf", "lunch.txt", "policies/parking.md", "policies/vpn.md",
                                      "security.html"}  # fmt: skip
    assert manifest["files"]["policies/vpn.md"]["groups"] == ["engineering"]
    chunks, vectors = read_chunks(tmp_path / "index", report.version)
    assert vectors.shape == (len(chunks), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert report.chunks == len(chunks) == report.chunks_embedded


def test_reingest_unchanged_publishes_nothing_and_never_loads_the_model(
    corpus: Path, tmp_path: Path, embedder
):
    index = tmp_path / "index"
    first = ingest([corpus], index, RagConfig(), embedder=embedder)
    fresh = Embedder()  # a model that was never loaded
    again = ingest([corpus], index, RagConfig(), embedder=fresh)
    assert not again.published and again.version == first.version
    assert again.files_unchanged == 5 and again.chunks_embedded == 0
    assert not fresh.loaded
    assert list_versions(index) == [first.version]


def test_add_change_delete(corpus: Path, tmp_path: Path, embedder) -> None:
    index = tmp_path / "index"
    counting = CountingEmbedder(embedder)
    first = ingest([corpus], index, RagConfig(), embedder=counting)
    before, _ = read_chunks(index, first.version)
    counting.embedded.clear()

    (corpus / "new.md").write_text(
        "# Bikes\n\n## Storage\n\nBike racks are in the courtyard behind building C.\n"
    )
    parking = corpus / "policies" / "parking.md"
    parking.write_text(parking.read_text().replace("45 dollars", "50 dollars"))
    (corpus / "lunch.txt").unlink()

    report = ingest([corpus], index, RagConfig(), embedder=counting)
    assert report.published and report.previous_version == first.version
    assert (report.files_new, report.files_changed, report.files_deleted) == (1, 1, 1)
    assert report.files_unchanged == 3
    after, _ = read_chunks(index, report.version)
    sources = {c.source for c in after}
    assert "lunch.txt" not in sources and "new.md" in sources
    # only the new file and the edited section were embedded; the parking EV section was reused
    assert len(counting.embedded) == 2
    assert any("50 dollars" in t for t in counting.embedded)
    assert any("Bike racks" in t for t in counting.embedded)
    old_ids = {c.chunk_id: c for c in before}
    permit = next(c for c in after if "50 dollars" in c.text)
    assert permit.chunk_id in old_ids and old_ids[permit.chunk_id].content_hash != permit.content_hash
    assert current_version(index) == report.version


def test_vectors_survive_reingest_unchanged(corpus: Path, tmp_path: Path, embedder) -> None:
    index = tmp_path / "index"
    first = ingest([corpus], index, RagConfig(), embedder=embedder)
    (corpus / "extra.md").write_text("# Extra\n\nSomething else entirely about the print room.\n")
    second = ingest([corpus], index, RagConfig(), embedder=embedder)
    c1, v1 = read_chunks(index, first.version)
    c2, v2 = read_chunks(index, second.version)
    by_id = {c.chunk_id: v1[i] for i, c in enumerate(c1)}
    for i, c in enumerate(c2):
        if c.chunk_id in by_id:
            assert np.array_equal(by_id[c.chunk_id], v2[i])


def test_full_reembeds_everything(corpus: Path, tmp_path: Path, embedder) -> None:
    index = tmp_path / "index"
    ingest([corpus], index, RagConfig(), embedder=embedder)
    report = ingest([corpus], index, RagConfig(), embedder=embedder, full=True)
    assert report.published and report.chunks_embedded == report.chunks


def test_missing_path_is_a_clear_error(tmp_path: Path, embedder) -> None:
    with pytest.raises(CorpusNotFound, match="no-such-folder"):
        ingest([tmp_path / "no-such-folder"], tmp_path / "index", RagConfig(), embedder=embedder)


def test_empty_corpus_is_a_clear_error(tmp_path: Path, embedder) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "empty.md").write_text("")
    with pytest.raises(EmptyCorpus, match=r"empty\.md: empty file"):
        ingest([folder], tmp_path / "index", RagConfig(), embedder=embedder)
    assert current_version(tmp_path / "index") is None


def test_a_second_writer_fails_fast(corpus: Path, tmp_path: Path, embedder) -> None:
    index = tmp_path / "index"
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with ingest_lock(index):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        with pytest.raises(IndexLocked):
            ingest([corpus], index, RagConfig(), embedder=embedder)
    finally:
        release.set()
        thread.join()
    assert ingest([corpus], index, RagConfig(), embedder=embedder).published


def test_later_roots_are_prefixed_and_the_first_keeps_its_names(tmp_path: Path, embedder) -> None:
    for name in ("hr", "it"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "faq.md").write_text(
            f"# {name} FAQ\n\nQuestions about {name} are answered here.\n"
        )
    index = tmp_path / "index"
    first = ingest([tmp_path / "hr"], index, RagConfig(), embedder=embedder)
    ids_before = {c.chunk_id for c in read_chunks(index, first.version)[0]}
    report = ingest([tmp_path / "hr", tmp_path / "it"], index, RagConfig(), embedder=embedder)
    assert set(read_manifest(index)["files"]) == {"faq.md", "it/faq.md"}
    assert report.files_indexed == 2 and report.files_new == 1 and report.files_unchanged == 1
    assert ids_before <= {c.chunk_id for c in read_chunks(index, report.version)[0]}  # nothing renamed


def test_changed_embedder_config_rebuilds(corpus: Path, tmp_path: Path, embedder) -> None:
    index = tmp_path / "index"
    ingest([corpus], index, RagConfig(), embedder=embedder)
    rechunked = RagConfig(chunking=RagConfig().chunking.__class__(max_tokens=120))
    report = ingest([corpus], index, rechunked, embedder=embedder)
    assert report.published and report.files_new == 5


def test_index_from_another_tokenizer_is_retokenized_without_reembedding(
    corpus: Path, tmp_path: Path, embedder
) -> None:
    import json

    import rag.lexical

    index = tmp_path / "index"
    first = ingest([corpus], index, RagConfig(), embedder=embedder)
    manifest_path = index / "versions" / first.version / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["lexical"] == rag.lexical.LEXICAL_VERSION
    manifest["lexical"] = rag.lexical.LEXICAL_VERSION - 1  # as if built before the tokenizer changed
    manifest_path.write_text(json.dumps(manifest))
    counting = CountingEmbedder(embedder)
    report = ingest([corpus], index, RagConfig(), embedder=counting)
    assert report.published and report.version != first.version
    assert counting.embedded == []  # every vector reused by content hash
    assert read_manifest(index, report.version)["lexical"] == rag.lexical.LEXICAL_VERSION
