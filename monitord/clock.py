"""All time handling in one place: event-time parsing and the wall clock."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

_MS_THRESHOLD = 1e11  # epoch numbers above this are milliseconds (year 5138 in seconds)


def parse_event_time(value: object) -> float:
    """Seconds since the epoch from an ISO-8601 string or an epoch number; NaN if unusable."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float):
        seconds = float(value)
        return seconds / 1000.0 if seconds > _MS_THRESHOLD else seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return math.nan
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return math.nan


def iso(seconds: float) -> str:
    """RFC 3339 UTC text with milliseconds, e.g. ``2026-11-23T12:00:00.123Z``."""
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now() -> float:
    """Wall-clock seconds since the epoch."""
    return time.time()
