"""Labels joined to predictions, and model performance, through the daemon loop in memory."""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.stream import Record, TopicPartition
from monitord.alerts import Alert
from monitord.config import Config, parse_config
from monitord.join_store import Joined, JoinStore, Label
from monitord.labels import LabelJoin, decode_labels
from monitord.metrics import DaemonMetrics
from monitord.policy import Policy
from monitord.retrain import RetrainTrigger
from monitord.volume import VolumeWatch
from tests.monitord.recorded import RecordedRun
from tests.monitord.test_retrain_policy import RecordingPolicy

T0 = 1_700_000_000.0
CHANGE = 6000


def _concept_stream(
    n: int, change: int | None, seed: int = 3
) -> tuple[list[dict[str, object]], np.ndarray]:
    """Stationary features; the label's rule moves at ``change`` while the model keeps the
    old one (pure concept drift), with 10 % label noise."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, (n, 3))
    rows = np.arange(n)
    limit = np.where(rows < (n if change is None else change), 8.0, 5.5)
    labels = (x[:, 0] + x[:, 1] <= limit) ^ (rng.random(n) < 0.1)
    events = [
        {
            "model": "m",
            "event_id": f"e{i}",
            "timestamp": T0 + i,
            "features": {"a": float(x[i, 0]), "b": float(x[i, 1]), "c": float(x[i, 2])},
            "prediction": int(x[i, 0] + x[i, 1] <= 8.0),
        }
        for i in range(n)
    ]
    return events, labels


def _records(
    events: list[dict[str, object]],
    labels: np.ndarray,
    *,
    inline: bool = False,
    max_delay: int = 500,
    seed: int = 5,
) -> list[Record]:
    """Inference records, and (unless ``inline``) label records delayed by up to
    ``max_delay`` events, shuffled by their delay."""
    rng = np.random.default_rng(seed)
    out = []
    for i, event in enumerate(events):
        body = {**event, "label": bool(labels[i])} if inline else event
        out.append(Record("in", 0, i, b"m", orjson.dumps(body), int((T0 + i) * 1000)))
    if inline:
        return out
    arrival = np.arange(len(events)) + rng.integers(0, max_delay + 1, len(events))
    for k, i in enumerate(np.argsort(arrival, kind="stable")):
        label = {"event_id": f"e{i}", "label": bool(labels[i])}
        stamp = int((T0 + arrival[i] + 1) * 1000)
        out.append(Record("labels", 0, k, b"m", orjson.dumps(label), stamp))
    return out


def _config(**performance: object) -> Config:
    return parse_config(
        {
            "labels": {"topics": ["labels"]},
            "performance": performance,
            "kafka": {"consumer": {"max_poll_records": 700}},
        }
    )


def _performance_outputs(run: RecordedRun) -> list[Alert | RetrainTrigger]:
    return [
        o
        for o in run.outputs
        if isinstance(o, RetrainTrigger)
        or dict(o.labels)["alertname"] in ("MonitordPerformanceDegraded", "MonitordErrorRateChange")
    ]


def test_concept_drift_on_stable_inputs_alerts_and_requests_a_retrain() -> None:
    events, labels = _concept_stream(12_000, CHANGE)
    run = RecordedRun(_config(), _records(events, labels)).drain()
    found = _performance_outputs(run)
    alerts = [o for o in found if isinstance(o, Alert) and o.status == "firing"]
    names = {dict(a.labels)["alertname"] for a in alerts}
    assert names == {"MonitordPerformanceDegraded", "MonitordErrorRateChange"}
    # The change is at labelled row CHANGE (labels arrive shuffled, but rows are joined in
    # order of their labels): nothing fires before it.
    assert min(a.row for a in alerts) >= CHANGE - 500
    degraded = next(a for a in alerts if dict(a.labels)["alertname"].endswith("Degraded"))
    evidence = dict(degraded.evidence)
    assert evidence["reference_miss_rate"] < 0.15 < evidence["error_rate"]
    assert degraded.severity == "critical"
    (request,) = [o for o in found if isinstance(o, RetrainTrigger)]
    assert request.reason == "performance"
    assert request.statistics[0][:2] == ("error_rate", "performance")
    assert "label delay" in request.detail
    assert dict(request.evidence)["accuracy"] < dict(request.evidence)["reference_accuracy"]
    # Input drift saw nothing: the features and the prediction are stationary. The labels
    # moved (the positive class went from 0.37 of them to 0.21): that is label drift.
    (shift,) = [o for o in run.outputs if o not in found]
    assert isinstance(shift, Alert)
    assert dict(shift.labels)["alertname"] == "MonitordLabelDrift"
    assert shift.first_row >= CHANGE - 500
    evidence = dict(shift.evidence)
    assert evidence["label_share"] < evidence["label_share_low"] < evidence["reference_label_share"]
    status = run.daemon.status()
    performance = status["models"]["m"]["unversioned"]["performance"]  # type: ignore[index]
    assert performance["labelled_rows"] == 12_000
    assert performance["task"] == "classification"
    assert status["labels"] == {"topics": ["labels"], "pending": 0, "held": 0}


def test_a_stationary_stream_with_labels_is_quiet() -> None:
    events, labels = _concept_stream(12_000, None)
    run = RecordedRun(_config(), _records(events, labels)).drain()
    assert run.outputs == []
    assert [e.result.detector for e in run.evaluations].count("performance") == 55


def test_inline_labels_are_joined_without_a_label_topic() -> None:
    events, labels = _concept_stream(12_000, CHANGE)
    config = parse_config({"kafka": {"consumer": {"max_poll_records": 700}}})
    run = RecordedRun(config, _records(events, labels, inline=True)).drain()
    found = _performance_outputs(run)
    assert {type(o).__name__ for o in found} == {"Alert", "RetrainTrigger"}
    # Inline labels are joined in event order: the first alert follows the change closely.
    assert CHANGE <= min(o.row for o in found if isinstance(o, Alert)) <= CHANGE + 1000


@pytest.mark.parametrize("checkpoints", ["once", "every step"])
def test_a_crash_and_restore_joins_every_label_once_with_the_same_outputs(
    tmp_path: Path, checkpoints: str
) -> None:
    # Every step: the join store is restored from a full part and the deltas after it.
    events, labels = _concept_stream(12_000, CHANGE)
    records = _records(events, labels, max_delay=2000)
    whole = RecordedRun(_config(), records, tmp_path / "whole.sqlite").drain()
    expected = [o.id for o in whole.outputs]
    assert expected

    path = tmp_path / "crashed.sqlite"
    first = RecordedRun(_config(), records, path)
    for _ in range(9):
        first.steps(1)
        if checkpoints == "every step":
            first.daemon.checkpoint()
    first.daemon.checkpoint()
    if checkpoints == "every step":
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM join_parts").fetchone()[0] > 2
    first.steps(4)  # folded, never checkpointed: lost with the crash, read again
    first.crash()
    committed = first.source.committed
    second = RecordedRun(_config(), records, path, committed=committed).drain()
    ids = [o.id for o in first.outputs] + [o.id for o in second.outputs]
    assert list(dict.fromkeys(ids)) == expected
    performance = second.daemon.performance.versions["m", "unversioned"]
    assert performance.rows == 12_000  # every label joined, none twice
    assert second.daemon.joins.pending() == 0


@pytest.mark.parametrize("part", [b"{", b'{"pending": 5}', b'{"left": [], "pending": {}}'])
def test_a_join_store_part_that_cannot_be_read_starts_the_store_empty_not_a_crash_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, part: bytes
) -> None:
    events, labels = _concept_stream(6000, None)
    records = _records(events, labels, max_delay=2000)
    path = tmp_path / "state.sqlite"
    first = RecordedRun(_config(), records, path)
    for _ in range(4):
        first.steps(1)
        first.daemon.checkpoint()
    assert first.daemon.joins.pending() > 0
    first.crash()
    with sqlite3.connect(path) as db:  # the newest delta, or the full part (0) if none
        db.execute(
            "UPDATE join_parts SET blob = ? WHERE id = (SELECT max(id) FROM join_parts)", (part,)
        )
    second = RecordedRun(_config(), records, path, committed=first.source.committed)
    second.steps(1)
    assert "in[0]: cannot restore the label join store (not a label join store" in caplog.text
    assert second.daemon.monitor.versions  # the rest of the checkpoint restored
    second.drain()  # the predictions waiting were lost: their labels are orphans
    joined = second.daemon.performance.versions["m", "unversioned"].rows
    assert 0 < joined < 6000


def _performance_gauges(metrics: DaemonMetrics) -> list[str]:
    text = metrics.exposition().decode()
    return sorted(
        line for line in text.splitlines() if line.startswith("monitord_model_performance{")
    )


def test_a_restart_shows_the_performance_gauges_it_showed_before_any_new_label(
    tmp_path: Path,
) -> None:
    # With latency too: its p50 and p99 are gauges of the same family.
    events, labels = _concept_stream(6000, 3000)
    for i, event in enumerate(events):
        event["latency_ms"] = 20.0 + i % 7
    config = parse_config(
        {
            "labels": {"topics": ["labels"]},
            "events": {"latency": "latency_ms"},
            "kafka": {"consumer": {"max_poll_records": 700}},
        }
    )
    records = _records(events, labels, max_delay=300)
    path = tmp_path / "state.sqlite"
    first = RecordedRun(config, records, path, metrics=DaemonMetrics(version="1"))
    first.drain()
    first.daemon.checkpoint()
    assert first.daemon.metrics is not None
    shown = _performance_gauges(first.daemon.metrics)
    names = {line.split('metric="')[1].split('"')[0] for line in shown}
    assert {"error_rate", "label_delay_p50_s", "latency_p50_ms", "latency_p99_ms"} <= names
    first.crash()

    # Every record is read: the restart restores state and reads nothing new.
    committed = first.source.committed
    second = RecordedRun(config, records, path, committed, metrics=DaemonMetrics(version="1"))
    second.steps(1)
    assert second.daemon.performance.versions["m", "unversioned"].rows > 0  # restored
    assert second.daemon.metrics is not None
    assert _performance_gauges(second.daemon.metrics) == shown


@pytest.mark.parametrize("partitions", [1, 2])
def test_labels_fold_by_column_exactly_as_one_by_one(
    monkeypatch: pytest.MonkeyPatch, partitions: int
) -> None:
    # Most chunks are the common case; some carry a duplicate, an orphan, a label naming
    # its model, one naming its time, bad JSON, a long text label or one waiting too long.
    # Predictions are added by column, or one by one, too.
    events, labels = _concept_stream(6000, 3000)
    records = _records(events, labels, max_delay=300)
    odd: dict[int, bytes] = {
        100: b'{"event_id": "e5", "label": true}',  # e5's label again
        700: b'{"event_id": "nobody", "label": true}',
        1500: b'{"event_id": "e1490", "label": false, "model": "m"}',
        2300: b'{"event_id": "e2290", "label": true, "timestamp": 1700002290}',
        3100: b"{not json",
        3900: b'{"event_id": "e3890", "label": "a label of more than twenty-four chars"}',
        4700: b'{"event_id": "e4690", "label": true}',
    }
    labelled = [r for r in records if r.topic == "labels"]
    changed = [
        r._replace(value=odd[r.offset], timestamp_ms=r.timestamp_ms + 400_000 * (r.offset == 4700))
        if r.offset in odd
        else r
        for r in labelled
    ]
    stream = [
        # Spread over the partitions (labels co-partitioned with their predictions' events).
        r._replace(partition=r.offset % partitions, offset=r.offset // partitions)
        for r in [r for r in records if r.topic == "in"] + changed
    ]

    config = parse_config(
        {
            "labels": {"topics": ["labels"], "max_delay_s": 600.0},
            "kafka": {"consumer": {"max_poll_records": 700}},
        }
    )

    def run() -> RecordedRun:
        return RecordedRun(config, stream).drain()

    taken: list[bool] = []
    fold_plain = LabelJoin._fold_plain

    def spied(*args: Any) -> bool:
        taken.append(fold_plain(*args))
        return taken[-1]

    with monkeypatch.context() as patched:
        patched.setattr("monitord.labels.LabelJoin._fold_plain", spied)
        by_column = run()
    assert 0 < taken.count(False) < taken.count(True)  # both ways taken
    with monkeypatch.context() as patched:
        patched.setattr("monitord.labels.LabelJoin._fold_plain", lambda *args: False)
        patched.setattr("monitord.labels.LabelJoin._pending", lambda *args: False)
        one_by_one = run()
    performance = [
        r.daemon.performance.versions["m", "unversioned"] for r in (by_column, one_by_one)
    ]
    assert performance[0].rows == performance[1].rows > 5000
    assert performance[0].reference_rows == performance[1].reference_rows
    assert performance[0].window == performance[1].window
    assert [o.id for o in by_column.outputs] == [o.id for o in one_by_one.outputs]
    assert [(e.features, e.result.row, e.offsets) for e in by_column.evaluations] == [
        (e.features, e.result.row, e.offsets) for e in one_by_one.evaluations
    ]
    assert by_column.daemon.joins.counts == one_by_one.daemon.joins.counts
    assert by_column.daemon.joins.counts["m", "joined"] > 5000
    assert by_column.sink.messages() == one_by_one.sink.messages()  # dead letters too
    stores = [r.daemon.joins.stores for r in (by_column, one_by_one)]
    assert list(stores[0]) == list(stores[1])
    assert TopicPartition("in", partitions - 1) in stores[0]
    for tp, store in stores[0].items():
        assert store.snapshot() == stores[1][tp].snapshot(), tp


def test_bad_label_records_are_dead_lettered_with_their_reason() -> None:
    events, labels = _concept_stream(100, None)
    good = _records(events, labels)
    bad_values = [
        b"{",
        b"[1]",
        b'{"label": 1}',
        b'{"event_id": "e1"}',
        b'{"event_id": [1], "label": 0}',
    ]
    bad = [
        Record("labels", 0, 100 + k, None, value, int((T0 + 200) * 1000))
        for k, value in enumerate(bad_values)
    ]
    run = RecordedRun(_config(), good + bad).drain()
    reasons = Counter(
        dict(m.headers)["monitord.error.reason"].decode()
        for m in run.sink.messages("monitord.dead-letter")
    )
    assert reasons == {
        "invalid_json": 1,
        "not_an_object": 1,
        "missing_event_id": 2,
        "missing_label": 1,
    }
    assert run.daemon.performance.versions["m", "unversioned"].rows == 100


def test_labels_wait_until_the_inference_partition_is_read_past_them() -> None:
    """A label polled before its prediction is held, not counted as an orphan."""
    events, labels = _concept_stream(2000, None)
    records = _records(events, labels, max_delay=0)
    label_records = [r for r in records if r.topic == "labels"]
    inference = [r for r in records if r.topic == "in"]
    # The label topic comes first in the source, and polls are small.
    config = parse_config(
        {"labels": {"topics": ["labels"]}, "kafka": {"consumer": {"max_poll_records": 50}}}
    )
    run = RecordedRun(config, label_records + inference).drain()
    counts = Counter(run.daemon.joins.take_counts())
    assert run.daemon.performance.versions["m", "unversioned"].rows == 2000
    assert counts["", "orphan"] == 0


def _store(max_pending: int = 3, max_delay_s: float = 100.0) -> JoinStore:
    return JoinStore(TopicPartition("in", 0), max_pending, max_delay_s, remember=10)


def _label(event_id: str, value: object, time: float = 10.0) -> Label:
    return Label(event_id, value, None, time, Record("labels", 0, 0, None, b"", 0))


def test_join_store_counts_duplicates_conflicts_late_and_evicted_labels() -> None:
    store, counts = _store(), Counter[tuple[str, str]]()
    record = Record("in", 0, 0, None, b"", 0)
    for i in range(4):  # one more than max_pending: the oldest is evicted
        assert store.add(f"e{i}", ("m", "1", 0.5, float(i), i, 0), record, counts) is None
    assert store.take(_label("e1", 1), counts) is not None
    assert store.take(_label("e1", 1), counts) is False  # the same label again
    assert store.take(_label("e1", 0), counts) is False  # another label for it
    assert store.take(_label("e0", 1), counts) is False  # its prediction was evicted
    assert store.take(_label("e9", 1), counts) is None  # never seen here
    assert store.take(_label("e2", 1, time=500.0), counts) is False  # waited too long
    assert counts == {
        ("m", "evicted"): 2,
        ("m", "joined"): 1,
        ("", "duplicate"): 1,
        ("", "conflicting"): 1,
        ("", "late"): 1,
        ("m", "late"): 1,
    }


def test_an_early_label_waits_for_its_prediction_and_survives_a_snapshot() -> None:
    store, counts = _store(), Counter[tuple[str, str]]()
    store.wait(_label("e7", "cat"), counts)
    copy = _store()
    copy.restore(store.snapshot())
    joined = copy.add(
        "e7", ("m", "1", "dog", 5.0, 42, 0), Record("in", 0, 42, None, b"", 0), counts
    )
    assert joined is not None
    assert (joined.label, joined.prediction, joined.offset) == ("cat", "dog", 42)
    copy.expire(1e9, counts)
    assert counts == {("m", "joined"): 1}


def test_a_prediction_stamped_far_ahead_holds_back_nothing_after_a_restore() -> None:
    store, counts = _store(max_pending=10), Counter[tuple[str, str]]()
    store.expected_delay_s, store.coverage = 20.0, []
    record = Record("in", 0, 0, None, b"", 0)
    store.add("far", ("m", "1", 0, 1e10, 0, 0), record, counts)  # a clock in the year 2286
    for i in range(1, 4):
        store.add(f"e{i}", ("m", "1", 0, float(i), i, 0), record, counts)
    store.sweep(50.0)  # passes over "far", which stays aside
    assert [covered for *_, covered in store.coverage] == [False] * 3
    copy = _store(max_pending=10)
    copy.expected_delay_s, copy.coverage = 20.0, []
    copy.restore(store.snapshot())
    assert copy.pending_order.parked() == set()  # not swept yet: expiry has not met it
    assert copy.due.parked() == store.due.parked() == {"far"}
    for joins in (store, copy):
        joins.expire(110.0, counts)
        assert list(joins.pending) == ["far"]
        assert joins.pending_order.parked() == {"far"}
    assert counts == {("m", "evicted"): 6}


def test_a_join_store_of_the_first_checkpoint_format_restores() -> None:
    # Written before pending and done were stored as JSON objects: rows of [id, *entry].
    first = orjson.dumps(
        {
            "pending": [["e1", "m", "1", "dog", 5.0, 41], ["e2", "m", "1", "cat", None, 42]],
            "early": [],
            "done": [["e0", "dog"]],
            "due": [[5.0, "e1"]],
            "overdue": [],
            "newest": 5.0,
            "label_clock": None,
        }
    )
    store, counts = _store(), Counter[tuple[str, str]]()
    store.restore(first)
    again = _store()
    again.restore(store.snapshot())
    for restored in (store, again):
        assert list(restored.pending) == ["e1", "e2"]
        assert restored.pending["e1"] == ("m", "1", "dog", 5.0, 41, -1)  # record time unknown
        assert math.isnan(restored.pending["e2"][3])
        assert (list(restored.done), list(restored.due)) == (["e0"], [(5.0, "e1")])
    joined = again.take(_label("e1", "cat"), counts)
    assert isinstance(joined, Joined)
    assert (joined.prediction, joined.label, joined.offset) == ("dog", "cat", 41)
    assert again.take(_label("e0", "dog"), counts) is False  # remembered as joined
    assert counts == {("m", "joined"): 1, ("", "duplicate"): 1}


def test_label_records_decode_by_the_configured_fields() -> None:
    fields = parse_config({"events": {"event_id": "id", "label": "y"}}).events
    records = [
        # The label's own time, within events.max_time_ahead_s of its record's, is used.
        Record(
            "labels",
            0,
            0,
            None,
            b'{"id": 12, "y": 0.5, "timestamp": 1700000100}',
            1_700_000_000_000,
        ),
        Record("labels", 0, 1, None, b'{"id": "' + b"x" * 300 + b'", "y": 1}', 5),
    ]
    labels, bad = decode_labels(records, fields, max_id_chars=256)
    assert [(lab.event_id, lab.label, lab.time) for lab in labels] == [("12", 0.5, 1700000100.0)]
    assert [b.reason for b in bad] == ["missing_event_id"]


@pytest.mark.parametrize("topic", ["in", "monitord.alerts"])
def test_a_label_topic_must_be_its_own(topic: str) -> None:
    with pytest.raises(ValueError, match=r"labels\.topics"):
        parse_config({"kafka": {"input_topics": ["in"]}, "labels": {"topics": [topic]}})


def test_labels_that_stop_coming_fire_the_coverage_alert() -> None:
    events, labels = _concept_stream(12_000, None)
    records = [
        r
        for r in _records(events, labels, max_delay=200)
        if r.topic == "in" or int(orjson.loads(r.value or b"{}")["event_id"][1:]) < 6000
    ]
    config = parse_config(
        {
            "labels": {
                "topics": ["labels"],
                "expected_delay_s": 300,
                "min_coverage": 0.9,
                "coverage_window": 500,
            },
            "kafka": {"consumer": {"max_poll_records": 700}},
        }
    )
    run = RecordedRun(config, records).drain()
    (alert,) = [o for o in run.outputs if isinstance(o, Alert)]
    assert dict(alert.labels)["alertname"] == "MonitordLabelCoverage"
    assert (alert.status, alert.severity, alert.first_row) == ("firing", "warning", 6000)
    assert dict(alert.evidence)["label_coverage"] == 0.0


def _latency_records(n: int, slow_from: int, seed: int = 11) -> list[Record]:
    rng = np.random.default_rng(seed)
    # Heavy-tailed latencies (lognormal); from slow_from on, a tenth of requests are 5x slower.
    latency = np.exp(rng.normal(3.0, 0.5, n))
    slow = (np.arange(n) >= slow_from) & (rng.random(n) < 0.1)
    latency[slow] *= 5
    return [
        Record(
            "in",
            0,
            i,
            b"m",
            orjson.dumps(
                {
                    "model": "m",
                    "timestamp": T0 + i,
                    "features": {"a": float(rng.normal())},
                    "latency_ms": float(latency[i]),
                }
            ),
            int((T0 + i) * 1000),
        )
        for i in range(n)
    ]


def test_a_slower_tail_fires_latency_degraded_and_the_slo() -> None:
    config = parse_config(
        {"performance": {"latency_slo_ms": 150.0}, "kafka": {"consumer": {"max_poll_records": 700}}}
    )
    run = RecordedRun(config, _latency_records(8000, 5000)).drain()
    fired = {
        dict(o.labels)["alertname"]: o
        for o in run.outputs
        if isinstance(o, Alert) and o.status == "firing"
    }
    assert set(fired) == {"MonitordLatencyDegraded", "MonitordLatencySLO"}
    for alert in fired.values():
        assert alert.first_row >= 5000 - 1000  # latency rows: the warm-up's 1000 included
        evidence = dict(alert.evidence)
        assert evidence["latency_p99_ms"] > 150 > evidence["reference_latency_p99_ms"]


def test_steady_heavy_tailed_latency_is_quiet() -> None:
    run = RecordedRun(parse_config({}), _latency_records(20_000, 20_000)).drain()
    assert run.outputs == []
    windows = [e for e in run.evaluations if e.result.detector == "latency"]
    assert len(windows) == 38


def test_latency_windows_restore_from_a_checkpoint(tmp_path: Path) -> None:
    config = parse_config(
        {"performance": {"latency_slo_ms": 150.0}, "kafka": {"consumer": {"max_poll_records": 700}}}
    )
    records = _latency_records(8000, 5000)
    whole = RecordedRun(config, records, tmp_path / "whole.sqlite").drain()
    first = RecordedRun(config, records, tmp_path / "crashed.sqlite")
    first.steps(5)
    first.daemon.checkpoint()
    first.crash()
    second = RecordedRun(
        config, records, tmp_path / "crashed.sqlite", committed=first.source.committed
    ).drain()
    ids = list(dict.fromkeys(o.id for o in first.outputs + second.outputs))
    assert ids == [o.id for o in whole.outputs]
    assert ids


def test_a_quiet_model_fires_until_its_next_event_and_a_flood_until_a_calm_minute() -> None:
    config = parse_config({"volume": {"quiet_after_s": 600, "max_events_per_s": 1}})
    watch, policy = VolumeWatch(config.volume), RecordingPolicy(Policy.from_config(config))
    record = Record("in", 0, 7, b"m", b"{}", 0)

    def transitions(now: float) -> list[tuple[str, str]]:
        return [
            (dict(o.labels)["alertname"], o.status)
            for o in policy.decide(watch.check(now))
            if isinstance(o, Alert)
        ]

    watch.seen("m", "2", 100, record, 1000.0)
    assert transitions(1059.0) == []
    assert transitions(1061.0) == [("MonitordModelFlood", "firing")]  # 100 in 61 s
    assert transitions(1100.0) == []  # a minute not over yet
    assert transitions(1599.0) == [("MonitordModelFlood", "resolved")]  # none since 1061
    assert transitions(1600.0) == [("MonitordModelQuiet", "firing")]
    assert transitions(1700.0) == []  # still quiet: one alert per episode
    watch.seen("m", "2", 5, record, 1800.0)
    assert transitions(1801.0) == [("MonitordModelQuiet", "resolved")]


def test_numbers_beyond_64_bits_are_stored_as_floats_or_refused(tmp_path: Path) -> None:
    """JSON allows any integer; a checkpoint's JSON writer takes 64 bits."""

    def event(i: int) -> bytes:
        body = {
            "model": "m",
            "event_id": f"e{i}",
            "timestamp": T0 + i,
            "features": {"a": float(i % 7)},
            "prediction": 10**30 if i % 2 else 2**64,
            **({"label": 10**30} if i % 3 == 0 else {}),
        }
        return json.dumps(body).encode()

    records = [Record("in", 0, i, b"m", event(i), int((T0 + i) * 1000)) for i in range(3000)]
    stamp = int((T0 + 5000) * 1000)
    for k, value in enumerate([b"1" + b"0" * 400, b"100000000000000000000"]):
        label = b'{"event_id": "e%d", "label": %s}' % (k + 1, value)
        records.append(Record("labels", 0, k, None, label, stamp))
    run = RecordedRun(_config(), records, tmp_path / "store.sqlite").drain()
    run.daemon.checkpoint()  # the join store and the performance rows are written as JSON
    reasons = [m.headers for m in run.sink.messages("monitord.dead-letter")]
    # 1e400 is beyond what the JSON reader takes: not JSON it can use.
    assert [dict(h)["monitord.error.reason"] for h in reasons] == [b"invalid_json"]
    # Inline labels on every third event, and e2's label: 1,000 inline + 1 from the topic.
    assert run.daemon.performance.versions["m", "unversioned"].rows == 1001


def test_a_label_time_far_ahead_of_its_record_is_not_believed() -> None:
    fields = parse_config({}).events
    stamp = b'{"event_id": "a", "label": 1, "timestamp": "9000-01-01T00:00:00Z"}'
    labels, _ = decode_labels([Record("labels", 0, 0, None, stamp, 1_700_000_000_000)], fields, 256)
    assert [label.time for label in labels] == [1_700_000_000.0]
