"""Failover: three daemons share a 6-partition topic through one consumer group with the
Kafka changelog store; one is killed, the others restore its partitions' state from the
changelog, and the outputs equal a single process's (issue 6)."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker
from tests.faults.harness import (
    Offsets,
    Stream,
    admin_url,
    assert_same_outputs,
    daemon_config,
    daemons,
    finish,
    get,
    published,
    reference_config,
    until,
)


def _assigned(url: str) -> list[str]:
    status, body = get(url + "/status")
    return list(json.loads(body)["assigned"]) if status == 200 else []


@pytest.mark.kafka
@pytest.mark.slow
def test_survivors_take_over_with_state_from_the_changelog(
    tmp_path: Path, broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    stream = Stream(unique_name("events"), partitions=6, models=6, per_model=16_000)
    half = stream.total // 2
    group, reference_group = unique_name("replicas"), unique_name("reference")
    checkpoint = {"store": "kafka", "interval_events": 4000, "interval_s": 1.0}
    configs = [
        daemon_config(
            tmp_path,
            f"replica{i}",
            broker.bootstrap,
            stream,
            group,
            checkpoint=checkpoint,
            client=kafka_client,
        )
        for i in range(3)
    ]
    reference = reference_config(
        tmp_path, broker.bootstrap, stream, reference_group, client=kafka_client
    )
    offsets = Offsets(broker.bootstrap)
    stream.produce(broker.bootstrap, 0, half)
    with daemons() as start:
        replicas = [start(config, tmp_path / f"replica{i}.log") for i, config in enumerate(configs)]
        urls = [admin_url(replica) for replica in replicas]
        # All three own partitions (two each), and the first half is processed.
        until(
            lambda: all(len(_assigned(url)) == 2 for url in urls),
            "three members with two partitions each",
            120,
            replicas,
        )
        until(lambda: offsets.committed(group, stream) == half, "the first half", 120, replicas)
        victim, survivors = replicas[0], replicas[1:]
        taken_over = set(_assigned(urls[0]))
        victim.kill()
        until(
            lambda: {p for url in urls[1:] for p in _assigned(url)} >= taken_over,
            "the survivors to own the victim's partitions",
            120,
            survivors,
        )
        stream.produce(broker.bootstrap, half)
        until(lambda: offsets.committed(group, stream) == stream.total, "the rest", 120, survivors)
        for survivor in survivors:
            survivor.signal(signal.SIGTERM)
        for survivor in survivors:
            assert survivor.process.wait(timeout=60) == 0, survivor.tail()
        restored = "".join(s.log.read_text() for s in survivors)
        assert "restored" in restored

        finish(start(reference, tmp_path / "reference.log"), offsets, reference_group, stream)
    offsets.close()
    expected = published(broker.bootstrap, reference_group)
    assert {data["model"] for data in expected.values()} == {f"m{i}" for i in range(6)}
    assert_same_outputs(published(broker.bootstrap, group), expected)
