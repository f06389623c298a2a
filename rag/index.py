"""The on-disk index: immutable versions published atomically behind a `CURRENT` pointer.

Layout of the index folder:

    CURRENT                   the id of the published version (replaced with os.replace)
    calibration.json          optional refusal calibration (`kbloop index calibrate`)
    .lock                     held by the one ingest that may run at a time
    versions/<id>/
        manifest.json         files (hash, chunk ids, groups), embedder, config, counts, skipped files
        chunks.jsonl          one chunk per line, row order = vector order
        embeddings.npy        (n, dim) float32, unit norm
        dense.faiss           faiss inner-product index over the embeddings (float16 codes)
        bm25/                 bm25s index + document frequencies

A version folder is written under a temporary name, flushed to disk and renamed into place before
`CURRENT` moves to it, so a reader sees either the old version or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.files import fsync_dir, fsync_tree
from rag.chunking import Chunk
from rag.errors import IndexCorrupt, IndexLocked, IndexNotFound, IndexWriteFailed, missing_extra
from rag.lexical import LexicalIndex

FORMAT_VERSION = 1
CURRENT = "CURRENT"
VERSIONS = "versions"


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise missing_extra("faiss-cpu") from exc
    return faiss


@dataclass
class IndexVersion:
    """One published version, fully in memory and read-only once loaded."""

    version: str
    path: Path
    manifest: dict[str, Any]
    chunks: list[Chunk]
    embeddings: np.ndarray  # (n, dim) float32
    dense: Any  # faiss.Index
    lexical: LexicalIndex
    row_of: dict[str, int] = field(default_factory=dict)  # chunk id -> row

    def __post_init__(self) -> None:
        self.row_of = {c.chunk_id: i for i, c in enumerate(self.chunks)}


def current_version(index_dir: Path) -> str | None:
    try:
        value = (index_dir / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def version_dir(index_dir: Path, version: str) -> Path:
    return index_dir / VERSIONS / version


def read_manifest(index_dir: Path, version: str | None = None) -> dict[str, Any]:
    version = version or current_version(index_dir)
    if version is None:
        raise IndexNotFound(f"no index in {index_dir}; build one with `kbloop ingest PATH`")
    path = version_dir(index_dir, version) / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise IndexCorrupt(f"index version {version} has no manifest; re-run `kbloop ingest`") from exc
    except json.JSONDecodeError as exc:
        raise IndexCorrupt(f"index version {version} has a corrupt manifest; re-run `kbloop ingest`") from exc
    return manifest


def chunk_to_json(chunk: Chunk) -> dict[str, Any]:
    data = asdict(chunk)
    data["groups"] = list(chunk.groups)
    return data


def chunk_from_json(data: dict[str, Any]) -> Chunk:
    return Chunk(
        chunk_id=data["chunk_id"],
        source=data["source"],
        title=data["title"],
        section=data["section"],
        text=data["text"],
        content_hash=data["content_hash"],
        groups=tuple(data.get("groups", ())),
    )


def read_chunks(index_dir: Path, version: str) -> tuple[list[Chunk], np.ndarray]:
    """Chunks and their vectors only: what an incremental ingest needs from the previous version."""
    folder = version_dir(index_dir, version)
    try:
        with (folder / "chunks.jsonl").open(encoding="utf-8") as fh:
            chunks = [chunk_from_json(json.loads(line)) for line in fh if line.strip()]
        embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError) as exc:
        raise IndexCorrupt(f"index version {version} is unreadable ({exc}); re-run `kbloop ingest`") from exc
    if embeddings.shape[0] != len(chunks):
        raise IndexCorrupt(f"index version {version}: {len(chunks)} chunks but {embeddings.shape[0]} vectors")
    return chunks, embeddings


def load_version(index_dir: Path, version: str | None = None) -> IndexVersion:
    version = version or current_version(index_dir)
    if version is None:
        raise IndexNotFound(f"no index in {index_dir}; build one with `kbloop ingest PATH`")
    manifest = read_manifest(index_dir, version)
    chunks, embeddings = read_chunks(index_dir, version)
    folder = version_dir(index_dir, version)
    faiss = _faiss()
    try:
        dense = faiss.read_index(str(folder / "dense.faiss"))
        lexical = LexicalIndex.load(folder / "bm25")
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise IndexCorrupt(f"index version {version} is unreadable ({exc}); re-run `kbloop ingest`") from exc
    if dense.ntotal != len(chunks):
        raise IndexCorrupt(
            f"index version {version}: faiss holds {dense.ntotal} vectors for {len(chunks)} chunks"
        )
    return IndexVersion(version, folder, manifest, chunks, embeddings, dense, lexical)


def new_version_id(index_dir: Path, digest: str) -> str:
    """`YYYYmmdd-HHMMSS-<content digest>`: sortable by time; suffixed when that name is already taken."""
    base = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + f"-{digest[:8]}"
    version, n = base, 1
    while version_dir(index_dir, version).exists():
        n += 1
        version = f"{base}-{n}"
    return version


def write_version(
    index_dir: Path,
    version: str,
    chunks: list[Chunk],
    embeddings: np.ndarray,
    manifest: dict[str, Any],
) -> Path:
    """Write a complete version folder under a temporary name, fsync it, then rename it into place."""
    faiss = _faiss()
    versions = index_dir / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    final = versions / version
    if final.exists():
        raise IndexCorrupt(f"index version {version} already exists")
    tmp = versions / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        with (tmp / "chunks.jsonl").open("w", encoding="utf-8") as fh:
            for chunk in chunks:
                fh.write(json.dumps(chunk_to_json(chunk), ensure_ascii=False) + "\n")
        np.save(
            tmp / "embeddings.npy", np.ascontiguousarray(embeddings, dtype=np.float32), allow_pickle=False
        )
        # exact inner-product scan over float16 codes: half the memory traffic of float32, same ranking
        # to ~1e-3 in score (a query over 50k chunks: ~2 ms instead of ~7, bench/RESULTS.md)
        dense = faiss.IndexScalarQuantizer(
            int(embeddings.shape[1]), faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        if len(chunks):
            dense.add(np.ascontiguousarray(embeddings, dtype=np.float32))
        faiss.write_index(dense, str(tmp / "dense.faiss"))
        (tmp / "bm25").mkdir()
        LexicalIndex.build([c.embed_text for c in chunks]).save(tmp / "bm25")
        (tmp / "manifest.json").write_text(json.dumps({**manifest, "format": FORMAT_VERSION}, indent=1))
        fsync_tree(tmp)
        os.rename(tmp, final)
        fsync_dir(versions)
    except (OSError, RuntimeError) as exc:  # disk full, I/O error (faiss reports them as RuntimeError)
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_failed(index_dir, f"index version {version}", exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def publish(index_dir: Path, version: str) -> None:
    """Point CURRENT at a fully written version: one atomic rename."""
    if not (version_dir(index_dir, version) / "manifest.json").exists():
        raise IndexNotFound(f"index version {version} does not exist")
    tmp = index_dir / f".{CURRENT}.{os.getpid()}.tmp"
    try:
        with tmp.open("w") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, index_dir / CURRENT)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_failed(index_dir, f"the pointer to {version}", exc) from exc
    fsync_dir(index_dir)


def _write_failed(index_dir: Path, what: str, exc: Exception) -> IndexWriteFailed:
    """The error for a write that failed, with the free space of the disk (numpy, for one, reports a
    full disk only as a short write)."""
    try:
        free = f"{shutil.disk_usage(index_dir).free // 1024} kB free on its disk"
    except OSError:
        free = "free space unknown"
    return IndexWriteFailed(
        f"cannot write {what} in {index_dir} ({exc}; {free}); the published version stays current: "
        "free some space and re-run `kbloop ingest`"
    )


def list_versions(index_dir: Path) -> list[str]:
    folder = index_dir / VERSIONS
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def collect_garbage(index_dir: Path, keep: int) -> list[str]:
    """Delete all but the newest `keep` versions (never the current one) and leftover temp folders."""
    current = current_version(index_dir)
    removed = []
    versions = list_versions(index_dir)
    for version in versions[: max(0, len(versions) - keep)]:
        if version != current:
            shutil.rmtree(version_dir(index_dir, version), ignore_errors=True)
            removed.append(version)
    for leftover in (index_dir / VERSIONS).glob(".tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return removed


@contextlib.contextmanager
def ingest_lock(index_dir: Path) -> Iterator[None]:
    """One writer at a time; a second ingest fails fast instead of queueing behind a long one."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".lock").open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise IndexLocked(f"another ingest is writing {index_dir}; wait for it to finish") from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
