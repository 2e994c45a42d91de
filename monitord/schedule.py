"""Scheduled retrains: the slots of a cron expression (UTC), each taken at most once.

APScheduler 3.x's `CronTrigger` computes fire times; nothing runs in the background. The
caller passes the time (`CronSchedule.due(now)`), so the daemon checks once per loop
iteration and tests move a clock instead of sleeping. Slots missed while the daemon was
down are coalesced: only the latest one fires.

Also the UTC day of an instant, which the daily cap of retrain requests counts by.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from apscheduler.triggers.cron import CronTrigger

from monitord.clock import EARLIEST_S, LATEST_S
from monitord.state import StateModel

_WEEKDAY_NUMBER = re.compile(r"(?<![/\d])\d")  # a digit that is not part of a step (*/2)


def cron_trigger(expression: str) -> CronTrigger:
    """The trigger of a 5-field crontab expression in UTC; ValueError with advice if invalid.

    Weekdays must be written as names (``mon-fri``, ``sun``): APScheduler 3 numbers them
    from Monday = 0, where crontab has Sunday = 0, so a number would fire on the wrong day.
    """
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"{expression!r} has {len(fields)} fields; a cron expression has 5: minute hour "
            "day-of-month month day-of-week, e.g. '0 3 * * *' (03:00 UTC daily)"
        )
    if _WEEKDAY_NUMBER.search(fields[4]):
        raise ValueError(
            f"{expression!r}: write the day of week as names (mon, tue, ..., sun, or a range "
            "such as mon-fri): APScheduler 3 counts weekday numbers from Monday = 0, unlike "
            "crontab's Sunday = 0"
        )
    try:
        trigger = CronTrigger.from_crontab(expression, timezone=UTC)
    except ValueError as exc:
        raise ValueError(f"{expression!r} is not a valid cron expression: {exc}") from None
    if trigger.get_next_fire_time(None, datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError(f"{expression!r} never fires (no such date)")
    return trigger


def utc_day(seconds: float) -> str:
    """``YYYY-MM-DD`` of an epoch instant in UTC (``"unknown"`` if it is not finite; the
    nearer bound of `clock.EARLIEST_S`, `clock.LATEST_S` outside them)."""
    if not math.isfinite(seconds):
        return "unknown"
    bounded = min(max(seconds, EARLIEST_S), LATEST_S)
    return datetime.fromtimestamp(bounded, tz=UTC).date().isoformat()


class ScheduleState(StateModel):
    """A `CronSchedule`'s stored state: the slots taken of its expression."""

    cron: str
    last_slot: float | None
    next_slot: float | None


class CronSchedule:
    """The slots of one cron expression and which of them were taken.

    The first `due` anchors the schedule: slots before it never fire (a daemon started at
    10:00 does not fire the 03:00 slot of the same day).
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._trigger = cron_trigger(expression)
        self.last_slot: float | None = None  # the latest slot taken
        self.next_slot: float | None = None  # the first slot not taken; None before `due`

    def due(self, now: float) -> float | None:
        """The latest slot at or before ``now`` not taken yet (None if there is none)."""
        if self.next_slot is None:
            self.next_slot = self._after(now, inclusive=True)
        if self.next_slot is None or now < self.next_slot:
            return None
        slot = self.next_slot
        # Coalesce slots missed while down: walk to the latest one at or before now.
        while (following := self._after(slot)) is not None and following <= now:
            slot = following
        return slot

    def take(self, slot: float) -> None:
        """Mark ``slot`` and every slot before it as taken (fired or suppressed)."""
        self.last_slot = slot
        self.next_slot = self._after(slot)

    def _after(self, seconds: float, *, inclusive: bool = False) -> float | None:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
        # With no previous fire time APScheduler returns the first slot >= now; with one,
        # the first slot strictly after it.
        fire = self._trigger.get_next_fire_time(None if inclusive else moment, moment)
        return None if fire is None else float(fire.timestamp())

    def snapshot(self) -> ScheduleState:
        return ScheduleState(
            cron=self.expression, last_slot=self.last_slot, next_slot=self.next_slot
        )

    def restore(self, state: ScheduleState) -> None:
        """Load a `snapshot`; one of another expression is ignored (the schedule changed)."""
        if state.cron == self.expression:
            self.last_slot, self.next_slot = state.last_slot, state.next_slot


__all__ = ["CronSchedule", "ScheduleState", "cron_trigger", "utc_day"]
