"""Checks shared by every record of the store: ids, texts, numbers, JSON; each failure an InvalidRecord
that names the field and says what it must be."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from feedback.errors import InvalidRecord
from feedback.timestamps import EXAMPLE, is_canonical

MAX_ID_CHARS = 256


def dump_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, compact, UTF-8 kept as is, NaN and infinities refused."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fail(owner: str, name: str, expected: str, value: Any) -> InvalidRecord:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return InvalidRecord(f"{owner}.{name} must be {expected}, got {shown}")


def check_text(
    owner: str, name: str, value: Any, *, required: bool = True, max_chars: int | None = None
) -> None:
    if not isinstance(value, str):
        raise fail(owner, name, "a string", value)
    if required and not value.strip():
        raise fail(owner, name, "a non-empty string", value)
    if max_chars is not None and len(value) > max_chars:
        raise InvalidRecord(
            f"{owner}.{name} must be at most {max_chars} characters, got {len(value)}; shorten it"
        )


def check_id(owner: str, name: str, value: Any) -> None:
    check_text(owner, name, value)
    if len(value) > MAX_ID_CHARS or value != value.strip():
        raise fail(
            owner, name, f"an id of at most {MAX_ID_CHARS} characters without surrounding spaces", value
        )


def check_timestamp(owner: str, name: str, value: Any) -> None:
    check_text(owner, name, value)
    if not is_canonical(value):
        raise fail(
            owner,
            name,
            f"UTC ISO-8601 with milliseconds like {EXAMPLE!r} (use feedback.timestamps.utc_now())",
            value,
        )


def check_count(owner: str, name: str, value: Any, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(owner, name, f"an integer >= {minimum}", value)


def check_number(
    owner: str, name: str, value: Any, *, low: float = -math.inf, high: float = math.inf
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise fail(owner, name, "a finite number", value)
    if not low <= value <= high:
        raise fail(owner, name, f"a number in [{low}, {high}]", value)


def check_json_object(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise fail(owner, name, "a dict with string keys", value)
    try:
        dump_json(value)
    except (TypeError, ValueError) as exc:
        raise fail(owner, name, f"JSON-serializable without NaN or infinity ({exc})", value) from None


def check_fields(owner: str, data: Any, expected: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping) or set(data) != set(expected):
        raise InvalidRecord(f"{owner} must be an object with exactly the keys {list(expected)}, got {data!r}")
    return data
