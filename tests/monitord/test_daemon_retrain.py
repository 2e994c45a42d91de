"""Manual retrain requests reach the daemon's outputs on its next loop iteration."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from monitord.config import parse_config
from monitord.daemon import Daemon
from monitord.outputs import KafkaPublisher


def _daemon() -> tuple[Daemon, MemorySink]:
    rng = np.random.default_rng(2)
    events = [
        orjson.dumps({"model": "m", "model_version": "4", "features": {"x": float(v)}})
        for v in rng.normal(size=1200)
    ]
    config = parse_config({"detection": {"warmup_events": 1000, "window_size": 100}})
    source, sink = (
        MemorySource([Record("in", 0, i, b"m", v, 0) for i, v in enumerate(events)]),
        MemorySink(),
    )
    daemon = Daemon(
        config, source, sink, [KafkaPublisher(sink, "alerts", "retrain")], lambda m, v: None
    )
    return daemon, sink


def test_a_manual_request_is_published_on_the_next_iteration() -> None:
    daemon, sink = _daemon()
    with pytest.raises(ValueError, match="m"):
        daemon.policy.request_retrain("m", None, "new labels")  # no version seen yet
    daemon.drain()
    request_id = daemon.policy.request_retrain("m", None, "new labels arrived")
    polled, outputs = daemon.step(0.0)  # an idle iteration still hands requests out
    assert polled == 0
    assert [o.id for o in outputs] == [request_id]
    (message,) = sink.messages("retrain")
    event = orjson.loads(message.value)
    assert event["id"] == request_id
    assert event["data"]["reason"] == "manual"
    assert event["data"]["version"] == "4"
    assert event["data"]["detail"] == "new labels arrived"
    assert daemon.stats.triggers == 1
    assert daemon.step(0.0) == (0, [])  # handed out once
