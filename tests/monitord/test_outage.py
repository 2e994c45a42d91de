"""A receiver outage across a daemon crash: nothing lost, no incident opened twice.

The receiver (a PagerDuty Events v2 stand-in) is down while alerts fire; `monitord run` is
killed with SIGKILL while it retries, then restarted; the receiver comes back. The outbox
file survives the crash, so every alert arrives after the restart, and the deterministic
message ids mean no dedup key is triggered twice.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kafka import KafkaAdminClient, TopicPartition

from connectors.broker import EmbeddedBroker
from connectors.kafka import ensure_topics
from tests.monitord.test_kafka_daemon import FAST_CONSUMER, events, produce
from tests.servers import Recorded, RecordingServer, Reply

ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"
MODEL = "outage-model"
WARMUP, WINDOW, DRIFT_AT, TOTAL = 2000, 1000, 4000, 7000
DOWN: Reply = (503, {}, b'{"status": "unavailable"}')
ACCEPTED: Reply = (202, {}, b'{"status": "success", "message": "Event processed"}')
TIMEOUT_S = 30.0
GRACE_S = 15.0  # SIGTERM to exit: leaving the group and closing the outbox
POLL_S = 0.1


class AnsweringServer(RecordingServer):
    """A `RecordingServer` that also remembers the status it answered to each request."""

    def __init__(self) -> None:
        super().__init__(DOWN)
        self.answered: list[tuple[Recorded, int]] = []

    def _record(self, request: Recorded) -> Reply:
        # Runs under the server's lock: the status is the one actually sent back.
        reply = super()._record(request)
        self.answered.append((request, reply[0]))
        return reply

    def come_back(self) -> None:
        """Answer 202 from the next request on (atomically with recording)."""
        self.wait_for(lambda _: self._accept(), 0)

    def _accept(self) -> bool:
        self.default = ACCEPTED
        return True


@pytest.fixture
def pagerduty() -> Iterator[AnsweringServer]:
    running = AnsweringServer()
    with running:
        yield running


@pytest.fixture
def admin(broker: EmbeddedBroker) -> Iterator[Any]:
    """A Kafka admin client, to read the offsets the daemon's group committed."""
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=5000)
    yield client
    client.close()


def _config(tmp_path: Path, kafka: dict[str, object], url: str) -> Path:
    lines = [f"state_dir = {_toml(str(tmp_path / 'state'))}", "", "[kafka]"]
    lines += [f"{key} = {_toml(value)}" for key, value in kafka.items()]
    lines += ["connect_timeout_s = 5.0", "", "[kafka.consumer]"]
    lines += [f"{key} = {value}" for key, value in FAST_CONSUMER.items()]
    lines += [
        "",
        "[detection]",
        f"warmup_events = {WARMUP}",
        f"window_size = {WINDOW}",
        "",
        "[[receivers]]",
        'name = "pd"',
        'type = "pagerduty"',
        f"url = {_toml(url)}",
        'secret_env = "PD_KEY"',
    ]
    path = tmp_path / "monitord.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: object) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _drift() -> list[tuple[bytes | None, bytes]]:
    """``TOTAL`` events: "x" shifts by 1 sd from ``DRIFT_AT`` and stays there."""
    rng = np.random.default_rng(20240917)
    x = rng.normal(0.0, 1.0, TOTAL)
    y = rng.normal(5.0, 2.0, TOTAL)
    x[DRIFT_AT:] += 1.0
    return events(MODEL, x, y)


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "monitord.cli", "run", "--config", str(config)],
            env={**os.environ, "PD_KEY": ROUTING_KEY},
            cwd=config.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole
        )


def _outbox(path: Path) -> list[tuple[str, str, int]]:
    """(message id, state, attempts) of every stored message; read-only, never locks out."""
    if not path.exists():
        return []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        try:
            rows = db.execute("SELECT message_id, state, attempts FROM outbox").fetchall()
        except sqlite3.OperationalError:  # the daemon has not created the table yet
            return []
    return [(str(m), str(s), int(a)) for m, s, a in rows]


def _committed(admin: Any, group: str, topic: str) -> int:
    """The offset ``group`` committed on partition 0 of ``topic`` (the next one to read)."""
    offsets = admin.list_group_offsets({group: [TopicPartition(topic, 0)]})[group]
    return int(offsets[TopicPartition(topic, 0)].offset)


def _until(
    condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    pause = threading.Event()
    while not condition():
        code = process.poll()
        assert code is None, f"monitord exited with {code}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} within {TIMEOUT_S:g}s:\n{log.read_text()}"
        pause.wait(POLL_S)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.kafka
@pytest.mark.slow
def test_alerts_survive_a_receiver_outage_and_a_crash(
    tmp_path: Path,
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    pagerduty: AnsweringServer,
    admin: Any,
) -> None:
    topic, group = unique_name("events"), unique_name("group")
    kafka: dict[str, object] = {
        "bootstrap_servers": broker.bootstrap,
        "input_topics": [topic],
        "group_id": group,
        "dead_letter_topic": unique_name("dead-letter"),
        "alert_topic": unique_name("alerts"),
        "trigger_topic": unique_name("retrain"),
    }
    config = _config(tmp_path, kafka, pagerduty.url + "/v2/enqueue")
    outbox, log = tmp_path / "state" / "outbox.sqlite", tmp_path / "monitord.log"
    ensure_topics(broker.bootstrap, {topic: 1})
    produce(broker.bootstrap, topic, _drift())  # all of it before the daemon starts

    first = _start(config, log)
    try:
        # Everything consumed and committed, its alerts stored, and at least one retried.
        _until(lambda: _committed(admin, group, topic) == TOTAL, "offsets committed", first, log)
        _until(
            lambda: any(attempts >= 2 for _, _, attempts in _outbox(outbox)),
            "a retry",
            first,
            log,
        )
        assert len(pagerduty.requests) >= 2
        _kill(first)  # mid-retry: the outbox is whatever the last transaction left
    finally:
        _kill(first)
    before = _outbox(outbox)
    stored = {message for message, _, _ in before}
    assert stored, "no alert was stored"
    assert all(state == "pending" for _, state, _ in before), before
    assert all(status == DOWN[0] for _, status in pagerduty.answered)

    pagerduty.come_back()
    second = _start(config, log)
    try:
        _until(
            lambda: all(state != "pending" for _, state, _ in _outbox(outbox)),
            "the outbox drained",
            second,
            log,
        )
        os.killpg(second.pid, signal.SIGTERM)
        code = second.wait(timeout=GRACE_S)
        assert _committed(admin, group, topic) == TOTAL  # nothing was consumed again
    finally:
        _kill(second)
    assert code == 0, log.read_text()[-3000:]

    after = _outbox(outbox)
    assert {message for message, _, _ in after} == stored, "a message appeared or vanished"
    assert all(state == "delivered" for _, state, _ in after), after

    events_by_status: dict[int, list[dict[str, Any]]] = {}
    for request, status in pagerduty.answered:
        body = request.json()
        assert isinstance(body, dict)
        assert request.path == "/v2/enqueue"
        assert body["routing_key"] == ROUTING_KEY
        events_by_status.setdefault(status, []).append(body)
    assert set(events_by_status) == {DOWN[0], ACCEPTED[0]}
    accepted = events_by_status[ACCEPTED[0]]
    # One accepted event per stored message: every alert arrived, none twice.
    assert len(accepted) == len(stored)
    opened = Counter(e["dedup_key"] for e in accepted if e["event_action"] == "trigger")
    assert opened, "no incident was opened"
    assert all(count == 1 for count in opened.values()), opened
    assert all(e["event_action"] == "trigger" for e in accepted)  # the drift never ends
    summaries = [e["payload"]["summary"] for e in accepted]
    assert any(" x of " in s for s in summaries), summaries
    assert not any(" y of " in s for s in summaries), summaries
    # What was refused while down is exactly what was accepted later.
    refused = {(e["dedup_key"], e["event_action"]) for e in events_by_status[DOWN[0]]}
    assert refused <= {(e["dedup_key"], e["event_action"]) for e in accepted}
