"""The daemon loop with in-memory connectors: commits, dead letters, outputs."""

from __future__ import annotations

import tracemalloc

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.stream import DeliveryFailed, Polled, Record, TopicPartition, by_partition
from monitord import batch_output
from monitord.config import parse_config
from monitord.daemon import Daemon
from monitord.outputs import KafkaPublisher
from monitord.partitions import next_offsets


def _events(values: np.ndarray, model: str = "m") -> list[bytes]:
    return [
        orjson.dumps({"model": model, "features": {"x": float(v[0]), "y": float(v[1])}})
        for v in values
    ]


def _daemon(records: list[Record]) -> tuple[Daemon, MemorySource, MemorySink]:
    config = parse_config(
        {
            "detection": {"warmup_events": 1000, "window_size": 500},
            "kafka": {"consumer": {"max_poll_records": 700}},
        }
    )
    source, sink = MemorySource(records), MemorySink()
    daemon = Daemon(
        config, source, sink, [KafkaPublisher(sink, "alerts", "retrain")], lambda m, v: None
    )
    return daemon, source, sink


def test_drift_publishes_cloudevents_and_commits_next_offsets() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(size=(4000, 2))
    values[2500:, 1] += 1.5
    records = [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(_events(values))]
    daemon, source, sink = _daemon(records)
    daemon.drain()
    assert source.committed == {TopicPartition("in", 0): 4000}
    alerts = [orjson.loads(m.value) for m in sink.messages("alerts")]
    firing = [a["data"] for a in alerts if a["data"]["status"] == "firing"]
    # A 1.5 sd shift of y: its distribution tests fire, and so does its out-of-range rate
    # (values beyond the reference maximum); x, unchanged, stays quiet. With one of two
    # columns drifted, the model-level alert ("" feature, any detector) fires too.
    assert {(a["feature"], a["detector"]) for a in firing} == {
        ("y", "ks"),
        ("y", "psi"),
        ("y", "out_of_range"),
        ("", "any"),
    }
    assert all(m.key == b"m" for m in sink.messages("alerts"))
    assert alerts[0]["specversion"] == "1.0"
    assert alerts[0]["type"] == "io.monitord.drift.alert"
    assert len(sink.messages("retrain")) == 1


def test_bad_records_are_dead_lettered_with_headers_and_counted() -> None:
    rng = np.random.default_rng(5)
    good = _events(rng.normal(size=(1200, 2)))
    wrong_type = b'{"model": "m", "features": {"x": "abc", "y": 1.0}}'
    values = [*good[:1100], b"{oops", wrong_type, *good[1100:]]
    records = [Record("in", 2, 100 + i, b"m", v, 0) for i, v in enumerate(values)]
    daemon, source, sink = _daemon(records)
    daemon.drain()
    dead = sink.messages("monitord.dead-letter")
    assert [m.value for m in dead] == [b"{oops", wrong_type]
    headers = [dict(m.headers) for m in dead]
    assert [h["monitord.error.reason"] for h in headers] == [b"invalid_json", b"wrong_type"]
    assert [h["monitord.source.offset"] for h in headers] == [b"1200", b"1201"]
    assert all(h["monitord.source.partition"] == b"2" for h in headers)
    assert daemon.stats.bad_records == {"invalid_json": 1, "wrong_type": 1}
    assert daemon.stats.events == len(values)
    assert source.committed == {TopicPartition("in", 2): 100 + len(values)}


def _drift_records() -> list[Record]:
    rng = np.random.default_rng(11)
    values = rng.normal(size=(4000, 2))
    values[2500:, 1] += 1.5
    return [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(_events(values))]


def test_lost_flushes_are_published_again_and_nothing_is_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_output, "BACKOFF_S", (0.0, 0.0))
    daemon, _, expected = _daemon(_drift_records())
    daemon.drain()
    daemon, source, sink = _daemon(_drift_records())
    for _ in range(3):  # lost with everything pending, as a broker failure can
        sink.fail_next_flush()
    daemon.drain()
    assert {m.value for m in sink.messages()} == {m.value for m in expected.messages()}
    assert source.committed == {TopicPartition("in", 0): 4000}
    assert daemon.clean


def test_a_permanent_delivery_failure_stops_the_loop() -> None:
    daemon, source, sink = _daemon(_drift_records())
    sink.fail_next_flush(DeliveryFailed("message too large", retriable=False))
    with pytest.raises(DeliveryFailed, match="too large"):
        daemon.step()
    assert source.committed == {}


def test_stopping_while_outputs_are_undelivered_keeps_the_batch_unprocessed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_output, "BACKOFF_S", (0.0, 0.0))
    daemon, source, sink = _daemon(_drift_records())
    sink.fail_next_flush()
    daemon.stopping.set()
    polled, _ = daemon.step()
    assert polled == 700
    assert not daemon.clean
    assert source.committed == {}  # read again after a restart


def test_a_slow_flush_is_waited_for_without_sending_copies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_output, "BACKOFF_S", (0.0, 0.0))
    daemon, _, expected = _daemon(_drift_records())
    daemon.drain()
    daemon, source, sink = _daemon(_drift_records())
    for _ in range(3):  # not acknowledged in time, still in flight
        sink.fail_next_flush(DeliveryFailed("slow broker", retriable=True, pending=True))
    daemon.drain()
    assert [m.value for m in sink.messages()] == [m.value for m in expected.messages()]
    assert source.committed == {TopicPartition("in", 0): 4000}


@pytest.mark.parametrize("value", [[1.0], [1.0, 2.0], {"a": 1}, "abc"])
def test_a_batch_of_non_numbers_in_a_numeric_feature_is_dead_lettered(value: object) -> None:
    daemon, source, sink = _daemon(_drift_records()[:1500])
    daemon.drain()  # the reference: x and y numeric
    wrong = orjson.dumps({"model": "m", "features": {"x": value, "y": 1.0}})
    for _ in range(5):  # a whole batch of them, nothing else
        source.append("in", wrong, key=b"m")
    daemon.drain()
    assert [m.value for m in sink.messages("monitord.dead-letter")] == [wrong] * 5
    assert daemon.stats.bad_records == {"wrong_type": 5}


def test_committed_offsets_are_one_past_each_partitions_last_record() -> None:
    def records(*sources: tuple[str, int, int]) -> Polled:
        return by_partition(
            Record(topic, partition, offset, None, b"", 0) for topic, partition, offset in sources
        )

    assert next_offsets(records(("a", 0, 5), ("a", 0, 6), ("a", 0, 9))) == {
        TopicPartition("a", 0): 10
    }
    # Another partition in between, though the first and last records share one.
    assert next_offsets(records(("a", 0, 5), ("a", 1, 70), ("a", 0, 6))) == {
        TopicPartition("a", 0): 7,
        TopicPartition("a", 1): 71,
    }
    assert next_offsets(records(("a", 0, 5), ("b", 0, 70), ("a", 0, 6))) == {
        TopicPartition("a", 0): 7,
        TopicPartition("b", 0): 71,
    }
    assert next_offsets(records(("a", 0, 5), ("a", 1, 3))) == {
        TopicPartition("a", 0): 6,
        TopicPartition("a", 1): 4,
    }
    assert next_offsets(records()) == {}


T0 = 1_795_435_200  # 2026-11-23T12:00:00Z


@pytest.mark.parametrize("per_second", [1, 1_000, 1_000_000, 1_000_000_000])
def test_event_times_in_any_epoch_unit_reach_alerts_as_their_dates(per_second: int) -> None:
    """Microseconds and nanoseconds once crashed the daemon as an alert fired (year 55840)."""
    rng = np.random.default_rng(11)
    values = rng.normal(size=(3000, 2))
    values[2000:, 1] += 1.5
    events = [
        orjson.dumps(
            {"model": "m", "features": {"x": x, "y": y}, "timestamp": (T0 + i) * per_second}
        )
        for i, (x, y) in enumerate(values.tolist())
    ]
    records = [Record("in", 0, i, b"m", v, (T0 + i) * 1000) for i, v in enumerate(events)]
    daemon, _, sink = _daemon(records)
    daemon.drain()
    firing = [orjson.loads(m.value) for m in sink.messages("alerts")]
    assert firing
    assert {a["time"][:10] for a in firing} == {"2026-11-23"}


def test_times_outside_the_calendar_fall_back_and_alerts_still_fire() -> None:
    rng = np.random.default_rng(11)
    values = rng.normal(size=(3000, 2))
    values[2000:, 1] += 1.5
    stamps: list[object] = [1e300, -1, "99999-01-01T00:00:00", 2**63, "now"]
    events = [
        orjson.dumps({"model": "m", "features": {"x": x, "y": y}, "timestamp": stamps[i % 5]})
        for i, (x, y) in enumerate(values.tolist())
    ]
    records = [Record("in", 0, i, b"m", v, (T0 + i) * 1000) for i, v in enumerate(events)]
    daemon, _, sink = _daemon(records)
    daemon.drain()
    firing = [orjson.loads(m.value) for m in sink.messages("alerts")]
    assert firing
    assert {a["time"][:10] for a in firing} == {"2026-11-23"}  # the records' own times
    assert daemon.stats.bad_records == {}


def test_one_long_category_value_costs_its_own_bytes_not_the_batch_times_its_length() -> None:
    """Category codes once came from a fixed-width copy of each batch as wide as its longest
    value: one 900 KB string grew the daemon to 23.6 GB."""
    rng = np.random.default_rng(3)
    colors = ["red", "green", "blue"]
    events = [
        orjson.dumps({"model": "m", "features": {"x": x, "color": colors[i % 3]}})
        for i, x in enumerate(rng.normal(size=2100).tolist())
    ]
    long_value = orjson.dumps({"model": "m", "features": {"x": 0.0, "color": "c" * 200_000}})
    values = [*events[:1500], long_value, *events[1500:]]
    records = [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(values)]
    daemon, _, _ = _daemon(records)
    tracemalloc.start()
    try:
        daemon.drain()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert daemon.stats.per_model == {"m": len(values)}
    assert peak < 64 << 20  # the fixed-width copy: 700 rows x 200,000 chars x 4 B = 560 MB
