"""Label topics on the real broker: the Kafka daemon reads them beside the inference topic
and joins every label to its prediction."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest

from connectors.broker import EmbeddedBroker
from connectors.kafka import KafkaSink, ensure_topics
from monitord.config import Config, parse_config
from monitord.daemon import Daemon

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
