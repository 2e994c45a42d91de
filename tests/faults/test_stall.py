"""A broker stalled with SIGSTOP for 30 s: the daemon reports not ready, waits it out and
loses or repeats nothing but deterministic ids; /readyz follows the broker (issues 6, 7)."""

from __future__ import annotations

import json
import threading
import time
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

STALL_S = 30.0


@pytest.mark.kafka
@pytest.mark.slow
def test_a_stalled_broker_is_waited_out_and_readiness_follows_it(
    tmp_path: Path, own_broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    bootstrap = own_broker.bootstrap
    stream = Stream(unique_name("events"), partitions=2, models=2, per_model=30_000)
    half = stream.total // 2
    stalled_group, reference_group = unique_name("stalled"), unique_name("reference")
    stalled = daemon_config(
        tmp_path, "stalled", bootstrap, stream, stalled_group, client=kafka_client
    )
    reference = reference_config(tmp_path, bootstrap, stream, reference_group, client=kafka_client)
    offsets = Offsets(bootstrap)
    stream.produce(bootstrap, 0, half)
    with daemons() as start:
        daemon = start(stalled, tmp_path / "stalled.log")
        url = admin_url(daemon)
        until(lambda: offsets.committed(stalled_group, stream) == half, "half", 120, daemon)
        until(lambda: get(url + "/readyz")[0] == 200, "ready", 60, daemon)

        own_broker.pause()
        paused_at = time.monotonic()
        until(lambda: get(url + "/readyz")[0] == 503, "not ready during the stall", 25, daemon)
        _, body = get(url + "/readyz")
        assert any(r.startswith("broker:") for r in json.loads(body)["reasons"]), body
        assert get(url + "/livez")[0] == 200  # waiting on purpose is alive
        # The fault lasts 30 s from the pause: its duration, not a wait for a condition.
        threading.Event().wait(max(0.0, STALL_S - (time.monotonic() - paused_at)))
        own_broker.resume()

        until(lambda: get(url + "/readyz")[0] == 200, "ready after the stall", 60, daemon)
        stream.produce(bootstrap, half)
        finish(daemon, offsets, stalled_group, stream)
        finish(start(reference, tmp_path / "reference.log"), offsets, reference_group, stream)
    offsets.close()
    expected = published(bootstrap, reference_group)
    assert expected
    assert_same_outputs(published(bootstrap, stalled_group), expected)
