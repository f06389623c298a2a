"""Named errors of the retrieval package, each with a stable code the API and CLI can report."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from core.errors import KbloopError


class RagErrorCode(StrEnum):
    CORPUS_NOT_FOUND = "corpus_not_found"
    EMPTY_CORPUS = "empty_corpus"
    INDEX_NOT_FOUND = "index_not_found"
    INDEX_CORRUPT = "index_corrupt"
    INDEX_LOCKED = "index_locked"
    INDEX_WRITE_FAILED = "index_write_failed"
    EMBEDDER_UNAVAILABLE = "embedder_unavailable"
    MISSING_EXTRA = "missing_extra"
    INVALID_QUERY = "invalid_query"


class RagError(KbloopError):
    """Base class: `code` says what went wrong, the message says what to do about it. Over HTTP,
    retrieval that fails is the server's problem (503) unless a subclass says otherwise."""

    code: ClassVar[RagErrorCode] = RagErrorCode.INDEX_CORRUPT
    status: ClassVar[int] = 503


class CorpusNotFound(RagError):
    code = RagErrorCode.CORPUS_NOT_FOUND


class EmptyCorpus(RagError):
    code = RagErrorCode.EMPTY_CORPUS


class IndexNotFound(RagError):
    code = RagErrorCode.INDEX_NOT_FOUND
    retry_after = 30
    hint = "run `kbloop ingest` first"


class IndexCorrupt(RagError):
    code = RagErrorCode.INDEX_CORRUPT


class IndexLocked(RagError):
    code = RagErrorCode.INDEX_LOCKED


class IndexWriteFailed(RagError):
    """A new version could not be written (disk full, I/O error); the published one stays current."""

    code = RagErrorCode.INDEX_WRITE_FAILED


class EmbedderUnavailable(RagError):
    code = RagErrorCode.EMBEDDER_UNAVAILABLE


class MissingExtra(RagError):
    code = RagErrorCode.MISSING_EXTRA


class InvalidQuery(RagError):
    code = RagErrorCode.INVALID_QUERY
    status = 422


def missing_extra(package: str, extra: str = "rag") -> MissingExtra:
    """The error raised when an optional dependency is absent: it names the command that fixes it."""
    return MissingExtra(
        f"{package} is not installed; run `pip install -e '.[{extra}]'` "
        "(or `make run`, which installs everything)"
    )
