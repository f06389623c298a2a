"""The one timestamp format of the store: ISO-8601 UTC with milliseconds, `2026-11-23T16:54:00.123Z`.

Every stored timestamp has exactly this shape, so text order is time order and SQLite can sort and
range-filter the TEXT columns directly (`"...00Z"` would sort after `"...00.123Z"`, hence no variants).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from core.clock import format_timestamp
from core.clock import utc_now_ms as utc_now  # the store's rows: to the millisecond

__all__ = ["CANONICAL", "EXAMPLE", "format_timestamp", "is_canonical", "normalize_timestamp", "utc_now"]

CANONICAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
EXAMPLE = "2026-11-23T16:54:00.123Z"


def is_canonical(text: str) -> bool:
    """True when `text` has the canonical shape and names a real instant."""
    if not CANONICAL.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def normalize_timestamp(text: str) -> str:
    """Any ISO-8601 date or datetime as canonical text; one without a timezone is taken as UTC.

    Raises ValueError (with the accepted forms in the message) when `text` is not ISO-8601.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date or time; use e.g. {EXAMPLE!r} or '2026-11-23'"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_timestamp(moment)
