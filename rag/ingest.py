"""Incremental ingest: embed only what changed, drop what disappeared, publish a new version atomically.

A file whose bytes hash the same as in the current version keeps its chunks and vectors without being
parsed again; a changed file is re-chunked, and of its chunks only those whose text changed are
embedded (vectors are reused by content hash). Files that are gone are dropped. When nothing changed,
no new version is published and the embedder is never loaded.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from rag.chunking import Chunk, TokenCounter, chunk_document
from rag.config import RagConfig
from rag.embedding import Embedder, token_counter
from rag.errors import CorpusNotFound, EmptyCorpus, IndexCorrupt, RagError
from rag.index import (
    collect_garbage,
    current_version,
    ingest_lock,
    new_version_id,
    publish,
    read_chunks,
    read_manifest,
    write_version,
)
from rag.lexical import LEXICAL_VERSION
from rag.loaders import SkipFile, discover, file_hash, load_document


class Progress(Protocol):
    """What ingest reports while it works; the CLI draws it as a progress bar."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


@dataclass
class IngestReport:
    version: str
    previous_version: str | None
    published: bool
    files_indexed: int = 0
    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_deleted: int = 0
    chunks: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = [{"source": s, "reason": r} for s, r in self.skipped]
        data["warnings"] = [{"source": s, "message": m} for s, m in self.warnings]
        return data


def resolve_sources(paths: Sequence[Path]) -> list[tuple[Path, Path, str]]:
    """(root, file, source) for every file. Sources are relative to their root; the files of the second
    and later roots are prefixed with their root's folder name, so adding a folder (an upload folder,
    say) never renames the sources — and chunk ids — of the first one."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CorpusNotFound(f"no such file or folder: {', '.join(missing)}")
    roots = [p.resolve() for p in paths]
    names = [r.name for r in roots[1:] if r.is_dir()]
    if len(set(names)) != len(names):
        raise CorpusNotFound("two folders with the same name were given; ingest their common parent instead")
    out: dict[str, tuple[Path, Path, str]] = {}
    for root, path in discover(roots):
        rel = path.relative_to(root).as_posix()
        source = rel if root == roots[0] else f"{root.name}/{rel}"
        out.setdefault(source, (root, path, source))
    return list(out.values())


def ingest(
    paths: Sequence[Path],
    index_dir: Path,
    config: RagConfig,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    full: bool = False,
) -> IngestReport:
    """Bring the index in `index_dir` in line with the files under `paths` (the whole corpus)."""
    started = time.perf_counter()
    progress = progress or _Silent()
    files = resolve_sources(paths)
    embedder = embedder or Embedder(config.embedder, config.batch_size)
    count = token_counter(config.embedder)
    with ingest_lock(index_dir):
        previous = current_version(index_dir)
        old_files: dict[str, Any] = {}
        old_chunks: dict[str, Chunk] = {}
        old_vectors: dict[str, np.ndarray] = {}
        if previous and not full:
            old_files, old_chunks, old_vectors = _previous_state(index_dir, previous, embedder.label, config)

        report = IngestReport(version=previous or "", previous_version=previous, published=False)
        chunks: list[Chunk] = []
        file_entries: dict[str, dict[str, Any]] = {}
        progress.stage("reading", len(files))
        for _root, path, source in files:
            entry = _ingest_file(path, source, config, count, old_files.get(source), old_chunks, report)
            if entry is not None:
                file_entries[source], file_chunks = entry
                chunks.extend(file_chunks)
            progress.advance()
        report.files_deleted = len(set(old_files) - set(file_entries))
        report.files_indexed = len(file_entries)
        report.chunks = len(chunks)
        if not chunks:
            skipped = "; ".join(f"{s}: {r}" for s, r in report.skipped[:10])
            raise EmptyCorpus(
                f"nothing to index under {', '.join(map(str, paths))}"
                + (f" (skipped: {skipped})" if skipped else "")
            )
        changed = report.files_new or report.files_changed or report.files_deleted or previous is None
        if not changed:
            report.chunks_reused = len(chunks)
            report.seconds = time.perf_counter() - started
            return report

        vectors = _embed(chunks, old_vectors, embedder, progress, report)
        digest = hashlib.sha256("".join(c.chunk_id + c.content_hash for c in chunks).encode()).hexdigest()
        version = new_version_id(index_dir, digest)
        manifest = {
            "version": version,
            "parent": previous,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "roots": [str(p.resolve()) for p in paths],
            "embedder": embedder.label,
            "dimension": int(vectors.shape[1]),
            "chunking": asdict(config.chunking),
            "lexical": LEXICAL_VERSION,
            "counts": {"files": len(file_entries), "chunks": len(chunks)},
            "files": file_entries,
            "skipped": [{"source": s, "reason": r} for s, r in report.skipped],
        }
        progress.stage("writing index", 1)
        write_version(index_dir, version, chunks, vectors, manifest)
        publish(index_dir, version)
        progress.advance()
        collect_garbage(index_dir, config.keep_versions)
        report.version = version
        report.published = True
        report.seconds = time.perf_counter() - started
        return report


def _previous_state(
    index_dir: Path, version: str, embedder_label: str, config: RagConfig
) -> tuple[dict[str, Any], dict[str, Chunk], dict[str, np.ndarray]]:
    """What can be reused from the current version; nothing when the embedder or chunking changed."""
    try:
        manifest = read_manifest(index_dir, version)
        if manifest.get("embedder") != embedder_label or manifest.get("chunking") != asdict(config.chunking):
            return {}, {}, {}
        chunks, vectors = read_chunks(index_dir, version)
    except IndexCorrupt:
        return {}, {}, {}  # rebuild from scratch rather than fail: the files are the source of truth
    by_id = {c.chunk_id: c for c in chunks}
    by_hash = {c.content_hash: vectors[i] for i, c in enumerate(chunks)}
    if manifest.get("lexical") != LEXICAL_VERSION:
        # the term index was built by another tokenizer: every file is re-read and the BM25 index rebuilt,
        # but the embeddings are still good and are reused by content hash
        return {}, by_id, by_hash
    return dict(manifest.get("files", {})), by_id, by_hash


def _ingest_file(
    path: Path,
    source: str,
    config: RagConfig,
    count: TokenCounter,
    old_entry: dict[str, Any] | None,
    old_chunks: dict[str, Chunk],
    report: IngestReport,
) -> tuple[dict[str, Any], list[Chunk]] | None:
    if old_entry is not None:
        try:
            stat = path.stat()
            if stat.st_size <= config.max_file_bytes and file_hash(path.read_bytes()) == old_entry["hash"]:
                reused = [old_chunks[cid] for cid in old_entry["chunks"] if cid in old_chunks]
                if len(reused) == len(old_entry["chunks"]):
                    report.files_unchanged += 1
                    return old_entry, reused
        except OSError:
            pass  # load_document reports it below
    try:
        doc = load_document(path, source, config.max_file_bytes)
        chunks = chunk_document(doc, count, config.chunking)
    except SkipFile as exc:
        report.skipped.append((source, exc.reason))
        return None
    except RagError:
        raise
    except Exception as exc:  # a parser bug on one odd file must not abort the whole run
        report.skipped.append((source, f"could not parse: {type(exc).__name__}: {exc}"))
        return None
    report.warnings.extend((source, w) for w in doc.warnings)
    if old_entry is None:
        report.files_new += 1
    else:
        report.files_changed += 1
    entry = {
        "hash": doc.content_hash,
        "title": doc.title,
        "groups": list(doc.groups),
        "chunks": [c.chunk_id for c in chunks],
    }
    return entry, chunks


def _embed(
    chunks: list[Chunk],
    old_vectors: dict[str, np.ndarray],
    embedder: Embedder,
    progress: Progress,
    report: IngestReport,
) -> np.ndarray:  # (n, dim)
    todo = [i for i, c in enumerate(chunks) if c.content_hash not in old_vectors]
    report.chunks_reused = len(chunks) - len(todo)
    report.chunks_embedded = len(todo)
    dim = embedder.dimension if todo or not old_vectors else len(next(iter(old_vectors.values())))
    vectors = np.empty((len(chunks), dim), dtype=np.float32)
    for i, chunk in enumerate(chunks):
        if chunk.content_hash in old_vectors:
            vectors[i] = old_vectors[chunk.content_hash]
    if todo:
        progress.stage("embedding", len(todo))
        start = time.perf_counter()
        vectors[todo] = embedder.encode([chunks[i].embed_text for i in todo], progress=progress.advance)
        report.embed_seconds = time.perf_counter() - start
    return vectors
