"""The daemon reports to metrics, readiness and /status as it works (in-memory connectors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from monitord.admin import Health
from monitord.checkpoint import LocalStore
from monitord.config import parse_config
from monitord.daemon import Daemon
from monitord.metrics import DaemonMetrics
from monitord.outputs import KafkaPublisher


def _records() -> list[Record]:
    rng = np.random.default_rng(4)
    values = rng.normal(size=(3000, 2))
    values[2000:, 0] += 2.0
    events = [
        orjson.dumps({"model": "m", "timestamp": 1_700_000_000 + i, "features": {"x": a, "y": b}})
        for i, (a, b) in enumerate(values.tolist())
    ]
    events[10] = b"{broken"
    return [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(events)]


def _daemon(tmp_path: Path | None = None) -> tuple[Daemon, MemorySource, Health, DaemonMetrics]:
    config = parse_config(
        {
            "detection": {"warmup_events": 1000, "window_size": 500},
            "kafka": {"consumer": {"max_poll_records": 1000}},
        }
    )
    health, metrics = Health(), DaemonMetrics()
    source, sink = MemorySource(_records()), MemorySink()
    store = LocalStore(tmp_path / "c.sqlite") if tmp_path is not None else None
    daemon = Daemon(
        config,
        source,
        sink,
        [KafkaPublisher(sink, "alerts", "retrain")],
        lambda m, v: None,
        store,
        health=health,
        metrics=metrics,
    )
    source.listen(daemon)
    return daemon, source, health, metrics


def _samples(metrics: DaemonMetrics) -> dict[str, float]:
    lines = metrics.exposition().decode().splitlines()
    return {
        name: float(value)
        for name, _, value in (line.rpartition(" ") for line in lines)
        if not name.startswith("#")
    }


def test_metrics_follow_the_stream() -> None:
    daemon, _, _, metrics = _daemon()
    daemon.step()
    samples = _samples(metrics)
    m = 'model="m",model_version="unversioned"'
    assert samples["monitord_events_consumed_total"] == 1000
    assert samples['monitord_bad_records_total{reason="invalid_json"}'] == 1
    assert samples[f"monitord_model_events_total{{{m}}}"] == 999
    assert samples['monitord_consumer_lag_records{partition="0",topic="in"}'] == 2000
    assert samples[f"monitord_last_event_timestamp_seconds{{{m}}}"] == 1_700_000_999
    daemon.drain()
    samples = _samples(metrics)
    assert samples["monitord_events_consumed_total"] == 3000
    assert samples['monitord_consumer_lag_records{partition="0",topic="in"}'] == 0
    assert samples["monitord_batch_duration_seconds_count"] == 3
    ks_x = samples[f'monitord_drift_statistic{{detector="ks",feature="x",{m}}}']
    assert ks_x > samples[f'monitord_drift_threshold{{detector="ks",feature="x",{m}}}']
    assert samples[f'monitord_alert_transitions_total{{{m},status="firing"}}'] >= 1
    assert samples[f"monitord_alerts_firing{{{m}}}"] >= 1


def test_readiness_waits_for_assignment_and_restored_state(tmp_path: Path) -> None:
    daemon, _, health, metrics = _daemon(tmp_path)
    health.set_condition("config", True)
    health.set_condition("broker", True)
    ready, reasons = health.readyz()
    assert not ready
    assert [r.split(":")[0] for r in reasons] == ["assigned", "state_restored"]
    daemon.step()
    assert health.readyz() == (True, [])
    daemon.drain()
    daemon.checkpoint()
    assert _samples(metrics)["monitord_checkpoint_last_success_timestamp_seconds"] > 0


def test_status_lists_each_model_version() -> None:
    daemon, _, _, _ = _daemon()
    daemon.step()
    status = daemon.status()
    assert status["events"] == 1000
    assert status["assigned"] == ["in[0]"]
    version = status["models"]["m"]["unversioned"]  # type: ignore[index]
    assert version["status"] == "warming up"
    assert version["reference_id"] is None
    daemon.drain()
    version = daemon.status()["models"]["m"]["unversioned"]  # type: ignore[index]
    assert version["status"] == "monitoring"
    assert version["reference"] == "warm-up capture"
    assert {"feature": "x", "detector": "ks"} in version["alerts_firing"]


def test_two_live_versions_of_a_model_keep_series_of_their_own() -> None:
    """A canary (version 2) beside the stable version 1, interleaved on one partition; only
    the canary's x drifts."""
    rng = np.random.default_rng(6)
    values = rng.normal(size=(6000, 2))
    versions = np.where(np.arange(6000) % 3 == 0, "2", "1")
    values[(versions == "2") & (np.arange(6000) >= 3000), 0] += 3.0
    events = [
        orjson.dumps({"model": "m", "model_version": v, "features": {"x": a, "y": b}})
        for v, (a, b) in zip(versions.tolist(), values.tolist(), strict=True)
    ]
    records = [Record("in", 0, i, b"m", e, 0) for i, e in enumerate(events)]
    config = parse_config({"detection": {"warmup_events": 1000, "window_size": 500}})
    metrics = DaemonMetrics()
    daemon = Daemon(
        config, MemorySource(records), MemorySink(), [], lambda m, v: None, metrics=metrics
    )
    daemon.drain()
    samples = _samples(metrics)
    stable, canary = (f'model="m",model_version="{v}"' for v in ("1", "2"))
    assert samples[f"monitord_model_events_total{{{stable}}}"] == 4000
    assert samples[f"monitord_model_events_total{{{canary}}}"] == 2000
    ks = 'monitord_drift_statistic{{detector="ks",feature="x",{}}}'
    threshold = 'monitord_drift_threshold{{detector="ks",feature="x",{}}}'
    assert samples[ks.format(canary)] > samples[threshold.format(canary)]
    assert samples[ks.format(stable)] < samples[threshold.format(stable)]
    assert samples[f"monitord_alerts_firing{{{canary}}}"] >= 1
    assert samples[f"monitord_alerts_firing{{{stable}}}"] == 0
