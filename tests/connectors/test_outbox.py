"""The durable outbox: stored before any attempt, retried with backoff, never lost.

The clock is explicit: every test passes `now`, so schedules are exact and nothing sleeps.
"""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.broker import free_port
from connectors.http import ReceiverError
from connectors.outbox import RETRY_LOG_INTERVAL_S, Dispatcher, DispatchReport, Outbox
from connectors.pagerduty import PagerDutyReceiver, resolve
from connectors.stream import ConnectorError
from tests.servers import RecordingServer

T0 = 1_700_000_000.0
ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    with RecordingServer(default=(202, {}, b"{}")) as running:
        yield running


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite"


def retriable(message: str = "down", retry_after_s: float | None = None) -> ReceiverError:
    return ReceiverError(message, retriable=True, status=503, retry_after_s=retry_after_s)


def test_enqueue_is_idempotent_per_message_and_receiver(path: Path) -> None:
    outbox = Outbox(path)
    assert outbox.enqueue("m1", "pagerduty", b"a", now=T0)
    assert not outbox.enqueue("m1", "pagerduty", b"changed", now=T0 + 1)
    assert outbox.enqueue("m1", "slack", b"a", now=T0)

    items = outbox.due(T0, limit=10)
    assert [(i.message_id, i.receiver, i.payload) for i in items] == [
        ("m1", "pagerduty", b"a"),
        ("m1", "slack", b"a"),
    ]
    assert outbox.pending() == 2
    outbox.close()


def test_stored_in_wal_mode(path: Path) -> None:
    Outbox(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_nothing_is_due_before_its_time_and_backoff_grows_to_the_cap(path: Path) -> None:
    # random() == 1.0 picks the top of every jitter range: delays are the ceilings.
    outbox = Outbox(path, base_backoff_s=1.0, max_backoff_s=10.0, random=lambda: 1.0)
    outbox.enqueue("m1", "r", b"{}", now=T0)
    now = T0
    delays = []
    for _ in range(6):
        (item,) = outbox.due(now, limit=10)
        assert outbox.failed(item, retriable(), now) == "pending"
        after = outbox.get("m1", "r")
        assert after is not None
        delays.append(after.next_attempt_at - now)
        assert outbox.due(after.next_attempt_at - 0.001, limit=10) == []
        now = after.next_attempt_at

    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    outbox.close()


def test_full_jitter_is_reproducible_with_a_seed(tmp_path: Path) -> None:
    def schedule(seed: int, name: str) -> list[float]:
        outbox = Outbox(tmp_path / name, random=random.Random(seed).random)
        outbox.enqueue("m1", "r", b"{}", now=T0)
        delays = []
        for attempt in range(1, 9):
            (item,) = outbox.due(T0 + 1e6, limit=1)
            outbox.failed(item, retriable(), T0)
            stored = outbox.get("m1", "r")
            assert stored is not None
            delay = stored.next_attempt_at - T0
            assert 0 <= delay <= min(300.0, 2.0 ** (attempt - 1))
            delays.append(delay)
        outbox.close()
        return delays

    assert schedule(7, "a") == schedule(7, "b")
    assert schedule(7, "c") != schedule(8, "d")


def test_retry_after_replaces_the_backoff(path: Path) -> None:
    outbox = Outbox(path, random=lambda: 1.0, max_retry_after_s=600.0)
    outbox.enqueue("m1", "r", b"{}", now=T0)
    (item,) = outbox.due(T0, limit=1)
    outbox.failed(item, retriable(retry_after_s=42.0), T0)
    assert outbox.due(T0 + 41.9, limit=1) == []
    (item,) = outbox.due(T0 + 42.0, limit=1)
    outbox.failed(item, retriable(retry_after_s=1e9), T0 + 42.0)
    stored = outbox.get("m1", "r")
    assert stored is not None
    assert stored.next_attempt_at == T0 + 42.0 + 600.0


def test_a_later_message_of_one_ordering_key_waits_for_the_earlier(path: Path) -> None:
    outbox = Outbox(path, random=lambda: 1.0)
    outbox.enqueue("trigger", "pd", b"{}", now=T0, ordering_key="label-set-a")
    (item,) = outbox.due(T0)
    outbox.failed(item, retriable(), T0)  # backing off until T0 + 1
    outbox.enqueue("resolve", "pd", b"{}", now=T0 + 0.5, ordering_key="label-set-a")
    outbox.enqueue("other", "pd", b"{}", now=T0 + 0.5, ordering_key="label-set-b")
    outbox.enqueue("unordered", "pd", b"{}", now=T0 + 0.5)
    # The resolve is due by time but waits behind its trigger; other keys are not held up.
    assert [i.message_id for i in outbox.due(T0 + 0.5)] == ["other", "unordered"]
    (trigger,) = [i for i in outbox.due(T0 + 1.0) if i.message_id == "trigger"]
    outbox.delivered(trigger, T0 + 1.0)
    assert "resolve" in [i.message_id for i in outbox.due(T0 + 1.0)]


def test_max_attempts_ends_retries_as_failed(path: Path) -> None:
    outbox = Outbox(path, max_attempts=2, random=lambda: 0.0)
    outbox.enqueue("m1", "r", b"{}", now=T0)
    (item,) = outbox.due(T0, limit=1)
    assert outbox.failed(item, retriable(), T0) == "pending"
    (item,) = outbox.due(T0, limit=1)
    assert outbox.failed(item, retriable("still down"), T0) == "failed"
    assert outbox.pending() == 0


def test_an_outcome_reported_twice_counts_once(path: Path) -> None:
    outbox = Outbox(path)
    outbox.enqueue("m1", "r", b"{}", now=T0)
    (item,) = outbox.due(T0, limit=1)
    outbox.delivered(item, T0)
    outbox.delivered(item, T0 + 1)
    outbox.failed(item, retriable(), T0 + 2)
    stored = outbox.get("m1", "r")
    assert stored is not None
    assert (stored.state, stored.attempts) == ("delivered", 1)
    assert len(outbox.history()) == 1


def test_receiver_down_then_up_is_retried_with_growing_backoff(
    path: Path, server: RecordingServer
) -> None:
    for _ in range(3):
        server.reply(503, b"unavailable")
    outbox = Outbox(path, random=lambda: 1.0)
    dispatcher = Dispatcher(outbox, {"pagerduty": PagerDutyReceiver(ROUTING_KEY, url=server.url)})
    outbox.enqueue("alert-1", "pagerduty", resolve("k1"), now=T0)

    reports = []
    now = T0
    for _ in range(4):
        reports.append(dispatcher.run_due(now))
        assert dispatcher.run_due(now) == DispatchReport()  # nothing is due twice
        item = outbox.get("alert-1", "pagerduty")
        assert item is not None
        now = item.next_attempt_at

    assert reports == [DispatchReport(retrying=1)] * 3 + [DispatchReport(delivered=1)]
    assert len(server.requests) == 4
    history = list(reversed(outbox.history()))
    assert [(a.attempt, a.outcome, a.status) for a in history] == [
        (1, "retry", 503),
        (2, "retry", 503),
        (3, "retry", 503),
        (4, "delivered", None),
    ]
    assert [a.at - T0 for a in history] == [0.0, 1.0, 3.0, 7.0]  # waited 1 s, 2 s, 4 s
    final = outbox.get("alert-1", "pagerduty")
    assert final is not None
    assert (final.state, final.attempts, final.last_error) == ("delivered", 4, None)
    assert outbox.pending() == 0


def test_non_retriable_400_is_final_with_its_reason(path: Path, server: RecordingServer) -> None:
    server.reply(400, b'{"message":"Event object is invalid"}')
    outbox = Outbox(path)
    dispatcher = Dispatcher(outbox, {"pagerduty": PagerDutyReceiver(ROUTING_KEY, url=server.url)})
    outbox.enqueue("alert-1", "pagerduty", resolve("k1"), now=T0)

    assert dispatcher.run_due(T0) == DispatchReport(failed=1)
    assert dispatcher.run_due(T0 + 1e6) == DispatchReport()

    item = outbox.get("alert-1", "pagerduty")
    assert item is not None
    assert (item.state, item.attempts, item.last_status) == ("failed", 1, 400)
    assert item.last_error is not None
    assert "Event object is invalid" in item.last_error
    assert ROUTING_KEY not in item.last_error
    assert len(server.requests) == 1


def test_unknown_receiver_is_failed_with_the_configured_names(path: Path) -> None:
    outbox = Outbox(path)
    outbox.enqueue("m1", "teams", b"{}", now=T0)
    assert Dispatcher(outbox, {}).run_due(T0) == DispatchReport(failed=1)
    item = outbox.get("m1", "teams")
    assert item is not None
    assert "no receiver named 'teams'" in (item.last_error or "")


def test_restart_resumes_pending_items(path: Path, server: RecordingServer) -> None:
    server.reply(503)
    first = Outbox(path, random=lambda: 1.0)
    receivers = {"pagerduty": PagerDutyReceiver(ROUTING_KEY, url=server.url)}
    first.enqueue("delivered-before", "pagerduty", resolve("k0"), now=T0)
    Dispatcher(first, receivers).run_due(T0)  # 503 for the first, so it waits 1 s
    first.enqueue("never-tried", "pagerduty", resolve("k1"), now=T0)
    first.close()
    first.close()
    with pytest.raises(ConnectorError, match="closed"):
        first.pending()

    restarted = Outbox(path)
    assert restarted.pending() == 2
    assert Dispatcher(restarted, receivers).run_due(T0 + 1) == DispatchReport(delivered=2)
    assert restarted.pending() == 0
    restarted.close()


def test_nothing_is_lost(path: Path, server: RecordingServer) -> None:
    """Under a random mix of answers and restarts, every message ends delivered or failed."""
    rng = random.Random(1234)
    answers = [503, 503, 429, 500, 202, 202, 202, 400, 409]
    for _ in range(200):
        server.reply(rng.choice(answers))
    receivers = {"pagerduty": PagerDutyReceiver(ROUTING_KEY, url=server.url)}
    ids = [f"alert-{i}" for i in range(40)]
    outbox = Outbox(path, random=random.Random(1).random, max_backoff_s=5.0)
    now = T0
    for i, message_id in enumerate(ids):
        outbox.enqueue(message_id, "pagerduty", resolve(message_id), now=now)
        if i % 10 == 9:  # restart now and then
            outbox.close()
            outbox = Outbox(path, random=random.Random(i).random, max_backoff_s=5.0)
        Dispatcher(outbox, receivers, batch_size=3).run_due(now)
        now += 1.0
    while outbox.pending():
        Dispatcher(outbox, receivers).run_due(now)
        now += 5.0

    states = {}
    for message_id in ids:
        item = outbox.get(message_id, "pagerduty")
        assert item is not None
        states[message_id] = item.state
    assert set(states.values()) <= {"delivered", "failed"}
    assert "failed" in states.values()
    assert "delivered" in states.values()
    finished = [a for a in outbox.history(limit=10_000) if a.outcome != "retry"]
    assert sorted(a.message_id for a in finished) == sorted(ids)
    outbox.close()


def test_retries_of_a_receiver_that_is_down_are_logged_once_a_minute(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: no answer
    outbox = Outbox(path, random=lambda: 0.0)  # due again at once
    dispatcher = Dispatcher(outbox, {"pagerduty": PagerDutyReceiver(ROUTING_KEY, url=closed)})
    for i in range(20):
        outbox.enqueue(f"alert-{i}", "pagerduty", resolve(f"k{i}"), now=T0)
    with caplog.at_level(logging.WARNING, logger="connectors.outbox"):
        assert dispatcher.run_due(T0) == DispatchReport(retrying=20)
        assert dispatcher.run_due(T0 + RETRY_LOG_INTERVAL_S - 1) == DispatchReport(retrying=20)
        assert dispatcher.run_due(T0 + RETRY_LOG_INTERVAL_S) == DispatchReport(retrying=20)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # 60 failed attempts
    assert "alert-0" in lines[0]
    assert "more failed attempts" not in lines[0]
    assert lines[1].endswith("(39 more failed attempts to it since the last such line)")
    assert outbox.pending() == 20  # every one still waiting for its retry
