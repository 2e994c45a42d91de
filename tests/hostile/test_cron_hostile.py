"""Retrain schedules an operator should not write, or writes in a zone with daylight saving
time: refused with advice, answered within a bounded search, and a daemon down for a month
does not walk every missed slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim

from monitord.cron import CronError, CronExpression
from monitord.schedule import CronSchedule

LONDON = ZoneInfo("Europe/London")


@pytest.mark.parametrize(
    ("text", "advice"),
    [
        ("*/0 * * * *", "step '*/0' is 0"),
        ("60 * * * *", "60 is outside 0-59"),
        ("0 24 * * *", "24 is outside 0-23"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("@reboot", "unknown macro"),
        ("", "has 0 fields"),
        ("0 0 * * * *", "has 6 fields"),
        ("0 0 \u0663 * *", "is not a number"),  # an Arabic-Indic three: isdecimal() says yes
        ("0 0 1-2-3 * *", "is not a number"),
        ("0 0 5-1 * *", "runs backwards"),
        ("0 0 * * 8", "8 is outside 0-7"),
        ("0 0 * 13 *", "13 is outside 1-12"),
        (f"0 0 {'9' * 5000} * *", "day-of-month"),
        ("0 0 * * mon-", "is not a number"),
    ],
)
def test_expressions_that_never_fire_or_are_not_crontab_are_refused(text: str, advice: str) -> None:
    with pytest.raises(CronError, match=advice.replace("*", r"\*")):
        CronExpression.parse(text)


def cronsim_next(text: str, start: datetime, zone: ZoneInfo) -> datetime:
    return next(iter(CronSim(text, start.astimezone(zone)))).astimezone(UTC)


@pytest.mark.parametrize(
    ("text", "start", "expected"),
    [
        # 2100 is not a leap year: the next 29 February after 2096's is 2104's.
        ("0 0 29 2 *", datetime(2096, 3, 1, tzinfo=UTC), datetime(2104, 2, 29, tzinfo=UTC)),
        # A 29 February that is a Sunday (a day-of-week starting with * restricts with AND).
        ("0 0 29 2 */7", datetime(2096, 3, 1, tzinfo=UTC), datetime(2128, 2, 29, tzinfo=UTC)),
        # Both day fields restricted: the 29th OR a Monday, so it fires every February.
        ("0 0 29 2 mon", datetime(2097, 3, 1, tzinfo=UTC), datetime(2098, 2, 3, tzinfo=UTC)),
    ],
)
def test_a_schedule_on_29_february_is_found_years_ahead(
    text: str, start: datetime, expected: datetime
) -> None:
    assert CronExpression.parse(text).next_after(start) == expected
    assert cronsim_next(text, start, ZoneInfo("UTC")) == expected


@pytest.mark.parametrize("text", ["0 2 * * *", "30 1 * * *", "*/30 1 * * *"])
@pytest.mark.parametrize("change", [datetime(2026, 3, 29), datetime(2026, 10, 25)])
def test_london_across_both_clock_changes_agrees_with_cronsim(text: str, change: datetime) -> None:
    # London: 2026-03-29 01:00 GMT -> 02:00 BST (01:xx skipped); 2026-10-25 02:00 BST ->
    # 01:00 GMT (01:xx twice). Walk two days of slots around each change.
    expression = CronExpression.parse(text)
    moment = (change - timedelta(days=1)).replace(tzinfo=UTC)
    walked = 0
    while moment < (change + timedelta(days=1)).replace(tzinfo=UTC):
        expected = cronsim_next(text, moment, LONDON)
        got = expression.next_after(moment, LONDON)
        assert got == expected, (text, moment.isoformat())
        assert got is not None
        moment, walked = got, walked + 1
    assert walked >= 2


def test_0_2_daily_in_london_fires_once_a_day_across_both_changes() -> None:
    schedule = CronExpression.parse("0 2 * * *")
    slots, moment = [], datetime(2026, 3, 27, 12, tzinfo=UTC)
    for _ in range(4):
        moment = schedule.next_after(moment, LONDON) or moment
        slots.append(moment.isoformat())
    assert slots == [
        "2026-03-28T02:00:00+00:00",  # GMT
        "2026-03-29T01:00:00+00:00",  # BST from 01:00 GMT: 02:00 local exists, once
        "2026-03-30T01:00:00+00:00",
        "2026-03-31T01:00:00+00:00",
    ]
    slots, moment = [], datetime(2026, 10, 23, 12, tzinfo=UTC)
    for _ in range(3):
        moment = schedule.next_after(moment, LONDON) or moment
        slots.append(moment.isoformat())
    assert slots == [
        "2026-10-24T01:00:00+00:00",  # BST
        "2026-10-25T02:00:00+00:00",  # GMT again: 02:00 comes once, after the repeated hour
        "2026-10-26T02:00:00+00:00",
    ]


def walked_latest(expression: str, zone: str, first: float, now: float) -> float:
    """The latest slot at or before ``now``, walking every slot from ``first`` (a slot)."""
    schedule = CronSchedule(expression, zone)
    slot = first
    while (following := schedule.next_after(slot)) is not None and following <= now:
        slot = following
    return slot


DOWN_S = (59.0, 3600.0 * 7.5, 86400.0 * 3.3)


@pytest.mark.parametrize(
    ("expression", "zone", "down_s"),
    [
        ("* * * * *", "Europe/London", 59.0),
        ("* * * * *", "Europe/London", 3600.0 * 7.5),  # the walk to compare with is slow
        *[
            (expression, zone, down_s)
            for expression, zone in [
                ("*/5 * * * *", "UTC"),
                ("* 3 * * *", "Europe/London"),
                ("30 1 * * *", "Europe/London"),
                ("0 0 29 2 *", "UTC"),
                ("0 9-17 * * mon-fri", "America/New_York"),
            ]
            for down_s in DOWN_S
        ],
    ],
)
def test_slots_missed_while_down_coalesce_to_the_latest(
    expression: str, zone: str, down_s: float
) -> None:
    start = datetime(2026, 10, 24, 0, 0, 30, tzinfo=UTC).timestamp()
    schedule = CronSchedule(expression, zone)
    assert schedule.due(start) is None
    first = schedule.next_slot
    assert first is not None
    now = first + down_s
    assert schedule.due(now) == walked_latest(expression, zone, first, now)


def test_a_month_down_is_coalesced_without_walking_every_minute(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Walking slot by slot, a month of '* * * * *' took 43,200 searches (2.9 s a day of it
    # on this machine's cores): the daemon's loop stalled past max.poll.interval.ms.
    calls = 0
    search = CronExpression.next_after

    def counted(self: CronExpression, moment: datetime, zone: ZoneInfo) -> datetime | None:
        nonlocal calls
        calls += 1
        return search(self, moment, zone)

    start = datetime(2026, 10, 1, tzinfo=UTC).timestamp()
    schedule = CronSchedule("* * * * *", "Europe/London")
    schedule.due(start)
    monkeypatch.setattr(CronExpression, "next_after", counted)
    now = start + 30 * 86400 + 17
    assert schedule.due(now) == now - 17
    assert calls < 100
