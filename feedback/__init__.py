"""The feedback store: answers with provenance, votes, corrections, comparisons and audit events in
SQLite, the statistics over them, training-data exports (feedback.export, feedback.export_csv) and the
typed rows the trainer reads (feedback.readers). No other package runs SQL on these tables.

Importing this package is cheap: sqlite-utils (which pulls in pandas and numpy when they are installed)
is imported only when a `Store` opens a database, numpy only when a ranking is computed, torch never.
"""

from feedback.audit import AuditEvent
from feedback.comparisons import Choice, Comparison
from feedback.corrections import Correction
from feedback.records import AnswerRecord, Citation, RetrievedChunk
from feedback.store import Store
from feedback.votes import Reason, Vote, VoteEvent, VoteValue

__all__ = [
    "AnswerRecord",
    "AuditEvent",
    "Choice",
    "Citation",
    "Comparison",
    "Correction",
    "Reason",
    "RetrievedChunk",
    "Store",
    "Vote",
    "VoteEvent",
    "VoteValue",
]
