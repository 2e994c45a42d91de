"""Crontab expressions: parsed once, asked for the next slot after an instant in a time zone.

The syntax and meaning are those of Vixie/Debian cron (``man 5 crontab``):

- five fields, ``minute hour day-of-month month day-of-week``; each a ``*``, a number, a
  range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (``a`` to the field's maximum), or a
  comma-separated list of these;
- months by number (1-12) or name (``jan``-``dec``); days of week by number, 0 to 7 with
  both 0 and 7 Sunday, or name (``sun``-``sat``); names are case-insensitive;
- the macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (``@midnight``) and ``@hourly``;
- when both day-of-month and day-of-week are restricted, a day matches if *either* matches;
  a field starting with ``*`` (``*`` or ``*/2``) counts as unrestricted, as in Debian cron.

Time zones and daylight saving time, as Debian cron does them: an expression whose minute
and hour fields do not start with ``*`` (``30 2 * * *``) names wall-clock times, each
firing once on each matching day: a time skipped when clocks go forward fires at the
first minute after the gap (03:00), a time repeated when they go back fires the first time
only. Any other expression (``*/15 * * * *``, ``0 * * * *``) fires at every real instant
whose local time matches: in a repeated hour twice, in a skipped hour not at all.

`cronsim` is the oracle of the tests (tests/monitord/test_cron.py): the next slot after
thousands of random instants is the same.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_LONGEST_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February: leap years
MAX_FOLD = timedelta(hours=3)
"""Longer than any hour repeated or skipped when a zone's clocks change (at most 2 hours)."""
SEARCH_YEARS = 50
"""How far ahead a slot is looked for: every valid expression fires within 50 years (a
29 February on a given weekday recurs within 40)."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] means low + i


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, tuple(_MONTHS)),
    _Field("day-of-week", 0, 7, tuple(_WEEKDAYS)),
)


class CronError(ValueError):
    """An expression that is not valid crontab syntax, or that never fires."""


@dataclass(frozen=True)
class CronExpression:
    """A parsed crontab expression; `parse` builds it. Days of week are 0-6, Sunday 0."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    either_day: bool  # both day fields restricted: a day matches if either matches
    wall_clock: bool  # minute and hour not starting with *: wall-clock times, once a day

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """The expression of ``text``; `CronError` saying what is wrong and how to write it."""
        fields = MACROS.get(text.strip().lower(), text).split()
        if text.strip().startswith("@") and text.strip().lower() not in MACROS:
            raise CronError(
                f"{text!r} is not a valid cron expression: unknown macro; use one of "
                f"{', '.join(MACROS)}"
            )
        if len(fields) != 5:
            raise CronError(
                f"{text!r} has {len(fields)} fields; a cron expression has 5: minute hour "
                "day-of-month month day-of-week, e.g. '0 3 * * *' (03:00 daily), or a macro "
                "such as @daily"
            )
        values = [
            _values(spec.lower(), field, text) for spec, field in zip(fields, _FIELDS, strict=True)
        ]
        minutes, hours, days, months, weekdays = values
        expression = cls(
            text=text,
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=frozenset(days),
            months=frozenset(months),
            weekdays=frozenset(day % 7 for day in weekdays),
            either_day=not fields[2].startswith("*") and not fields[4].startswith("*"),
            wall_clock=not fields[0].startswith("*") and not fields[1].startswith("*"),
        )
        if not expression.either_day and not any(
            day <= _LONGEST_MONTH[month] for day in days for month in months
        ):
            raise CronError(f"{text!r} never fires (no month has such a day)")
        return expression

    def next_after(self, moment: datetime, zone: tzinfo = UTC) -> datetime | None:
        """The first slot strictly after ``moment`` (aware), in UTC; None if there is none
        within `SEARCH_YEARS`."""
        start = moment.astimezone(zone)
        after = start.astimezone(UTC)
        naive = start.replace(tzinfo=None, fold=0)
        if self.wall_clock:
            # Wall-clock times after the start's; one in a repeated hour may still lie
            # before the start (its first pass), so the instant is compared too.
            for local in self._local_times(naive + timedelta(minutes=1)):
                instant = _wall_clock_instant(local, zone)
                if instant > after:
                    return instant
            return None
        # Real instants: local times are in order except in a repeated hour, so the search
        # starts a fold's length early and ends a fold's length after the first hit.
        found: datetime | None = None
        horizon: datetime | None = None
        for local in self._local_times(naive - MAX_FOLD):
            if horizon is not None and local > horizon:
                break
            for instant in _instants(local, zone):
                if instant > after and (found is None or instant < found):
                    found, horizon = instant, local + MAX_FOLD
        return found

    def _local_times(self, begin: datetime) -> Iterator[datetime]:
        """Matching local (naive) times from ``begin``'s minute on, in order."""
        begin = begin.replace(second=0, microsecond=0)
        for day in _DayIterator(self, begin.date()):
            first_day = day == begin.date()
            for hour in self.hours:
                if first_day and hour < begin.hour:
                    continue
                same_hour = first_day and hour == begin.hour
                for minute in self.minutes:
                    if same_hour and minute < begin.minute:
                        continue
                    yield datetime.combine(day, time(hour, minute))

    def matches_day(self, day: date) -> bool:
        """Whether ``day`` is one the expression fires on (month and the day rule)."""
        if day.month not in self.months:
            return False
        by_date = day.day in self.days
        by_weekday = (day.isoweekday() % 7) in self.weekdays
        return by_date or by_weekday if self.either_day else by_date and by_weekday


class _DayIterator:
    """The matching days from ``first`` on, for `SEARCH_YEARS` years; whole months that
    cannot match are skipped."""

    def __init__(self, expression: CronExpression, first: date) -> None:
        self._expression, self._day = expression, first
        self._end = first.replace(day=1, year=first.year + SEARCH_YEARS)

    def __iter__(self) -> _DayIterator:
        return self

    def __next__(self) -> date:
        expression = self._expression
        while self._day < self._end:
            day = self._day
            if day.month not in expression.months:
                last = calendar.monthrange(day.year, day.month)[1]
                self._day = day.replace(day=last) + timedelta(days=1)
                continue
            self._day = day + timedelta(days=1)
            if expression.matches_day(day):
                return day
        raise StopIteration


def _instants(local: datetime, zone: tzinfo) -> list[datetime]:
    """The UTC instants whose local time in ``zone`` is ``local``: none in a gap, two in
    a repeated hour."""
    found = []
    for fold in (0, 1):
        instant = local.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == local and instant not in found:
            found.append(instant)
    return found


def _wall_clock_instant(local: datetime, zone: tzinfo) -> datetime:
    """The instant a wall-clock slot fires: its first pass, or the end of the gap that
    skipped it (the first minute after it that exists)."""
    while not (instants := _instants(local, zone)):
        local += timedelta(minutes=1)
    return instants[0]


def _values(spec: str, field: _Field, text: str) -> set[int]:
    values: set[int] = set()
    for part in spec.split(","):
        values |= _part(part, field, text)
    return values


def _part(part: str, field: _Field, text: str) -> set[int]:
    """One item of a list: ``*``, ``n``, ``a-b``, each with an optional ``/step``."""
    span, slash, step_text = part.partition("/")
    step = 1
    if slash:
        step = _number(step_text, field, text, what="step")
        if step == 0:
            raise _invalid(text, field, f"step {part!r} is 0")
    if span == "*":
        low, high = field.low, field.high if field.name != "day-of-week" else 6
    elif "-" in span:
        first, _, last = span.partition("-")
        low, high = _value(first, field, text), _value(last, field, text)
        if high < low:
            raise _invalid(text, field, f"range {span!r} runs backwards; write it from low to high")
    else:
        low = _value(span, field, text)
        high = field.high if slash else low  # a/n: from a to the field's maximum
    return set(range(low, high + 1, step))


def _value(token: str, field: _Field, text: str) -> int:
    if token in field.names:
        return field.low + field.names.index(token)
    value = _number(token, field, text, what="value")
    if not field.low <= value <= field.high:
        raise _invalid(text, field, f"{value} is outside {field.low}-{field.high}")
    return value


def _number(token: str, field: _Field, text: str, *, what: str) -> int:
    if not token.isdecimal() or not token.isascii():
        allowed = (
            f"a number or a name ({field.names[0]}-{field.names[-1]})"
            if field.names
            else ("a number")
        )
        raise _invalid(text, field, f"{what} {token[:20]!r} is not {allowed}")
    if len(token) > 3:  # "0099" is 99; int() refuses 4,300 digits with its own ValueError
        token = token.lstrip("0") or "0"
        if len(token) > 3:
            raise _invalid(text, field, f"{what} {token[:20]}... is too large")
    return int(token)


def _invalid(text: str, field: _Field, problem: str) -> CronError:
    shown = text if len(text) <= 100 else f"{text[:100]}..."
    return CronError(f"{shown!r} is not a valid cron expression: {field.name} {problem}")


__all__ = ["MACROS", "MAX_FOLD", "SEARCH_YEARS", "CronError", "CronExpression"]
