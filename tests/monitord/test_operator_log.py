"""What an operator's log shows at the default level: partitions assigned and revoked,
every alert transition and retrain request, dead letters (rate-limited), a growing outbox
backlog, and shutdown."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import orjson
import pytest

from connectors.broker import EmbeddedBroker
from connectors.kafka import ensure_topics
from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from monitord.dead_letter import DeadLetterLog
from monitord.delivery import BacklogWatch
from monitord.events import BadRecord


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger]


def _drift_records() -> list[Record]:
    """x drifts from row 6,000 to 10,000 then recovers; two malformed records early on."""
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(14_000, 2))
    rows[6_000:10_000, 0] += 1.0
    values = [
        orjson.dumps({"model": "m", "model_version": "1", "features": {"x": x, "y": y}})
        for x, y in rows.tolist()
    ]
    values[100], values[101] = b'{"model": "m", "features": ', b"[1, 2]"
    return [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(values)]


def test_alerts_retrain_requests_dead_letters_and_shutdown_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitord")
    config = parse_config({"detection": {"warmup_events": 2000, "window_size": 1000}})
    daemon = Daemon(config, MemorySource(_drift_records()), MemorySink(), [], lambda m, v: None)
    outputs = daemon.drain()
    daemon.close()
    daemon.close()  # idempotent: one shutdown in the log

    alerts = [line for line in _messages(caplog, "monitord.outputs") if line.startswith("alert")]
    fired = [o for o in outputs if getattr(o, "status", None) == "firing"]
    resolved = [o for o in outputs if getattr(o, "status", None) == "resolved"]
    assert fired
    assert resolved
    assert sum(line.startswith("alert firing: ") for line in alerts) == len(fired)
    assert sum(line.startswith("alert resolved: ") for line in alerts) == len(resolved)
    assert any(
        line.startswith("alert firing: MonitordFeatureDrift warning m/1 x ks: ") for line in alerts
    ), alerts
    records = {r.getMessage(): r for r in caplog.records if r.name == "monitord.outputs"}
    first = next(r for m, r in records.items() if m.startswith("alert firing"))
    assert first.__dict__["model"] == "m"
    assert first.__dict__["model_version"] == "1"
    assert first.__dict__["output_id"] in {o.id for o in outputs}

    requests = [line for line in records if line.startswith("retrain requested: ")]
    assert len(requests) == daemon.stats.triggers

    dead = _messages(caplog, "monitord.dead_letter")
    assert dead == [  # one batch held both
        "2 records dead-lettered to monitord.dead-letter (invalid_json: 1, not_an_object: 1); "
        "latest in[0]@101: got list"
    ]
    daemon_lines = _messages(caplog, "monitord.daemon")
    assert daemon_lines[-2] == (
        "shutting down: checkpointing, leaving the consumer group, flushing outputs"
    )
    assert daemon_lines[-1].startswith(f"stopped: 14000 records, {len(fired)} alerts fired, ")
    assert sum(line.startswith("stopped:") for line in daemon_lines) == 1


def _bad(offset: int, reason: str) -> BadRecord:
    return BadRecord(Record("in", 2, offset, None, b"x", 0), reason, f"detail {offset}")


def test_dead_letters_are_logged_at_once_then_summed_up_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitord")
    letters = DeadLetterLog("dlq", interval_s=60.0)
    letters.update([_bad(1, "invalid_json")], now=1000.0)  # the first: at once
    for i in range(2, 500):  # a burst: held
        letters.update([_bad(i, "wrong_type" if i % 2 else "invalid_json")], now=1000.0 + i / 10)
    letters.update([], now=1059.0)
    assert len(_messages(caplog, "monitord.dead_letter")) == 1
    letters.update([], now=1060.0)  # the interval has passed: the burst, summed up
    letters.update([], now=2000.0)  # nothing new: nothing to say
    letters.update([_bad(900, "oversize")], now=2001.0)
    letters.flush(now=2002.0)  # at shutdown, what is held is written whatever the interval
    assert _messages(caplog, "monitord.dead_letter") == [
        "1 records dead-lettered to dlq (invalid_json: 1); latest in[2]@1: detail 1",
        "498 records dead-lettered to dlq in the last 60s (invalid_json: 249, wrong_type: 249); "
        "latest in[2]@499: detail 499",
        "1 records dead-lettered to dlq in the last 941s (oversize: 1); latest in[2]@900: "
        "detail 900",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_a_growing_outbox_backlog_is_logged_at_each_tenfold_and_once_drained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitord")
    watch = BacklogWatch()
    for pending in (1, 9, 10, 11, 57, 10, 150, 99, 1200, 0, 0, 12):
        watch.update({"pagerduty": pending, "slack": 0})
    assert _messages(caplog, "monitord.delivery") == [
        "outbox backlog for receiver 'pagerduty' grew to 10 messages: it does not take them as "
        "fast as they come (see the delivery errors above)",
        "outbox backlog for receiver 'pagerduty' grew to 150 messages: it does not take them as "
        "fast as they come (see the delivery errors above)",
        "outbox backlog for receiver 'pagerduty' grew to 1200 messages: it does not take them "
        "as fast as they come (see the delivery errors above)",
        "outbox backlog for receiver 'pagerduty' drained",
        "outbox backlog for receiver 'pagerduty' grew to 12 messages: it does not take them as "
        "fast as they come (see the delivery errors above)",
    ]


@pytest.mark.kafka
def test_partition_assignment_and_revocation_are_logged(
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    daemons: Callable[[Config], Daemon],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="monitord")
    topic = unique_name("events")
    ensure_topics(broker.bootstrap, {topic: 2})
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap,
                "input_topics": [topic],
                "group_id": unique_name("group"),
                "consumer": {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
            }
        },
        environ={},
    )
    daemon = daemons(config)
    deadline = time.monotonic() + 30
    while not daemon.source.assignment():
        assert time.monotonic() < deadline, "no partitions assigned within 30 s"
        daemon.step(0.5)
    daemon.close()
    lines = _messages(caplog, "monitord.daemon")
    assigned = f"partitions assigned: {topic}[0], {topic}[1]"
    revoked = f"partitions revoked: {topic}[0], {topic}[1]"
    assert lines.index(assigned) < lines.index(revoked), lines
