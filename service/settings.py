"""One typed `Settings` for kbloop, read from `KBLOOP_*` environment variables (and `.env`) once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.config import ChunkingConfig, RagConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KBLOOP_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        Path("var"), description="Everything kbloop writes: index, database, models, runs."
    )
    index_dir: Path | None = Field(None, description="Search index folder (default: DATA_DIR/index).")
    embedder: str = Field(
        "", description="sentence-transformers model folder or id; empty = the bundled all-MiniLM-L6-v2."
    )
    embed_batch_size: int = Field(64, ge=1, le=4096, description="Texts per embedding batch during ingest.")
    chunk_max_tokens: int = Field(240, ge=32, le=8192, description="Largest chunk, in embedder tokens.")
    chunk_overlap_tokens: int = Field(
        40, ge=0, le=1024, description="Overlap between split chunks, in tokens."
    )
    chunk_min_tokens: int = Field(24, ge=0, le=1024, description="Smaller sections merge into the next one.")
    max_file_mb: float = Field(20.0, gt=0, description="Files larger than this are skipped at ingest.")
    fusion: Literal["rrf", "weighted"] = Field(
        "rrf", description="Hybrid fusion: reciprocal rank or weighted sum."
    )
    search_k: int = Field(5, ge=1, le=100, description="Passages retrieved per question.")

    @property
    def resolved_index_dir(self) -> Path:
        return self.index_dir or self.data_dir / "index"

    def rag_config(self) -> RagConfig:
        return RagConfig(
            embedder=self.embedder,
            batch_size=self.embed_batch_size,
            chunking=ChunkingConfig(
                max_tokens=self.chunk_max_tokens,
                overlap_tokens=self.chunk_overlap_tokens,
                min_tokens=self.chunk_min_tokens,
            ),
            max_file_bytes=int(self.max_file_mb * 1024 * 1024),
            fusion=self.fusion,
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
