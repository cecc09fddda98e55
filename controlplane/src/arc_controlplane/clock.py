"""Time, in one place: timezone-aware UTC, and how it is written in API bodies (ISO 8601 in UTC
with a ``Z``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso8601(value: dt.datetime) -> str:
    """``value`` (timezone-aware) as ``2026-11-22T05:00:00.123456Z``."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given; use timezone-aware UTC")
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def iso8601_or_none(value: dt.datetime | None) -> str | None:
    return None if value is None else iso8601(value)
