"""Unkeyed input on a real broker: the daemon forwards it by model through the internal
topic, monitors each model on one partition, and folds every event once."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from connectors.broker import EmbeddedBroker
from connectors.kafka import partition_counts
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from tests.faults.harness import FAST_CONSUMER, Stream


@pytest.mark.kafka
def test_unkeyed_input_is_repartitioned_by_model(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], daemons: Callable[[Config], Daemon]
) -> None:
    stream = Stream(unique_name("events"), partitions=3, models=3, per_model=6000, keyed=False)
    stream.produce(broker.bootstrap)
    group = unique_name("group")
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": broker.bootstrap,
                "input_topics": [stream.topic],
                "group_id": group,
                "repartition": True,
                "dead_letter_topic": f"{group}.dead-letter",
                "alert_topic": f"{group}.alerts",
                "trigger_topic": f"{group}.retrain",
                "consumer": FAST_CONSUMER,
            },
            "detection": {"warmup_events": 2000, "window_size": 1000},
            "checkpoint": {"store": "none"},
        },
        environ={},
    )
    daemon = daemons(config)
    internal = f"{group}.repartition"
    assert partition_counts(broker.bootstrap, [internal]) == {internal: 3}
    deadline = time.monotonic() + 60
    outputs = []
    while sum(daemon.stats.per_model.values()) < stream.total:
        assert time.monotonic() < deadline, dict(daemon.stats.per_model)
        outputs += daemon.step(0.5)[1]
    # Every event was forwarded once and folded once, into one version per model.
    assert daemon.stats.per_model == {f"m{i}": 6000 for i in range(3)}
    assert daemon.stats.events == 2 * stream.total  # read once as input, once forwarded
    owners = {key[0]: monitor.owner for key, monitor in daemon.monitor.versions.items()}
    assert {owner.topic for owner in owners.values()} == {internal}
    assert {o.model for o in outputs} == {"m0", "m1", "m2"}  # each drifts in "x" and "y"
