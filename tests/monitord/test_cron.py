"""Crontab expressions against an independent implementation, `cronsim` (Debian cron's
semantics), on thousands of generated expressions, instants and time zones; and the
errors an operator sees.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError

from monitord.cron import MACROS, CronError, CronExpression

SEED = 20261205
CASES = 4000
ZONES = (
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",  # clocks change the other way round
    "Asia/Kolkata",  # a half-hour offset, no daylight saving time
    "America/Sao_Paulo",  # until 2019, clocks changed at midnight
)
# Left out: Australia/Lord_Howe. Its clocks move by half an hour, and cronsim steps hours in
# real time from midnight, so on that day it tests only hh:30 onwards (it answers 09:30 for
# '*/6 9 * * *' on 2039-10-02, where 09:00 exists).
FIRST, LAST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2040, 1, 1, tzinfo=UTC)
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


def oracle(expression: str, start: datetime, zone: ZoneInfo) -> datetime | None:
    """cronsim's first slot after ``start``. For a wall-clock time in a repeated hour,
    cronsim may answer the first pass although the start is in the second; the next of
    its answers is then the one after the start."""
    text = MACROS.get(expression, expression)
    try:
        for answer in CronSim(text, start.astimezone(zone)):
            if answer > start:
                return answer.astimezone(UTC)
    except StopIteration:  # raised inside cronsim's iterator when nothing fires in 50 years
        pass
    return None


def field(rng: random.Random, low: int, high: int, names: list[str] | None = None) -> str:
    """One random crontab field: a list of items, each *, a value, a range, or a step."""

    def value(lo: int = low, hi: int = high) -> str:
        number = rng.randint(lo, hi)
        if names is not None and rng.random() < 0.3:
            return names[(number - low) % len(names)]
        return str(number)

    def item() -> str:
        kind = rng.choice(["*", "value", "range", "star-step", "range-step", "start-step"])
        step = str(rng.randint(1, max(1, (high - low) // 2)))
        if kind == "*":
            return "*"
        if kind == "value":
            return value()
        first = rng.randint(low, high)
        last = rng.randint(first, high)
        span = f"{first}-{last}"
        if names is not None and rng.random() < 0.3:
            span = f"{names[(first - low) % len(names)]}-{names[(last - low) % len(names)]}"
            if (last - low) >= len(names):  # day 7 has no name of its own
                span = f"{first}-{last}"
        if kind == "range":
            return span
        if kind == "star-step":
            return f"*/{step}"
        if kind == "range-step":
            return f"{span}/{step}"
        return f"{value()}/{step}"

    count = rng.choice([1, 1, 1, 2, 3])
    items = [item() for _ in range(count)]
    if "*" in items and count > 1:
        items = [i for i in items if i != "*"] or ["*"]
    return ",".join(items)


def expression(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(list(MACROS))
    fields = [
        field(rng, 0, 59) if rng.random() < 0.6 else str(rng.randint(0, 59)),
        field(rng, 0, 23) if rng.random() < 0.6 else str(rng.randint(0, 23)),
        field(rng, 1, 31) if rng.random() < 0.5 else "*",
        field(rng, 1, 12, MONTHS) if rng.random() < 0.4 else "*",
        field(rng, 0, 7, WEEKDAYS) if rng.random() < 0.5 else "*",
    ]
    return " ".join(fields)


def transitions(zone: ZoneInfo) -> list[datetime]:
    """Days (noon UTC) on which the zone's offset changes, 2000-2040."""
    days, day = [], FIRST
    while day < LAST:
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            days.append(day)
        day = following
    return days


def test_the_next_slots_are_cronsims_on_thousands_of_expressions_and_instants() -> None:
    rng = random.Random(SEED)
    zones = {name: ZoneInfo(name) for name in ZONES}
    changes = {name: transitions(zone) for name, zone in zones.items()}
    span = (LAST - FIRST).total_seconds()
    compared = refused = near_change = 0
    for _ in range(CASES):
        text = expression(rng)
        name = rng.choice(ZONES)
        zone = zones[name]
        if changes[name] and rng.random() < 0.5:  # within a day of a clock change
            near_change += 1
            start = rng.choice(changes[name]) + timedelta(seconds=rng.uniform(-86400, 86400))
        else:
            start = FIRST + timedelta(seconds=rng.uniform(0, span))
        if rng.random() < 0.2:
            start = start.replace(second=0, microsecond=0)  # on a minute: a slot itself?
        try:
            expected = oracle(text, start, zone)
        except CronSimError:
            with pytest.raises(CronError):
                CronExpression.parse(text)
            refused += 1
            continue
        parsed = CronExpression.parse(text)
        got = parsed.next_after(start, zone)
        assert got == expected, (text, name, start.isoformat())
        # And the two slots after it: a schedule walks from slot to slot.
        for _ in range(2):
            if got is None or expected is None:
                break
            got, expected = parsed.next_after(got, zone), oracle(text, expected, zone)
            assert got == expected, (text, name, start.isoformat(), "following")
        compared += 1
    assert compared > 3000
    assert refused > 0  # the generator reaches expressions that never fire
    assert near_change > 1000


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        # 0 and 7 are Sunday (APScheduler 3 would read 0 as Monday); 2026-11-23 is a Monday.
        ("0 3 * * 0", "2026-11-23T00:00", "2026-11-29T03:00"),
        ("0 3 * * 7", "2026-11-23T00:00", "2026-11-29T03:00"),
        ("0 3 * * 1-5", "2026-11-21T00:00", "2026-11-23T03:00"),
        ("0 3 * * MON-fri", "2026-11-21T00:00", "2026-11-23T03:00"),
        ("0 0 1 * *", "2026-11-23T00:00", "2026-12-01T00:00"),
        ("@monthly", "2026-11-23T00:00", "2026-12-01T00:00"),
        ("@weekly", "2026-11-23T00:00", "2026-11-29T00:00"),
        ("@yearly", "2026-11-23T00:00", "2027-01-01T00:00"),
        ("@hourly", "2026-11-23T00:00", "2026-11-23T01:00"),
        ("@daily", "2026-11-23T00:00", "2026-11-24T00:00"),
        # Both day fields restricted: the 1st OR a Friday (the 27th comes first) ...
        ("0 0 1 * fri", "2026-11-23T00:00", "2026-11-27T00:00"),
        # ... a day field starting with * restricts with AND: odd days that are Mondays.
        ("0 0 */2 * mon", "2026-11-23T00:00", "2026-12-07T00:00"),
        ("*/20 9-17/4 * feb,MAR *", "2026-11-23T00:00", "2027-02-01T09:00"),
    ],
)
def test_crontab_semantics(text: str, start: str, expected: str) -> None:
    moment = datetime.fromisoformat(start).replace(tzinfo=UTC)
    got = CronExpression.parse(text).next_after(moment)
    assert got == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_daylight_saving_time_in_a_zone() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    # 2026-03-29: 02:00 -> 03:00. A wall-clock time in the gap fires when the gap ends.
    spring = datetime(2026, 3, 28, 12, tzinfo=UTC)
    assert CronExpression.parse("30 2 * * *").next_after(spring, berlin) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )
    # 2026-10-25: 03:00 -> 02:00. A wall-clock time in the repeated hour fires once ...
    autumn = datetime(2026, 10, 24, 12, tzinfo=UTC)
    daily = CronExpression.parse("30 2 * * *")
    first = daily.next_after(autumn, berlin)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert daily.next_after(first, berlin) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)
    # ... an interval fires at real instants: both passes of the repeated hour.
    quarterly = CronExpression.parse("*/30 * * * *")
    slots, moment = [], datetime(2026, 10, 24, 23, 59, tzinfo=UTC)
    for _ in range(4):
        moment = quarterly.next_after(moment, berlin) or moment
        slots.append(moment.astimezone(berlin).strftime("%H:%M%z"))
    assert slots == ["02:00+0200", "02:30+0200", "02:00+0100", "02:30+0100"]


@pytest.mark.parametrize(
    ("text", "advice"),
    [
        ("0 3 * *", "has 4 fields; a cron expression has 5"),
        ("0 25 * * *", "hour 25 is outside 0-23"),
        ("0 3 * * 8", "day-of-week 8 is outside 0-7"),
        ("0 3 * * fri-mon", "range 'fri-mon' runs backwards"),
        ("0 3 * * monday", "day-of-week value 'monday' is not a number or a name (sun-sat)"),
        ("*/0 * * * *", "minute step '*/0' is 0"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("@reboot", "unknown macro"),
        ("0 3 L * *", "day-of-month value 'l' is not a number"),
    ],
)
def test_invalid_expressions_say_what_is_wrong(text: str, advice: str) -> None:
    with pytest.raises(CronError) as caught:
        CronExpression.parse(text)
    assert advice in str(caught.value)
    assert repr(text) in str(caught.value)
