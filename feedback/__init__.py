"""The feedback store: answers with provenance (then votes, corrections, comparisons, audit) in SQLite.

Importing this package is cheap: sqlite-utils (which pulls in pandas and numpy when they are installed)
is imported only when a `Store` opens a database, and torch never.
"""

from feedback.records import AnswerRecord, Citation, RetrievedChunk
from feedback.store import Store

__all__ = ["AnswerRecord", "Citation", "RetrievedChunk", "Store"]
