from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.clock import format_timestamp, utc_now, utc_now_ms


def test_format_timestamp_by_hand() -> None:
    moment = datetime(2026, 12, 3, 19, 5, 7, 123_999, tzinfo=UTC)
    assert format_timestamp(moment) == "2026-12-03T19:05:07.123Z"  # truncated, not rounded
    assert format_timestamp(moment, ms=False) == "2026-12-03T19:05:07Z"
    # another zone is converted to UTC: 21:05 at +02:00 is 19:05Z
    plus_two = datetime(2026, 12, 3, 21, 5, 7, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(plus_two) == "2026-12-03T19:05:07.000Z"


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        format_timestamp(datetime(2026, 12, 3, 19, 5, 7))


def test_now_has_the_two_shapes() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", utc_now())
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", utc_now_ms())
    before = datetime.now(UTC).replace(microsecond=0)
    assert datetime.fromisoformat(utc_now()) >= before
