"""The daemon end to end against a real Kafka-protocol broker (embedded Tansu), and the
`run` / `check` commands at startup.

The broker tests drive `Daemon.step()` in a loop with a deadline (no sleeps) and read the
output topics back with `read_topic`. Topics and groups are unique per test; consumer
session timeouts are short so that joining a group takes ~3 s on Tansu.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
from cloudevents.core.formats.json import JSONFormat

from connectors.broker import EmbeddedBroker, free_port
from connectors.kafka import KafkaProducerSettings, KafkaSink, ensure_topics, read_topic
from connectors.stream import Polled, Record, Source, flatten
from monitord.cli import main
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from monitord.policy import Output

MODEL, VERSION = "pricing-model", "3"
ALERT_TYPE, RETRAIN_TYPE = "io.monitord.drift.alert", "io.monitord.retrain.requested"
FAST_CONSUMER = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
REPO = Path(__file__).resolve().parents[2]

# The known-drift scenario: reference, a stationary stretch, then "x" shifted by 1 sd.
WARMUP, WINDOW, DRIFT_AT, TOTAL = 2000, 500, 3000, 6000

Message = tuple[bytes | None, bytes]  # (key, value)


@dataclass(frozen=True)
class Topics:
    events: str
    dead_letters: str
    alerts: str
    triggers: str


@pytest.fixture
def topics(unique_name: Callable[[str], str]) -> Topics:
    return Topics(
        unique_name("events"),
        unique_name("dead-letter"),
        unique_name("alerts"),
        unique_name("retrain"),
    )


def daemon_config(
    bootstrap: str,
    topics: Topics,
    group: str,
    *,
    consumer: Mapping[str, int] | None = None,
    detection: Mapping[str, Any] | None = None,
    events: Mapping[str, Any] | None = None,
    client: str = "kafka-python",
) -> Config:
    return parse_config(
        {
            "kafka": {
                "client": client,
                "bootstrap_servers": bootstrap,
                "input_topics": [topics.events],
                "group_id": group,
                "dead_letter_topic": topics.dead_letters,
                "alert_topic": topics.alerts,
                "trigger_topic": topics.triggers,
                "connect_timeout_s": 5.0,
                "consumer": {**FAST_CONSUMER, **(consumer or {})},
            },
            "detection": dict(detection or {}),
            "events": dict(events or {}),
        },
        environ={},
    )


def event(i: int, x: float, y: float, model: str = MODEL) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "model_version": VERSION,
            "event_id": f"req-{i}",
            "features": {"x": x, "y": y},
        }
    )


def events(model: str, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> list[Message]:
    return [
        (model.encode(), event(i, float(a), float(b), model))
        for i, (a, b) in enumerate(zip(x, y, strict=True))
    ]


def produce(
    bootstrap: str,
    topic: str,
    messages: Sequence[Message],
    headers: Sequence[tuple[str, bytes]] = (),
) -> None:
    with KafkaSink(bootstrap) as sink:
        for key, value in messages:
            sink.send(topic, key, value, headers)
        sink.flush(timeout_s=20)


def step_until(daemon: Daemon, consumed: int, timeout_s: float = 30.0) -> list[Output]:
    """Step until the daemon has consumed ``consumed`` records in total; their outputs."""
    deadline = time.monotonic() + timeout_s
    outputs: list[Output] = []
    while daemon.stats.events < consumed:
        assert time.monotonic() < deadline, (
            f"consumed {daemon.stats.events} of {consumed} records within {timeout_s:g}s"
        )
        outputs += daemon.step(0.5)[1]
    return outputs


def cloudevents(bootstrap: str, topic: str) -> list[tuple[Record, dict[str, Any]]]:
    """Each record of ``topic`` and its JSON body, which the CloudEvents SDK reads as the
    same event (structured mode)."""
    records = read_topic(bootstrap, topic, timeout_s=10)
    found = [(r, orjson.loads(r.value or b"null")) for r in records]
    for record, body in found:
        message = KafkaMessage(dict(record.headers), record.key, record.value or b"")
        event = from_kafka(message, JSONFormat())
        assert (event.get_id(), event.get_type(), event.get_data()) == (
            body["id"],
            body["type"],
            body["data"],
        )
    return found


def known_drift() -> list[Message]:
    """``TOTAL`` events of ``MODEL``: "x" shifts by +1 sd from event ``DRIFT_AT``, "y" never."""
    rng = np.random.default_rng(20261123)
    x = rng.normal(0.0, 1.0, TOTAL)
    y = rng.normal(5.0, 2.0, TOTAL)
    x[DRIFT_AT:] += 1.0
    return events(MODEL, x, y)


def drift_config(
    bootstrap: str, topics: Topics, group: str, client: str, **consumer: int
) -> Config:
    return daemon_config(
        bootstrap,
        topics,
        group,
        consumer=consumer,
        detection={"warmup_events": WARMUP, "window_size": WINDOW},
        client=client,
    )


def assert_known_drift_detected(alerts: list[tuple[Record, dict[str, Any]]], topic: str) -> None:
    for record, alert in alerts:
        assert record.key == MODEL.encode()
        assert alert["specversion"] == "1.0"
        assert alert["type"] == ALERT_TYPE
        assert alert["id"] == alert["data"]["id"]
        assert alert["source"] == f"monitord/{MODEL}"
        assert alert["subject"] == f"{MODEL}/{VERSION}"
        assert alert["data"]["model"] == MODEL
        assert alert["data"]["feature"] != "y", f"y never drifted: {alert}"
        for span in alert["data"]["offsets"]:
            assert span["topic"] == topic
            assert span["partition"] == 0
            assert DRIFT_AT <= span["first_offset"] <= span["last_offset"] < TOTAL, alert
    ks_x = [
        a["data"] for _, a in alerts if (a["data"]["feature"], a["data"]["detector"]) == ("x", "ks")
    ]
    # The first window entirely after the shift fires, and the drift never resolves.
    assert [a["status"] for a in ks_x] == ["firing"]
    first_drifted = {
        "topic": topic,
        "partition": 0,
        "first_offset": DRIFT_AT,
        "last_offset": DRIFT_AT + WINDOW - 1,
    }
    assert ks_x[0]["offsets"] == [first_drifted]
    assert ks_x[0]["offset"]["last_offset"] == DRIFT_AT + WINDOW - 1
    assert ks_x[0]["statistic"] > ks_x[0]["threshold"]


@pytest.mark.kafka
def test_known_drift_publishes_alerts_and_one_retrain_request(
    broker: EmbeddedBroker,
    topics: Topics,
    unique_name: Callable[[str], str],
    daemons: Callable[[Config], Daemon],
    kafka_client: str,
) -> None:
    ensure_topics(broker.bootstrap, {topics.events: 1})
    messages = known_drift()
    # At most warmup_events per poll: see test_reference_is_exactly_the_warmup_events.
    daemon = daemons(
        drift_config(
            broker.bootstrap, topics, unique_name("group"), kafka_client, max_poll_records=WARMUP
        )
    )
    # The reference first, so that the batch completing the warm-up holds nothing else.
    produce(broker.bootstrap, topics.events, messages[:WARMUP])
    assert step_until(daemon, WARMUP) == []
    assert not daemon.monitor.versions[(MODEL, VERSION)].warming_up
    produce(broker.bootstrap, topics.events, messages[WARMUP:])
    outputs = step_until(daemon, TOTAL)

    assert daemon.stats.events == TOTAL
    assert daemon.stats.per_model == Counter({MODEL: TOTAL})
    assert not daemon.stats.bad_records
    alerts = cloudevents(broker.bootstrap, topics.alerts)
    triggers = cloudevents(broker.bootstrap, topics.triggers)
    assert_known_drift_detected(alerts, topics.events)
    assert daemon.stats.alerts_firing == sum(a["data"]["status"] == "firing" for _, a in alerts)
    assert daemon.stats.triggers == 1
    assert {o.id for o in outputs} == {e["id"] for _, e in alerts + triggers}

    [(record, trigger)] = triggers
    assert record.key == MODEL.encode()
    assert trigger["specversion"] == "1.0"
    assert trigger["type"] == RETRAIN_TYPE
    assert trigger["source"] == f"monitord/{MODEL}"
    assert trigger["subject"] == f"{MODEL}/{VERSION}"
    data = trigger["data"]
    assert "x" in data["drifted_features"]
    assert "y" not in data["drifted_features"]
    assert data["idempotency_key"] == trigger["id"] == data["id"]
    assert data["reason"] == "drift"
    assert data["offsets"]
    for span in [*data["offsets"], data["offset"]]:
        assert span["topic"] == topics.events
        assert DRIFT_AT <= span["first_offset"] <= span["last_offset"] < TOTAL, data

    # A second daemon in a new group replays the topic: the same outputs, the same ids.
    again = daemons(
        drift_config(
            broker.bootstrap, topics, unique_name("group"), kafka_client, max_poll_records=WARMUP
        )
    )
    replayed = step_until(again, TOTAL)
    assert again.stats.events == TOTAL
    assert sorted(o.id for o in replayed) == sorted(o.id for o in outputs)
    assert sorted(e["id"] for _, e in cloudevents(broker.bootstrap, topics.alerts)) == sorted(
        [e["id"] for _, e in alerts] * 2
    )
    assert (
        sorted(e["id"] for _, e in cloudevents(broker.bootstrap, topics.triggers))
        == [trigger["id"]] * 2
    )


@pytest.mark.kafka
def test_reference_is_exactly_the_warmup_events(
    broker: EmbeddedBroker,
    topics: Topics,
    unique_name: Callable[[str], str],
    daemons: Callable[[Config], Daemon],
    kafka_client: str,
) -> None:
    # Everything is in the topic before the daemon joins, so its first poll spans the
    # reference, the stationary stretch and the drift (the default max_poll_records).
    ensure_topics(broker.bootstrap, {topics.events: 1})
    produce(broker.bootstrap, topics.events, known_drift())
    daemon = daemons(drift_config(broker.bootstrap, topics, unique_name("group"), kafka_client))
    step_until(daemon, TOTAL)

    assert_known_drift_detected(cloudevents(broker.bootstrap, topics.alerts), topics.events)


@pytest.mark.kafka
def test_bad_records_are_dead_lettered_and_processing_continues(
    broker: EmbeddedBroker,
    topics: Topics,
    unique_name: Callable[[str], str],
    daemons: Callable[[Config], Daemon],
    kafka_client: str,
) -> None:
    ensure_topics(broker.bootstrap, {topics.events: 2})
    config = daemon_config(
        broker.bootstrap,
        topics,
        unique_name("group"),
        detection={"warmup_events": 200, "window_size": 100},
        events={"max_event_bytes": 400},
        client=kafka_client,
    )
    rng = np.random.default_rng(7)
    good = events(MODEL, rng.normal(size=500), rng.normal(size=500))
    producer_headers = [("producer", b"test-suite")]
    daemon = daemons(config)
    # Warm up first: the model's "x" is then known to be numeric.
    produce(broker.bootstrap, topics.events, good[:200], producer_headers)
    step_until(daemon, 200)
    assert not daemon.monitor.versions[(MODEL, VERSION)].warming_up

    key = MODEL.encode()
    bad: dict[bytes, tuple[bytes | None, str]] = {
        b'{"model": "pricing-model", "features": ': (None, "invalid_json"),
        b'[{"model": "pricing-model"}]': (None, "not_an_object"),
        b'{"model_version": "3", "features": {"x": 1.0, "y": 2.0}}': (None, "missing_model"),
        event(9001, 0.5, 0.5).replace(b'"x":0.5', b'"x":"abc"'): (key, "wrong_type"),
        orjson.dumps(
            {
                "model": MODEL,
                "model_version": VERSION,
                "features": {"x": 0.1, "y": 0.2},
                "note": "z" * 500,
            }
        ): (key, "oversize"),
    }
    assert b'"x":"abc"' in next(v for v, (_, r) in bad.items() if r == "wrong_type")
    produce(
        broker.bootstrap, topics.events, [(k, v) for v, (k, _) in bad.items()], producer_headers
    )
    produce(broker.bootstrap, topics.events, good[200:], producer_headers)
    step_until(daemon, len(good) + len(bad))

    assert daemon.stats.events == len(good) + len(bad)
    assert daemon.stats.bad_records == Counter(reason for _, reason in bad.values())
    assert daemon.stats.per_model == Counter({MODEL: len(good)})
    detectors = daemon.monitor.versions[(MODEL, VERSION)].detectors
    assert detectors is not None
    assert detectors.numeric is not None
    assert detectors.numeric.rows_seen == len(good) - 200  # every good event after the bad ones

    produced = {r.value: r for r in read_topic(broker.bootstrap, topics.events, timeout_s=10)}
    dead = read_topic(broker.bootstrap, topics.dead_letters, timeout_s=10)
    assert sorted(r.value or b"" for r in dead) == sorted(bad)
    for letter in dead:
        assert letter.value is not None
        original = produced[letter.value]
        expected_key, reason = bad[letter.value]
        assert letter.key == expected_key
        assert letter.headers[0] == ("producer", b"test-suite")  # the original headers first
        headers = dict(letter.headers)
        assert headers["monitord.error.reason"] == reason.encode()
        assert headers["monitord.error.detail"]
        assert headers["monitord.source.topic"] == topics.events.encode()
        assert headers["monitord.source.partition"] == str(original.partition).encode()
        assert headers["monitord.source.offset"] == str(original.offset).encode()
        # Kafka Connect's dead-letter headers, which DLQ tooling reads.
        assert headers["__connect.errors.topic"] == topics.events.encode()
        assert headers["__connect.errors.partition"] == str(original.partition).encode()
        assert headers["__connect.errors.offset"] == str(original.offset).encode()
        assert headers["__connect.errors.connector.name"] == config.kafka.group_id.encode()
        assert headers["__connect.errors.exception.class.name"] == (
            f"monitord.events.BadRecord.{reason}".encode()
        )
        message = headers["__connect.errors.exception.message"]
        assert message == f"{reason}: ".encode() + headers["monitord.error.detail"]


@pytest.mark.kafka
def test_a_record_too_large_for_the_producer_is_dead_lettered_cut(
    broker: EmbeddedBroker,
    topics: Topics,
    unique_name: Callable[[str], str],
    daemons: Callable[[Config], Daemon],
    kafka_client: str,
) -> None:
    """Once the dead-letter producer refused it (MessageSizeTooLargeError, exit 3), at every
    restart: the record stopped its partition for good."""
    ensure_topics(broker.bootstrap, {topics.events: 1})
    config = daemon_config(broker.bootstrap, topics, unique_name("group"), client=kafka_client)
    huge = b'{"model": "pricing-model", "features": {"x": 1}, "pad": "' + b"p" * 1_500_000 + b'"}'
    good = events(MODEL, np.zeros(3), np.zeros(3))
    with KafkaSink(
        broker.bootstrap, settings=KafkaProducerSettings(max_request_size=4 << 20)
    ) as sink:
        for key, value in [good[0], (b"big", huge), good[1], good[2]]:
            sink.send(topics.events, key, value)
        sink.flush(timeout_s=20)
    daemon = daemons(config)
    step_until(daemon, 4)
    assert daemon.stats.bad_records == Counter({"oversize": 1})
    assert daemon.stats.per_model == Counter({MODEL: 3})
    (letter,) = read_topic(broker.bootstrap, topics.dead_letters, timeout_s=10)
    headers = dict(letter.headers)
    assert headers["monitord.dead_letter.truncated"] == b"value"
    assert headers["monitord.source.value_bytes"] == str(len(huge)).encode()
    assert headers["monitord.source.offset"] == b"1"
    assert letter.key == b"big"
    assert letter.value is not None
    assert huge.startswith(letter.value)
    assert len(letter.value) > 1_000_000


class PollRecorder:
    """Remembers every record a source's `poll` hands out (set as that source's `poll`)."""

    def __init__(self, inner: Source) -> None:
        self._poll = inner.poll
        self.records: list[Record] = []

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        polled = self._poll(timeout_s, max_records)
        self.records += flatten(polled)
        return polled


@pytest.mark.kafka
def test_restart_resumes_from_committed_offsets(
    broker: EmbeddedBroker,
    topics: Topics,
    unique_name: Callable[[str], str],
    daemons: Callable[[Config], Daemon],
    monkeypatch: pytest.MonkeyPatch,
    kafka_client: str,
) -> None:
    ensure_topics(broker.bootstrap, {topics.events: 3})
    config = daemon_config(broker.bootstrap, topics, unique_name("group"), client=kafka_client)
    rng = np.random.default_rng(11)
    models = ("model-a", "model-b", "model-c", "model-d")  # keys spread over the partitions
    messages = [
        (model.encode(), event(i, float(rng.normal()), float(rng.normal()), model))
        for i in range(500)
        for model in [models[i % len(models)]]
    ]
    before, after = messages[:300], messages[300:]

    produce(broker.bootstrap, topics.events, before)
    first = daemons(config)
    step_until(first, len(before))
    assert first.stats.events == len(before)
    first.close()

    produce(broker.bootstrap, topics.events, after)
    second = daemons(config)
    seen = PollRecorder(second.source)
    monkeypatch.setattr(second.source, "poll", seen.poll)
    step_until(second, len(after))
    assert second.step(0.5)[0] == 0  # nothing old arrives late either

    assert second.stats.events == len(after)
    assert sorted(r.value or b"" for r in seen.records) == sorted(v for _, v in after)


def test_unreachable_broker_fails_startup_with_its_address(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    path = tmp_path / "monitord.toml"
    path.write_text(f'[kafka]\nbootstrap_servers = "{bootstrap}"\nconnect_timeout_s = 2.0\n')

    started = time.monotonic()
    code = main(["run", "--config", str(path)])
    elapsed = time.monotonic() - started

    err = capsys.readouterr().err
    assert code != 0
    assert bootstrap in err
    assert "Traceback" not in err
    assert elapsed < 30, "hang guard"


def test_the_confluent_client_without_its_extra_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # as if not installed
    path = tmp_path / "monitord.toml"
    bootstrap = f"127.0.0.1:{free_port()}"
    path.write_text(f'[kafka]\nclient = "confluent"\nbootstrap_servers = "{bootstrap}"\n')

    code = main(["run", "--config", str(path)])

    err = capsys.readouterr().err
    assert code != 0
    assert "kafka.client" in err
    assert "monitord[confluent]" in err
    assert "Traceback" not in err


def test_check_accepts_the_annotated_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(REPO / "config.toml")]) == 0
    out, err = capsys.readouterr()
    effective = json.loads(out)
    assert effective["kafka"]["bootstrap_servers"] == "127.0.0.1:9092"
    assert "is valid" in err


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        pytest.param("[detection]\nwindow_sise = 500\n", "detection.window_sise", id="typo"),
        pytest.param(
            '[kafka]\nauto_offset_reset = "newest"\n', "kafka.auto_offset_reset", id="choice"
        ),
        pytest.param(
            "[kafka.consumer]\nsession_timeout_ms = 0\n",
            "kafka.consumer.session_timeout_ms",
            id="range",
        ),
        pytest.param('[kafka]\nsasl_password = "hunter2"\n', "kafka.sasl_password", id="secret"),
        pytest.param(
            "[detection]\nwindow_size = 100\nwindow_step = 200\n", "window_step", id="step"
        ),
        pytest.param("[kafka\n", "not valid TOML", id="toml"),
        pytest.param(
            "[kafka.consumer]\nsession_timeout_ms = 3000\nheartbeat_interval_ms = 3000\n",
            "heartbeat_interval_ms",
            id="heartbeat",
        ),
        pytest.param(
            '[kafka]\nsecurity_protocol = "SASL_SSL"\n',
            "sasl_mechanism",
            id="sasl",
        ),
    ],
)
def test_check_rejects_a_bad_config_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str
) -> None:
    path = tmp_path / "monitord.toml"
    path.write_text(toml)

    code = main(["check", "--config", str(path)])

    err = capsys.readouterr().err
    assert code != 0
    assert key in err
    assert "Traceback" not in err
    assert "hunter2" not in err
