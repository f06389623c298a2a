"""Hybrid search over the published index version: dense (faiss) + BM25, fused, with a confidence.

`Retriever.search` always answers from one complete version (it follows `CURRENT` between queries, so
a new ingest is picked up without a restart), records that version's id in the result, and only
returns chunks the caller may see: a chunk with access groups is visible to members of any of them;
a chunk without groups is public.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.chunking import Chunk
from rag.confidence import DEFAULT_CALIBRATION, Calibration, term_coverage, without_terms
from rag.config import RagConfig
from rag.embedding import Embedder
from rag.errors import EmbedderUnavailable, IndexCorrupt, InvalidQuery
from rag.fusion import reciprocal_rank_fusion, top, weighted_fusion
from rag.index import IndexVersion, current_version, load_version

Mode = Literal["hybrid", "dense", "lexical"]
MAX_QUERY_CHARS = 4000
MAX_K = 100
COVERAGE_PASSAGES = 3


@dataclass(frozen=True)
class Hit:
    rank: int
    chunk_id: str
    source: str
    title: str
    section: str
    text: str
    groups: tuple[str, ...]
    score: float  # the fused score that ranks the hits
    dense_score: float | None  # cosine similarity, when the dense retriever found it
    lexical_score: float | None  # BM25, when the lexical retriever found it

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["groups"] = list(self.groups)
        return data


@dataclass(frozen=True)
class SearchResult:
    query: str
    hits: list[Hit]
    confidence: float  # calibrated P(the knowledge base answers the query)
    answerable: bool  # confidence >= the calibration's threshold
    index_version: str
    features: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "index_version": self.index_version,
            "confidence": round(self.confidence, 4),
            "answerable": self.answerable,
            "features": {k: round(v, 4) for k, v in self.features.items()},
            "hits": [h.to_json() for h in self.hits],
        }


def visible(chunk: Chunk, groups: Collection[str] | None) -> bool:
    """None means unrestricted (local operator tools); the service always passes the caller's groups."""
    return groups is None or not chunk.groups or bool(set(chunk.groups) & set(groups))


class Retriever:
    def __init__(
        self,
        index_dir: Path,
        config: RagConfig | None = None,
        embedder: Embedder | None = None,
        calibration: Calibration | None = None,
    ) -> None:
        self.index_dir = index_dir
        self.config = config or RagConfig()
        self.embedder = embedder or Embedder(self.config.embedder, self.config.batch_size)
        self._calibration = calibration
        self._version: IndexVersion | None = None
        self._masks: dict[frozenset[str], np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def calibration(self) -> Calibration:
        if self._calibration is not None:
            return self._calibration
        path = self.index_dir / "calibration.json"
        if not path.exists():
            return DEFAULT_CALIBRATION
        try:
            return Calibration.load(path)
        except ValueError as exc:
            raise IndexCorrupt(f"{exc}; re-run `kbloop index calibrate` or delete the file") from exc

    def current(self) -> IndexVersion:
        """The published version, reloaded when CURRENT has moved since the last query."""
        latest = current_version(self.index_dir)
        snapshot = self._version
        if snapshot is not None and snapshot.version == latest:
            return snapshot
        with self._lock:
            if self._version is None or self._version.version != latest:
                loaded = load_version(self.index_dir, latest)
                built_with = loaded.manifest.get("embedder")
                if built_with != self.embedder.label:
                    raise EmbedderUnavailable(
                        f"the index was built with {built_with!r} "
                        f"but the embedder is {self.embedder.label!r}; "
                        "re-run `kbloop ingest --full` with the new embedder"
                    )
                self._version, self._masks = loaded, {}
            return self._version

    def _mask(self, version: IndexVersion, groups: Collection[str] | None) -> np.ndarray | None:
        if groups is None:
            return None
        key = frozenset(g.lower() for g in groups)
        mask = self._masks.get(key)
        if mask is None:
            mask = np.array([visible(c, key) for c in version.chunks], dtype=bool)
            if len(self._masks) > 256:
                self._masks.clear()
            self._masks[key] = mask
        return mask

    def search(
        self,
        query: str,
        k: int = 5,
        groups: Collection[str] | None = None,
        mode: Mode = "hybrid",
    ) -> SearchResult:
        query = query.strip() if isinstance(query, str) else ""
        if not query:
            raise InvalidQuery("the query is empty")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidQuery(f"the query has {len(query)} characters; the limit is {MAX_QUERY_CHARS}")
        if not 1 <= k <= MAX_K:
            raise InvalidQuery(f"k must be between 1 and {MAX_K}, got {k}")
        version = self.current()
        mask = self._mask(version, groups)
        n = max(self.config.candidates, k)

        terms = version.lexical.terms(query)
        rows, scores = version.lexical.search(terms, n, mask)
        lexical = {int(r): float(s) for r, s in zip(rows, scores, strict=True)}
        # the confidence signals come from the BM25 passages, so the shortened question they need is
        # embedded in the same forward pass as the question
        coverage, rest = self._coverage(version, query, terms, [int(r) for r in rows[:COVERAGE_PASSAGES]])
        vectors = self.embedder.encode_queries([query, rest] if rest and rest.strip() else [query])
        dense = self._dense(version, vectors[0], n, mask)
        uncovered = 0.0
        if rest is not None:  # some topic terms are uncovered; nothing left of the question scores 1
            uncovered = float(1.0 - np.dot(vectors[0], vectors[1])) if len(vectors) > 1 else 1.0
        features = {
            "dense_top": max(dense.values(), default=0.0),
            "coverage": coverage,
            "uncovered": uncovered,
        }

        if mode == "dense":
            fused = dense
        elif mode == "lexical":
            fused = lexical
        elif self.config.fusion == "weighted":
            fused = weighted_fusion(dense, lexical, self.config.dense_weight)
        else:
            rank_dense = [r for r, _ in top(dense, n)]
            rank_lexical = [int(r) for r in rows]  # already best first
            fused = reciprocal_rank_fusion([rank_dense, rank_lexical], k=self.config.rrf_k)
        best = top(fused, k)

        hits = [
            Hit(
                rank=i,
                chunk_id=(chunk := version.chunks[row]).chunk_id,
                source=chunk.source,
                title=chunk.title,
                section=chunk.section,
                text=chunk.text,
                groups=chunk.groups,
                score=float(score),
                dense_score=dense.get(row),
                lexical_score=None if mode == "dense" else lexical.get(row),
            )
            for i, (row, score) in enumerate(best, start=1)
        ]
        calibration = self.calibration
        confidence = calibration.probability(features)
        return SearchResult(
            query=query,
            hits=hits,
            confidence=confidence,
            answerable=confidence >= calibration.threshold,
            index_version=version.version,
            features=features,
        )

    def _dense(
        self, version: IndexVersion, query_vector: np.ndarray, n: int, mask: np.ndarray | None
    ) -> dict[int, float]:
        vector = query_vector.reshape(1, -1)
        n = min(n, version.dense.ntotal)
        if n == 0:
            return {}
        params = None
        if mask is not None:
            import faiss

            allowed = int(mask.sum())
            if allowed == 0:
                return {}
            # a bitmap selector: O(n/8) to build, O(1) per lookup (an id batch hashes every allowed id)
            bits = np.packbits(mask, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
            params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]
            n = min(n, allowed)
        scores, rows = version.dense.search(vector, n, params=params)
        return {int(r): float(s) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0}

    @staticmethod
    def _coverage(
        version: IndexVersion, query: str, terms: list[str], rows: list[int]
    ) -> tuple[float, str | None]:
        """Coverage of the topic terms by these passages; the question without its uncovered words (None
        when every topic term is covered)."""
        lexical = version.lexical
        passage_terms: set[str] = set()
        for row in rows:
            passage_terms.update(lexical.terms(version.chunks[row].embed_text))
        topic = lexical.topic_terms(terms)
        missing = {t for t in topic if t not in passage_terms}
        rest = without_terms(query, missing, lexical.terms) if missing else None
        return term_coverage(topic, passage_terms, lexical.idf), rest
