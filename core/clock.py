"""Time as kbloop writes it: UTC, ISO 8601 with a `Z`. Manifests, registry events and model versions use
whole seconds (`utc_now`); the feedback store's rows use milliseconds (`format_timestamp`, the canonical
form feedback/timestamps.py validates)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_timestamp(moment: datetime, *, ms: bool = True) -> str:
    """An aware `moment` in UTC as `YYYY-MM-DDTHH:MM:SS.mmmZ` (microseconds truncated), or without `.mmm`
    when `ms` is False. A naive datetime is refused: its zone is unknown."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware one, e.g. datetime.now(UTC)")
    utc = moment.astimezone(UTC)
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    return f"{text}.{utc.microsecond // 1000:03d}Z" if ms else f"{text}Z"


def utc_now() -> str:
    """Now, to the second: `2026-12-03T19:35:23Z`."""
    return format_timestamp(datetime.now(UTC), ms=False)


def utc_now_ms() -> str:
    """Now, to the millisecond: `2026-12-03T19:35:23.123Z`."""
    return format_timestamp(datetime.now(UTC))
