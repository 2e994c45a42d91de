"""kill -9 at random points: the outputs of a crashed-and-restarted daemon equal an
uninterrupted run's (same ids, same detection rows and evidence), DESIGN.md section 5."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from connectors.broker import EmbeddedBroker
from tests.faults.harness import (
    FAST_CONSUMER,
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

KILLS = 10
STREAM_TIMEOUT_S = 180.0


@pytest.mark.kafka
@pytest.mark.slow
def test_kill9_at_random_points_changes_no_output(
    tmp_path: Path,
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    offsets: Offsets,
    kafka_client: str,
) -> None:
    stream = Stream(unique_name("events"), partitions=2, models=4, per_model=50_000)
    stream.produce(broker.bootstrap)
    reference_group, crashed_group = unique_name("reference"), unique_name("crashed")
    reference = reference_config(
        tmp_path, broker.bootstrap, stream, reference_group, client=kafka_client
    )
    crashed = daemon_config(
        tmp_path,
        "crashed",
        broker.bootstrap,
        stream,
        crashed_group,
        checkpoint={"store": "local", "interval_events": 7000, "interval_s": 2.0},
        # A killed member leaves the group when its session times out, and each restart
        # waits for that: keep it short.
        kafka={"consumer": {**FAST_CONSUMER, "session_timeout_ms": 3000}},
        client=kafka_client,
    )
    rng = np.random.default_rng(9)
    # Kill points: once the committed offsets pass each target, after a random extra delay.
    targets = [15_000 * k + int(rng.integers(0, 8_000)) for k in range(1, KILLS + 1)]
    pause = threading.Event()
    with daemons() as start:
        uninterrupted = start(reference, tmp_path / "reference.log")
        for target in targets:
            daemon = start(crashed, tmp_path / "crashed.log")
            until(
                lambda: offsets.committed(crashed_group, stream) >= target,  # noqa: B023
                f"{target} offsets committed",
                STREAM_TIMEOUT_S,
                daemon,
            )
            pause.wait(float(rng.uniform(0.0, 0.3)))  # the fault's timing, not a wait for it
            daemon.kill()
        last = start(crashed, tmp_path / "crashed.log")
        finish(uninterrupted, offsets, reference_group, stream)
        finish(last, offsets, crashed_group, stream)

    expected = published(broker.bootstrap, reference_group)
    assert sum(1 for data in expected.values() if "idempotency_key" in data) >= 4
    assert sum(1 for data in expected.values() if data.get("status") == "resolved") >= 4
    # The same ids, each with the same detection row, statistic and data range.
    assert_same_outputs(published(broker.bootstrap, crashed_group), expected)
