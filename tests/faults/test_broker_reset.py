"""Offsets that cannot be right, and readiness that follows the broker (issue 16).

A broker that comes back without its log, or a checkpoint offset past the end of its
partition, must not stall the daemon silently: each reset is an error log line and a
counted metric, and reading goes on where `kafka.auto_offset_reset` says. `/readyz` turns
503 within seconds of the broker dying, and says why.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker
from connectors.kafka import ensure_topics
from connectors.stream import TopicPartition
from monitord.checkpoint import LocalStore
from tests.faults.harness import (
    Offsets,
    Stream,
    admin_url,
    daemon_config,
    daemons,
    get,
    until,
)

READY_WITHIN_S = 5.0
"""How soon after the broker dies `/readyz` must say so (the issue's bound)."""


def metric(url: str, name: str) -> dict[str, float]:
    """Samples of metric ``name`` at ``url``/metrics: label text (``""`` if none) -> value."""
    _, body = get(url + "/metrics")
    found: dict[str, float] = {}
    for line in body.decode().splitlines():
        match = re.fullmatch(rf"{name}(\{{.*\}})? (\S+)", line)
        if match:
            found[match.group(1) or ""] = float(match.group(2))
    return found


def consumed(url: str) -> float:
    return metric(url, "monitord_events_consumed_total").get("", 0.0)


def resets(url: str, topic: str) -> dict[int, float]:
    """``monitord_offset_resets_total`` per partition of ``topic`` (reason beyond_end)."""
    by_partition: dict[int, float] = {}
    for labels, value in metric(url, "monitord_offset_resets_total").items():
        if f'topic="{topic}"' in labels and 'reason="beyond_end"' in labels:
            partition = re.search(r'partition="(\d+)"', labels)
            assert partition is not None, labels
            by_partition[int(partition.group(1))] = value
    return by_partition


def error_lines(log: Path) -> list[dict[str, object]]:
    """The daemon's JSON log lines at error level."""
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") == "error":
            lines.append(entry)
    return lines


def reset_logged(log: Path, tp: TopicPartition, offset: int) -> bool:
    """An error line names the partition, the offset it could not read from, and the rule."""
    return any(
        str(tp) in str(entry["message"])
        and f"offset {offset} " in str(entry["message"])
        and "auto_offset_reset" in str(entry["message"])
        for entry in error_lines(log)
    )


def output_topics(group: str) -> dict[str, int]:
    return dict.fromkeys((f"{group}.dead-letter", f"{group}.alerts", f"{group}.retrain"), 1)


@pytest.mark.kafka
def test_a_broker_restarted_empty_is_read_again_from_its_start(
    tmp_path: Path, own_broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    port = own_broker.port
    before = Stream(unique_name("events"), partitions=2, models=2, per_model=3000)
    # After the restart: fewer records per partition than the checkpoints' offsets (3000).
    after = dataclasses.replace(before, per_model=1000, seed=7)
    group = unique_name("group")
    config = daemon_config(
        tmp_path,
        "daemon",
        own_broker.bootstrap,
        before,
        group,
        checkpoint={"interval_s": 1.0},
        client=kafka_client,
    )
    offsets = Offsets(own_broker.bootstrap)
    before.produce(own_broker.bootstrap)
    with daemons() as start:
        daemon = start(config, tmp_path / "daemon.log")
        url = admin_url(daemon)
        until(lambda: offsets.committed(group, before) == before.total, "committed", 120, daemon)
        offsets.close()

        own_broker.kill()
        with EmbeddedBroker(port, log_path=tmp_path / "tansu-2.log") as fresh:
            ensure_topics(fresh.bootstrap, {before.topic: 2, **output_topics(group)})
            after.produce(fresh.bootstrap)
            expected = before.total + after.total
            # Windows close after the restart: their outputs must get through a producer
            # whose id the new broker does not know (it is replaced) before reading goes on.
            until(lambda: consumed(url) >= expected, "every record after the restart", 120, daemon)
            until(lambda: len(resets(url, before.topic)) == 2, "resets counted", 30, daemon)
            assert consumed(url) == expected  # nothing skipped, nothing read twice
            assert resets(url, before.topic) == {0: 1.0, 1: 1.0}
            for partition in (0, 1):
                tp = TopicPartition(before.topic, partition)
                assert reset_logged(daemon.log, tp, 3000), daemon.tail()
            assert daemon.alive(), daemon.tail()


@pytest.mark.kafka
def test_a_checkpoint_past_the_end_follows_auto_offset_reset_latest(
    tmp_path: Path, broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    stream = Stream(unique_name("events"), partitions=2, models=2, per_model=1000)
    group = unique_name("group")
    config = daemon_config(
        tmp_path,
        "daemon",
        broker.bootstrap,
        stream,
        group,
        kafka={"auto_offset_reset": "latest"},
        checkpoint={"interval_s": 1.0},
        client=kafka_client,
    )
    offsets = Offsets(broker.bootstrap)
    stream.produce(broker.bootstrap)
    with daemons() as start:
        first = start(config, tmp_path / "first.log")
        until(lambda: offsets.committed(group, stream) == stream.total, "committed", 120, first)
        first.kill()
    offsets.close()

    # The checkpoints now claim a million more records than either partition holds.
    store = LocalStore(tmp_path / "daemon-state" / "checkpoints.sqlite")
    far = 1_000_000
    for partition in (0, 1):
        checkpoint = store.load(TopicPartition(stream.topic, partition))
        assert checkpoint is not None
        assert checkpoint.next_offset == 1000
        store.save([dataclasses.replace(checkpoint, next_offset=far + 1000)], [])
    store.close()

    more = dataclasses.replace(stream, per_model=200, seed=8)
    with daemons() as start:
        second = start(config, tmp_path / "second.log")
        url = admin_url(second)
        # "latest" reads from the end at the reset: produce only once it is done.
        until(lambda: len(resets(url, stream.topic)) == 2, "resets counted", 60, second)
        assert consumed(url) == 0
        more.produce(broker.bootstrap)
        until(lambda: consumed(url) >= more.total, "every record after the reset", 60, second)
        assert consumed(url) == more.total
        assert resets(url, stream.topic) == {0: 1.0, 1: 1.0}
        for partition in (0, 1):
            tp = TopicPartition(stream.topic, partition)
            assert reset_logged(second.log, tp, far + 1000), second.tail()


@pytest.mark.kafka
def test_readiness_fails_within_seconds_of_the_broker_dying(
    tmp_path: Path, own_broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    port = own_broker.port
    stream = Stream(unique_name("events"), partitions=1, models=1, per_model=500)
    stream.produce(own_broker.bootstrap)
    group = unique_name("group")
    config = daemon_config(
        tmp_path, "daemon", own_broker.bootstrap, stream, group, client=kafka_client
    )
    with daemons() as start:
        daemon = start(config, tmp_path / "daemon.log")
        url = admin_url(daemon)
        until(lambda: get(url + "/readyz")[0] == 200, "ready", 60, daemon)

        died = time.monotonic()
        own_broker.kill()
        until(lambda: get(url + "/readyz")[0] == 503, "not ready", 60, daemon)
        noticed_s = time.monotonic() - died
        status, body = get(url + "/readyz")
        assert status == 503
        assert any(r.startswith("broker:") for r in json.loads(body)["reasons"]), body
        assert noticed_s < READY_WITHIN_S, f"/readyz took {noticed_s:.1f}s to notice"

        with EmbeddedBroker(port, log_path=tmp_path / "tansu-2.log") as fresh:
            ensure_topics(fresh.bootstrap, {stream.topic: 1, **output_topics(group)})
            until(lambda: get(url + "/readyz")[0] == 200, "ready after the restart", 90, daemon)


def not_ready_reasons(url: str) -> list[str]:
    status, body = get(url + "/readyz")
    return [] if status == 200 else list(json.loads(body)["reasons"])


@pytest.mark.kafka
def test_a_missing_input_topic_is_not_ready_until_it_exists(
    tmp_path: Path, broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    stream = Stream(unique_name("events"), partitions=1, models=1, per_model=300)
    group = unique_name("group")
    config = daemon_config(tmp_path, "daemon", broker.bootstrap, stream, group, client=kafka_client)
    with daemons() as start:
        daemon = start(config, tmp_path / "daemon.log")  # before the topic exists
        url = admin_url(daemon)
        until(
            lambda: any(repr(stream.topic) in r for r in not_ready_reasons(url)),
            "/readyz naming the missing topic",
            30,
            daemon,
        )
        assert get(url + "/readyz")[0] == 503

        stream.produce(broker.bootstrap)  # creates the topic
        until(lambda: consumed(url) == stream.total, "the topic read once it exists", 60, daemon)
        until(lambda: get(url + "/readyz")[0] == 200, "ready", 30, daemon)
