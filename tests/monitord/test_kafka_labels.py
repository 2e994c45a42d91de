"""Label topics on the real broker: the Kafka daemon reads them beside the inference topic
and joins every label to its prediction."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from connectors.broker import EmbeddedBroker
from connectors.kafka import KafkaSink, ensure_topics
from connectors.stream import Polled, TopicPartition
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from monitord.label_gate import LabelGate

EVENTS = 1500
T0 = 1_700_000_000
FAST_CONSUMER = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}


@pytest.mark.kafka
def test_the_kafka_daemon_reads_its_label_topics(
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    daemons: Callable[[Config], Daemon],
) -> None:
    events, labels, group = unique_name("events"), unique_name("labels"), unique_name("group")
    ensure_topics(broker.bootstrap, {events: 1, labels: 1})
    with KafkaSink(broker.bootstrap) as sink:
        for i in range(EVENTS):
            event = {
                "model": "m",
                "event_id": f"e{i}",
                "timestamp": T0 + i,
                "features": {"x": float(i % 7)},
                "prediction": i % 2,
            }
            sink.send(events, b"m", orjson.dumps(event), timestamp_ms=(T0 + i) * 1000)
        for i in range(EVENTS):  # each label a minute after its prediction
            label = {"event_id": f"e{i}", "label": (i // 3) % 2}
            sink.send(labels, b"m", orjson.dumps(label), timestamp_ms=(T0 + i + 60) * 1000)
        sink.flush(timeout_s=20)
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap,
                "input_topics": [events],
                "group_id": group,
                "dead_letter_topic": f"{group}.dead-letter",
                "alert_topic": f"{group}.alerts",
                "trigger_topic": f"{group}.retrain",
                "connect_timeout_s": 5.0,
                "consumer": FAST_CONSUMER,
            },
            "labels": {"topics": [labels]},
            "checkpoint": {"store": "none"},
        },
        environ={},
    )
    daemon = daemons(config)
    deadline = time.monotonic() + 30.0

    def labelled() -> int:
        found = daemon.performance.versions.get(("m", "unversioned"))
        return 0 if found is None else found.rows

    while labelled() < EVENTS:
        assert time.monotonic() < deadline, f"{labelled()} of {EVENTS} labels joined in 30s"
        daemon.step(0.5)
    assert daemon.joins.pending() == 0
    assert daemon.status()["labels"] == {"topics": [labels], "pending": 0, "held": 0}


@pytest.mark.kafka
def test_a_full_label_gate_pauses_and_resumes_two_label_partitions_on_the_broker(
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    daemons: Callable[[Config], Daemon],
) -> None:
    # Every label stamped after every prediction (a backlog): none folds before the events
    # are read to their end, so the gate, scaled down to about 50 labels, fills with one
    # label partition's records while the other's come earlier.
    n = 400
    events, labels, group = unique_name("events"), unique_name("labels"), unique_name("group")
    ensure_topics(broker.bootstrap, {events: 1, labels: 2})
    with KafkaSink(broker.bootstrap) as sink:
        for i in range(n):
            event = {"model": "m", "event_id": f"e{i}", "timestamp": T0 + i, "prediction": i % 2}
            event["features"] = {"x": float(i % 7)}
            sink.send(events, b"m", orjson.dumps(event), timestamp_ms=(T0 + i) * 1000)
        for i in range(n):
            label = {"event_id": f"e{i}", "label": i % 2, "pad": "x" * 900}
            stamp = (T0 + n + i) * 1000
            sink.send(labels, b"m", orjson.dumps(label), partition=i % 2, timestamp_ms=stamp)
        sink.flush(timeout_s=20)
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap,
                "input_topics": [events],
                "group_id": group,
                "dead_letter_topic": f"{group}.dead-letter",
                "alert_topic": f"{group}.alerts",
                "trigger_topic": f"{group}.retrain",
                "connect_timeout_s": 5.0,
                "consumer": FAST_CONSUMER,
            },
            "labels": {"topics": [labels]},
            "checkpoint": {"store": "none"},
        },
        environ={},
    )
    daemon = daemons(config)
    daemon.joins.gate = LabelGate(max_bytes=64 * 1024, max_ahead_s=config.events.max_time_ahead_s)
    turned_away = 0
    hold = daemon.joins.gate.hold

    def counting(polled: Polled) -> dict[TopicPartition, int]:
        nonlocal turned_away
        again = hold(polled)
        turned_away += len(again)
        return again

    daemon.joins.gate.hold = counting  # type: ignore[method-assign]
    deadline = time.monotonic() + 60.0

    def labelled() -> int:
        found = daemon.performance.versions.get(("m", "unversioned"))
        return 0 if found is None else found.rows

    while labelled() < n:
        assert time.monotonic() < deadline, f"{labelled()} of {n} labels joined in 60s"
        daemon.step(0.2)
    assert turned_away > 0  # the gate was full
    assert labelled() == n  # none twice
    assert daemon.joins.pending() == 0
    assert daemon.joins.gate.held() == 0
