"""Each model version is monitored against its own reference."""

from __future__ import annotations

import numpy as np
import orjson

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from monitord.config import parse_config
from monitord.daemon import Daemon
from monitord.outputs import KafkaPublisher


def _events(version: str, values: np.ndarray) -> list[bytes]:
    return [
        orjson.dumps({"model": "m", "model_version": version, "features": {"x": float(v)}})
        for v in values
    ]


def test_a_new_version_gets_its_own_reference_and_does_not_alert_against_the_old() -> None:
    rng = np.random.default_rng(21)
    # Version 2 is retrained on shifted data: against version 1's reference it would drift.
    v1 = _events("1", rng.normal(0.0, 1.0, 3000))
    v2 = _events("2", rng.normal(3.0, 1.0, 3000))
    values = v1 + v2
    records = [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(values)]
    config = parse_config({"detection": {"warmup_events": 1000, "window_size": 500}})
    sink = MemorySink()
    daemon = Daemon(
        config,
        MemorySource(records),
        sink,
        [KafkaPublisher(sink, "alerts", "retrain")],
        lambda m, v: None,
    )
    daemon.drain()
    versions = daemon.monitor.versions
    assert sorted(versions) == [("m", "1"), ("m", "2")]
    profiles = {key: monitor.profile for key, monitor in versions.items()}
    assert all(p is not None for p in profiles.values())
    assert profiles[("m", "1")].profile_id != profiles[("m", "2")].profile_id  # type: ignore[union-attr]
    assert profiles[("m", "2")].numeric_mean[0] > 2.5  # type: ignore[union-attr]
    assert sink.messages("alerts") == []
    assert sink.messages("retrain") == []
