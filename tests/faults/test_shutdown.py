"""SIGTERM during heavy traffic: the daemon finishes its batch, flushes, checkpoints,
commits, leaves the group and exits 0 within the grace period; the checkpoint and the
committed offsets agree, so a successor folds every record exactly once (issue 6)."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition

from connectors.broker import EmbeddedBroker
from connectors.stream import TopicPartition
from monitord.checkpoint import LocalStore
from tests.faults.harness import (
    Offsets,
    Stream,
    assert_same_outputs,
    daemon_config,
    daemons,
    finish,
    published,
    reference_config,
    until,
)

GRACE_S = 15.0


@pytest.mark.kafka
@pytest.mark.slow
def test_sigterm_under_load_drains_within_the_grace_period(
    tmp_path: Path, broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    stream = Stream(unique_name("events"), partitions=2, models=4, per_model=40_000)
    group, reference_group = unique_name("stopped"), unique_name("reference")
    config = daemon_config(
        tmp_path,
        "stopped",
        broker.bootstrap,
        stream,
        group,
        shutdown={"grace_s": GRACE_S},
        checkpoint={"interval_events": 20_000},
        client=kafka_client,
    )
    reference = reference_config(
        tmp_path, broker.bootstrap, stream, reference_group, client=kafka_client
    )
    offsets = Offsets(broker.bootstrap)
    first = stream.total // 4
    stream.produce(broker.bootstrap, 0, first)
    producing = threading.Thread(target=stream.produce, args=(broker.bootstrap, first))
    with daemons() as start:
        daemon = start(config, tmp_path / "stopped.log")
        until(lambda: offsets.committed(group, stream) > 0, "a first commit", 120, daemon)
        producing.start()  # heavy traffic while the signal arrives
        until(lambda: offsets.committed(group, stream) >= first, "more progress", 120, daemon)
        daemon.signal(signal.SIGTERM)
        signalled = time.monotonic()
        code = daemon.process.wait(timeout=GRACE_S + 10)
        took = time.monotonic() - signalled
        assert code == 0, daemon.tail()
        assert took < GRACE_S, f"exited after {took:.1f}s"
        # The operator's log says why it stopped and what it did in all.
        messages = [
            str(json.loads(line).get("message", ""))
            for line in daemon.log.read_text().splitlines()
            if line.startswith("{")
        ]
        received = messages.index("SIGTERM received: draining within shutdown.grace_s (15s)")
        shutting = messages.index(
            "shutting down: checkpointing, leaving the consumer group, flushing outputs"
        )
        (stopped,) = [i for i, m in enumerate(messages) if m.startswith("stopped: ")]
        assert received < shutting < stopped, messages[-10:]
        producing.join(timeout=120)

        # The last checkpoint covers exactly what was committed.
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        partitions = [KafkaTopicPartition(stream.topic, p) for p in range(stream.partitions)]
        committed = admin.list_group_offsets({group: partitions})[group]
        admin.close()
        store = LocalStore(tmp_path / "stopped-state" / "checkpoints.sqlite")
        for ktp, offset in committed.items():
            checkpoint = store.load(TopicPartition(ktp.topic, ktp.partition))
            assert checkpoint is not None
            assert checkpoint.next_offset == offset.offset
        store.close()
        stopped_at = offsets.committed(group, stream)
        assert first <= stopped_at < stream.total

        finish(start(config, tmp_path / "successor.log"), offsets, group, stream, GRACE_S)
        finish(start(reference, tmp_path / "reference.log"), offsets, reference_group, stream)
    offsets.close()
    assert_same_outputs(
        published(broker.bootstrap, group), published(broker.bootstrap, reference_group)
    )
