"""Scheduled retrains: the slots of a crontab expression in a time zone, each taken at most
once.

`monitord.cron` computes the slots (crontab semantics, daylight saving time as Debian
cron); nothing runs in the background. The caller passes the time
(`CronSchedule.due(now)`), so the daemon checks once per loop iteration and tests move a
clock instead of sleeping. Slots missed while the daemon was down are coalesced: only the
latest one fires.

Also the UTC day of an instant, which the daily cap of retrain requests counts by.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from monitord.clock import EARLIEST_S, LATEST_S
from monitord.cron import CronExpression
from monitord.state import StateModel

DEFAULT_ZONE = "UTC"


_HOST_FILES = frozenset({"localtime", "posixrules"})
"""Names ZoneInfo opens that are no IANA zone: links to whatever the host is set to."""


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Europe/Berlin``); ValueError with advice if unknown."""
    try:
        if name in _HOST_FILES:  # zoneinfo files, not zones: the machine's own ("localtime")
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if not available_timezones():
            raise ValueError(
                f"{name!r}: this system has no time zone database; install the tzdata "
                "package (the operating system's, or `pip install tzdata`)"
            ) from None
        raise ValueError(
            f"{name[:100]!r} is not an IANA time zone; write a name such as 'UTC', "
            "'Europe/Berlin' or 'America/New_York'"
        ) from None


def utc_day(seconds: float) -> str:
    """``YYYY-MM-DD`` of an epoch instant in UTC (``"unknown"`` if it is not finite; the
    nearer bound of `clock.EARLIEST_S`, `clock.LATEST_S` outside them)."""
    if not math.isfinite(seconds):
        return "unknown"
    bounded = min(max(seconds, EARLIEST_S), LATEST_S)
    return datetime.fromtimestamp(bounded, tz=UTC).date().isoformat()


class ScheduleState(StateModel):
    """A `CronSchedule`'s stored state: the slots taken of its expression. ``cron`` is the
    expression, prefixed with ``CRON_TZ=<zone> `` in a zone other than UTC (a schedule in
    UTC stores what monitord stored before time zones)."""

    cron: str
    last_slot: float | None
    next_slot: float | None


class CronSchedule:
    """The slots of one cron expression in a time zone, and which of them were taken.

    The first `due` anchors the schedule: slots before it never fire (a daemon started at
    10:00 does not fire the 03:00 slot of the same day).
    """

    def __init__(self, expression: str, zone: str = DEFAULT_ZONE) -> None:
        self.expression, self.zone = expression, zone
        self._cron = CronExpression.parse(expression)
        self._zone = time_zone(zone)
        self.last_slot: float | None = None  # the latest slot taken
        self.next_slot: float | None = None  # the first slot not taken; None before `due`

    @property
    def identity(self) -> str:
        """The expression and its zone, as stored: another identity is another schedule."""
        return (
            self.expression
            if self.zone == DEFAULT_ZONE
            else f"CRON_TZ={self.zone} {self.expression}"
        )

    @property
    def description(self) -> str:
        """``'0 3 * * *'``, or ``'0 3 * * *' (Europe/Berlin)`` outside UTC."""
        zone = "" if self.zone == DEFAULT_ZONE else f" ({self.zone})"
        return f"{self.expression!r}{zone}"

    def due(self, now: float) -> float | None:
        """The latest slot at or before ``now`` not taken yet (None if there is none)."""
        if self.next_slot is None:
            self.next_slot = self._after(now, inclusive=True)
        if self.next_slot is None or now < self.next_slot:
            return None
        return self._latest(self.next_slot, now)

    def _latest(self, first: float, now: float) -> float:
        """The latest slot in ``[first, now]`` (``first`` is a slot at or before ``now``).

        Slots missed while down are coalesced. Walking them one by one from ``first`` took
        43,200 steps (minutes of a month down, ``* * * * *``) and stalled the loop; instead
        look back from ``now`` over a span doubling from a minute until it holds a slot,
        then walk only the slots of that span."""
        span = 60.0
        begin = first
        while now - span > first:
            candidate = self._after(now - span)
            if candidate is not None and candidate <= now:
                begin = candidate
                break
            span *= 2
        slot = begin
        while (following := self._after(slot)) is not None and following <= now:
            slot = following
        return slot

    def next_after(self, seconds: float) -> float | None:
        """The first slot after the instant ``seconds``, taken or not (None: none within
        `monitord.cron.SEARCH_YEARS`)."""
        return self._after(seconds)

    def take(self, slot: float) -> None:
        """Mark ``slot`` and every slot before it as taken (fired or suppressed)."""
        self.last_slot = slot
        self.next_slot = self._after(slot)

    def _after(self, seconds: float, *, inclusive: bool = False) -> float | None:
        # Slots fall on whole minutes: the first at or after t is the first after t - 1 ms.
        moment = datetime.fromtimestamp(seconds - (0.001 if inclusive else 0.0), tz=UTC)
        fire = self._cron.next_after(moment, self._zone)
        return None if fire is None else float(fire.timestamp())

    def snapshot(self) -> ScheduleState:
        return ScheduleState(cron=self.identity, last_slot=self.last_slot, next_slot=self.next_slot)

    def restore(self, state: ScheduleState) -> None:
        """Load a `snapshot`; one of another expression or zone is ignored (the schedule
        changed)."""
        if state.cron == self.identity:
            self.last_slot, self.next_slot = state.last_slot, state.next_slot


__all__ = ["DEFAULT_ZONE", "CronSchedule", "ScheduleState", "time_zone", "utc_day"]
