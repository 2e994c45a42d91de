"""All time handling in one place: event-time parsing and the wall clock.

Every instant monitord shows or computes with lies in [1970, 9999] UTC: `parse_event_time`
turns anything else into NaN, so one bad timestamp cannot reach the calendar arithmetic of
an alert or a retrain budget (`iso`, `schedule.utc_day`).
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

EARLIEST_S = 0.0
"""1970-01-01T00:00:00Z: event times before the epoch are not believed."""
LATEST_S = 253_402_300_799.0
"""9999-12-31T23:59:59Z, the last second a calendar date can show."""

# Epoch numbers are told apart by magnitude: anything from 1973 to 5138 in the next unit
# down is beyond every plausible instant in this one (seconds: 1e11 is the year 5138).
_UNITS = ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3))


def parse_event_time(value: object) -> float:
    """Seconds since the epoch from an ISO-8601 string or an epoch number in seconds,
    milliseconds, microseconds or nanoseconds; NaN if unusable or outside
    [`EARLIEST_S`, `LATEST_S`]."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int | float):
        seconds = float(value)
        for above, per_second in _UNITS:
            if seconds >= above:
                seconds /= per_second
                break
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            seconds = parsed.timestamp()
        except (ValueError, OverflowError):  # OverflowError: a year 9999 time zone shift
            return math.nan
    else:
        return math.nan
    return seconds if EARLIEST_S <= seconds <= LATEST_S else math.nan


def iso(seconds: float) -> str:
    """RFC 3339 UTC text with milliseconds, e.g. ``2026-11-23T12:00:00.123Z``; an instant
    outside [`EARLIEST_S`, `LATEST_S`] shows as the nearer bound, NaN as the earliest."""
    bounded = min(seconds, LATEST_S) if seconds >= EARLIEST_S else EARLIEST_S
    moment = datetime.fromtimestamp(bounded, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now() -> float:
    """Wall-clock seconds since the epoch."""
    return time.time()


def monotonic() -> float:
    """Seconds from an arbitrary start that never run backwards: for rates and timeouts."""
    return time.monotonic()


__all__ = ["EARLIEST_S", "LATEST_S", "iso", "monotonic", "now", "parse_event_time"]
