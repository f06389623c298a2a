"""Typed knobs of retrieval, built from the `KBLOOP_*` settings by `RagConfig.from_settings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from core.settings import Settings

Fusion = Literal["rrf", "weighted"]


@dataclass(frozen=True)
class ChunkingConfig:
    max_tokens: int = field(
        default=240,
        metadata={"help": "Largest chunk in embedder tokens, heading line included (MiniLM reads 256)."},
    )
    overlap_tokens: int = field(
        default=40,
        metadata={"help": "Tokens repeated from the end of a split chunk at the start of the next."},
    )
    min_tokens: int = field(
        default=24,
        metadata={"help": "A section shorter than this is merged into the next one of its parent."},
    )


@dataclass(frozen=True)
class RagConfig:
    embedder: str = field(
        default="", metadata={"help": "Model folder or id for sentence-transformers; empty = bundled MiniLM."}
    )
    batch_size: int = field(default=64, metadata={"help": "Texts per embedding batch."})
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    max_file_bytes: int = field(default=20 * 1024 * 1024, metadata={"help": "Files above this are skipped."})
    fusion: Fusion = field(default="rrf", metadata={"help": "How dense and BM25 rankings are combined."})
    rrf_k: int = field(default=60, metadata={"help": "Reciprocal rank fusion constant."})
    dense_weight: float = field(
        default=0.5, metadata={"help": "Weight of the dense score in weighted fusion."}
    )
    candidates: int = field(
        default=50, metadata={"help": "Candidates taken from each retriever before fusion."}
    )
    keep_versions: int = field(
        default=3, metadata={"help": "Index versions kept on disk (current included)."}
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> RagConfig:
        """Retrieval as the deployment's settings configure it."""
        return cls(
            embedder=settings.embedder,
            batch_size=settings.embed_batch_size,
            chunking=ChunkingConfig(
                max_tokens=settings.chunk_max_tokens,
                overlap_tokens=settings.chunk_overlap_tokens,
                min_tokens=settings.chunk_min_tokens,
            ),
            max_file_bytes=int(settings.max_file_mb * 1024 * 1024),
            fusion=settings.fusion,
        )
