"""Delayed labels with ``kafka.repartition`` on the real broker: input not keyed by model is
forwarded through the internal topic, labels keyed by model come minutes later, shuffled,
some twice. Every label joins once, after its prediction is read back from the internal
topic, across a restart too, with the performance outputs of a run over the same events
keyed by model."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka.partitioner.default import murmur2

from connectors.broker import EmbeddedBroker
from connectors.kafka import KafkaSink, ensure_topics
from monitord.app import App
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from tests.faults.harness import FAST_CONSUMER, published

T0 = 1_700_000_000.0
PARTITIONS = 3
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Stream:
    """``models`` models, one event a second each, on two inference topics: ``keyed`` (key
    and partition by model, as a producer's default partitioner puts them) and
    ``unkeyed`` (round-robin, keyed by event id). Inputs are stationary; the label's rule
    moves at event ``change`` (concept drift, 10 % label noise). 5 % of the predictions
    are never labelled; the others' labels come up to ``max_delay_s`` later, shuffled over
    a minute, 3 % of them twice, keyed by model on the label topic."""

    keyed: str
    unkeyed: str
    labels: str
    models: int = 3
    per_model: int = 4000
    change: int = 2000
    max_delay_s: float = 300.0
    seed: int = 1313

    @cached_property
    def messages(self) -> list[tuple[str, int, bytes, bytes, int]]:
        """``(topic, partition, key, value, record time ms)`` in production order."""
        rng = np.random.default_rng(self.seed)
        n = self.per_model
        timed: list[tuple[float, str, int, bytes, bytes, int]] = []
        for m in range(self.models):
            model = f"m{m}"
            key = model.encode()
            home = model_partition(model)
            x = rng.uniform(0.0, 10.0, (n, 3))
            limit = np.where(np.arange(n) < self.change, 8.0, 5.5)
            truth = (x[:, 0] + x[:, 1] <= limit) ^ (rng.random(n) < 0.1)
            labelled = rng.random(n) >= 0.05
            delays = rng.uniform(1.0, self.max_delay_s, (2, n))
            jitter = rng.uniform(0.0, 60.0, (2, n))
            twice = rng.random(n) < 0.03
            for i in range(n):
                at = T0 + i
                event_id = f"{model}-{i}"
                event = {
                    "model": model,
                    "model_version": "1",
                    "event_id": event_id,
                    "timestamp": at,
                    "features": {"a": x[i, 0], "b": x[i, 1], "c": x[i, 2]},
                    "prediction": int(x[i, 0] + x[i, 1] <= 8.0),
                }
                value = orjson.dumps(event, option=orjson.OPT_SERIALIZE_NUMPY)
                stamp = round(at * 1000)
                timed.append((at, self.keyed, home, key, value, stamp))
                spread = (m * n + i) % PARTITIONS
                timed.append((at, self.unkeyed, spread, event_id.encode(), value, stamp))
                if not labelled[i]:
                    continue
                for copy in range(2 if twice[i] else 1):
                    when = at + float(delays[copy, i])
                    label = orjson.dumps({"event_id": event_id, "label": bool(truth[i])})
                    arrives = when + float(jitter[copy, i])
                    timed.append((arrives, self.labels, home, key, label, round(when * 1000)))
        timed.sort(key=lambda message: message[0])
        return [message[1:] for message in timed]

    def produce(self, bootstrap: str) -> None:
        topics = (self.keyed, self.unkeyed, self.labels)
        ensure_topics(bootstrap, dict.fromkeys(topics, PARTITIONS))
        with KafkaSink(bootstrap) as sink:
            for topic, partition, key, value, stamp in self.messages:
                sink.send(topic, key, value, partition=partition, timestamp_ms=stamp)
            sink.flush(timeout_s=60)

    def labelled(self) -> dict[tuple[str, str], int]:
        """Per version, how many predictions have a label (once, whatever its copies)."""
        ids: dict[str, set[str]] = {}
        for topic, _, key, value, _ in self.messages:
            if topic == self.labels:
                ids.setdefault(key.decode(), set()).add(orjson.loads(value)["event_id"])
        return {(model, "1"): len(found) for model, found in sorted(ids.items())}


def model_partition(model: str) -> int:
    """The partition of a record keyed by ``model``: the Java client's default partitioner
    (murmur2), which producers of labels keyed by model use."""
    hashed: int = murmur2(model.encode())
    return (hashed & 0x7FFFFFFF) % PARTITIONS


def config(
    bootstrap: str,
    group: str,
    topic: str,
    labels: str,
    client: str,
    state_dir: Path,
    repartition: bool,
) -> Config:
    return parse_config(
        {
            "state_dir": str(state_dir),
            "kafka": {
                "client": client,
                "bootstrap_servers": bootstrap,
                "input_topics": [topic],
                "group_id": group,
                "repartition": repartition,
                "dead_letter_topic": f"{group}.dead-letter",
                "alert_topic": f"{group}.alerts",
                "trigger_topic": f"{group}.retrain",
                "connect_timeout_s": 5.0,
                "consumer": {**FAST_CONSUMER, "max_poll_records": 200},
            },
            "detection": {"warmup_events": 2000, "window_size": 1000},
            "labels": {"topics": [labels]},
            "checkpoint": {"store": "local", "interval_events": 1000, "interval_s": 0.5},
        },
        environ={},
    )


@dataclass
class Run:
    """What a run came to: per version, its performance rows; the join's outcomes; the
    most labels that waited for their prediction after a batch."""

    rows: dict[tuple[str, str], int]
    outcomes: Counter[tuple[str, str]]
    owners: dict[str, tuple[str, int]]  # model -> the partition its state lives with
    early: int


@pytest.fixture
def apps() -> Iterator[list[App]]:
    """Apps closed (each daemon leaving its group) when the test ends."""
    built: list[App] = []
    yield built
    for app in built:
        app.close()


def rows(daemon: Daemon) -> dict[tuple[str, str], int]:
    return {key: found.rows for key, found in daemon.performance.versions.items()}


def run(daemon: Daemon, done: Callable[[Daemon], bool], events: int) -> Run:
    """Step ``daemon`` until ``done``, checking that it monitors at most ``events`` events
    (none twice)."""
    deadline = time.monotonic() + TIMEOUT_S
    early = 0
    while not done(daemon):
        assert time.monotonic() < deadline, (rows(daemon), daemon.status()["labels"])
        daemon.step(0.5)
        # Every label here is stamped after its prediction: one waiting as an early label
        # was folded before its prediction was read.
        early = max(early, sum(len(store.early) for store in daemon.joins.stores.values()))
        assert sum(daemon.stats.per_model.values()) <= events
    owners = {
        key[0]: (found.owner.topic, found.owner.partition)
        for key, found in daemon.monitor.versions.items()
    }
    return Run(rows(daemon), daemon.joins.take_counts(), owners, early)


def finished(expected: dict[tuple[str, str], int], events: int) -> Callable[[Daemon], bool]:
    """Every labelled prediction joined, ``events`` events monitored (by this daemon), no
    label record held."""

    def check(daemon: Daemon) -> bool:
        return (
            rows(daemon) == expected
            and sum(daemon.stats.per_model.values()) == events
            and daemon.joins.gate.held() == 0
        )

    return check


def uninterrupted(apps: list[App], settings: Config, stream: Stream) -> Run:
    apps.append(App())
    events = stream.models * stream.per_model
    return run(apps[-1].build_daemon(settings), finished(stream.labelled(), events), events)


def brief(outputs: dict[str, dict[str, Any]]) -> Counter[tuple[Any, ...]]:
    """Each output's rule, model, status and rows (its id and offsets name the topic)."""
    return Counter(
        (
            dict(data["labels"])["alertname"] if "labels" in data else data["reason"],
            data["model"],
            data.get("status"),
            data["first_row"],
            data["row"],
        )
        for data in outputs.values()
    )


def configs(
    tmp_path: Path,
    bootstrap: str,
    stream: Stream,
    unique_name: Callable[[str], str],
    client: str,
) -> dict[str, Config]:
    """The keyed run, the repartitioned one, and the repartitioned one to restart."""
    built = {}
    for name in ("keyed", "repartitioned", "restarted"):
        topic = stream.keyed if name == "keyed" else stream.unkeyed
        group = unique_name(name)
        built[name] = config(
            bootstrap, group, topic, stream.labels, client, tmp_path / name, name != "keyed"
        )
    return built


def produced(
    tmp_path: Path,
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    kafka_client: str,
) -> tuple[Stream, dict[str, Config]]:
    """A stream on fresh topics, produced, and the settings of the daemons reading it."""
    stream = Stream(unique_name("keyed"), unique_name("unkeyed"), unique_name("labels"))
    stream.produce(broker.bootstrap)
    return stream, configs(tmp_path, broker.bootstrap, stream, unique_name, kafka_client)


@pytest.mark.kafka
def test_labels_join_once_through_the_repartition_topic_across_a_restart(
    tmp_path: Path,
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    apps: list[App],
    kafka_client: str,
) -> None:
    stream, settings = produced(tmp_path, broker, unique_name, kafka_client)
    expected = stream.labelled()
    events = stream.models * stream.per_model
    through = uninterrupted(apps, settings["repartitioned"], stream)

    # Each model's state lives with the internal partition its labels are keyed to (the
    # Java client's partition of its name): on several replicas they meet on one.
    internal = settings["repartitioned"].kafka.internal_topic
    homes = {f"m{m}": model_partition(f"m{m}") for m in range(stream.models)}
    assert through.owners == {model: (internal, p) for model, p in homes.items()}

    # Every label joined once (its copies counted as duplicates), none an orphan or late.
    copies = sum(1 for topic, *_ in stream.messages if topic == stream.labels)
    copies -= sum(expected.values())
    assert through.rows == expected
    assert through.outcomes == Counter(
        {**{(model, "joined"): n for (model, _), n in expected.items()}, ("", "duplicate"): copies}
    )

    # Stopped (as on SIGTERM) with about a third of the labels joined, then a fresh daemon
    # over the same group and checkpoints: nothing joined twice, nothing lost.
    first = App()
    apps.append(first)
    third = sum(expected.values()) // 3
    stopped = first.build_daemon(settings["restarted"])
    before = run(stopped, lambda d: sum(rows(d).values()) >= third, events)
    monitored = sum(stopped.stats.per_model.values())
    first.close()
    assert 0 < monitored < events
    apps.append(App())
    after = run(
        apps[-1].build_daemon(settings["restarted"]),
        finished(expected, events - monitored),
        events - monitored,
    )
    assert after.rows == expected
    assert before.outcomes + after.outcomes == through.outcomes
    # No label folded before its prediction was read back, so they join in the same order:
    # the same performance windows, the same outputs.
    assert through.early == before.early == after.early == 0
    once, again = (settings[name].kafka.group_id for name in ("repartitioned", "restarted"))
    assert brief(published(broker.bootstrap, again)) == brief(published(broker.bootstrap, once))


@pytest.mark.kafka
def test_labels_through_the_repartition_topic_give_the_outputs_of_keyed_input(
    tmp_path: Path,
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    apps: list[App],
    kafka_client: str,
) -> None:
    stream, settings = produced(tmp_path, broker, unique_name, kafka_client)
    without = uninterrupted(apps, settings["keyed"], stream)
    through = uninterrupted(apps, settings["repartitioned"], stream)
    assert without.rows == through.rows == stream.labelled()
    assert without.outcomes == through.outcomes
    assert without.early == 0
    # The same outputs: per model a degradation alert and a retrain request among them.
    outputs = brief(published(broker.bootstrap, settings["keyed"].kafka.group_id))
    models = {f"m{m}" for m in range(stream.models)}
    for rule in ("performance", "MonitordPerformanceDegraded"):
        assert {output[1] for output in outputs if output[0] == rule} == models, outputs
    assert brief(published(broker.bootstrap, settings["repartitioned"].kafka.group_id)) == outputs
    # No label folded before its prediction was read back from the internal topic.
    assert through.early == 0
