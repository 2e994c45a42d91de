"""Hostile label values, ids, models and times through the label join and the performance
stream: every label record is joined, counted or dead-lettered with its reason, what the join
holds stays bounded, and no value leaves a detector's state unusable."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.stream import Record, TopicPartition
from monitord.cli import main
from monitord.config import Config, parse_config
from monitord.labels import LabelJoin
from tests.monitord.recorded import RecordedRun

T0 = 1_700_000_000.0
KEY = ("m", "unversioned")
DEAD_LETTERS = "monitord.dead-letter"


def _config(**labels: object) -> Config:
    return parse_config(
        {
            "labels": {"topics": ["labels"], **labels},
            "kafka": {"consumer": {"max_poll_records": 200}},
            "performance": {"warmup_labels": 100, "window_size": 50},
        }
    )


def _prediction(i: int, prediction: Any = None) -> Record:
    body = {
        "model": "m",
        "event_id": f"e{i}",
        "timestamp": T0 + i,
        "features": {"a": float(i % 7)},
        "prediction": i % 2 if prediction is None else prediction,
    }
    return Record("in", 0, i, b"m", orjson.dumps(body), int((T0 + i) * 1000))


def _label_record(offset: int, value: bytes | None, time_ms: int | None = None) -> Record:
    stamp = int((T0 + offset + 1) * 1000) if time_ms is None else time_ms
    return Record("labels", 0, offset, b"m", value, stamp)


def _reasons(run: RecordedRun) -> Counter[str]:
    return Counter(
        dict(m.headers)["monitord.error.reason"].decode() for m in run.sink.messages(DEAD_LETTERS)
    )


def _accounted(run: RecordedRun) -> int:
    """Label records the join answered for: joined, counted, waiting, or dead-lettered."""
    counts = run.daemon.joins.counts
    told = sum(n for (_, outcome), n in counts.items() if outcome not in ("evicted",))
    waiting = sum(len(store.early) for store in run.daemon.joins.stores.values())
    return told + waiting + sum(_reasons(run).values())


HOSTILE_VALUES: list[bytes | None] = [
    b'{"event_id": "e0", "label": NaN}',
    b'{"event_id": "e1", "label": Infinity}',
    b'{"event_id": "e2", "label": -Infinity}',
    b'{"event_id": "e3", "label": 1e309}',
    b'{"event_id": "e4", "label": 1e308}',
    b'{"event_id": "e5", "label": -0.0}',
    b'{"event_id": "e6", "label": ' + str(2**200).encode() + b"}",
    b'{"event_id": "e7", "label": ' + str(2**2000).encode() + b"}",
    b'{"event_id": "e8", "label": true}',
    b'{"event_id": "e9", "label": "1"}',
    b'{"event_id": "e10", "label": [1, [2, {"a": 3}]]}',
    b'{"event_id": "e11", "label": {"a": 1}}',
    b'{"event_id": "e12", "label": "' + b"x" * 900_000 + b'"}',
    b'{"event_id": "e13", "label": "' + b"x" * 1_100_000 + b'"}',
    b'{"event_id": "e14", "label": ""}',
    b'{"event_id": "e15", "label": null}',
    b'{"label": 1}',
    b'{"event_id": 1.5, "label": 1}',
    b'{"event_id": true, "label": 1}',
    b'{"event_id": ["e16"], "label": 1}',
    b'{"event_id": "' + b"e" * 100_000 + b'", "label": 1}',
    b'{"event_id": "e17", "label": 1, "model": 5}',
    b'{"event_id": "e18", "label": 1, "model": ["m"]}',
    b"\xff\xfe\x00garbage",
    b"[1, 2, 3]",
    b"42",
    b'"e19"',
    None,  # a tombstone
    b'{"event_id": "e20", "label": 1, "timestamp": 1e308}',
    b'{"event_id": "e21", "label": 1, "timestamp": -1e308}',
    b'{"event_id": "e22", "label": 1, "timestamp": "9999-12-31T23:59:59-23:59"}',
    b'{"event_id": "e23", "label": 1, "timestamp": [1, 2]}',
    b'{"event_id": "e24", "label": 1, "timestamp": true}',
    b'{"event_id": "e25", "label": 1, "timestamp": "' + b"9" * 100_000 + b'"}',
    b'{"event_id": ' + str(2**70).encode() + b', "label": 1}',
    b'{"event_id": -1, "label": 1}',
]


def test_every_hostile_label_record_is_joined_counted_or_dead_lettered() -> None:
    n = 200
    labels = [_label_record(k, value) for k, value in enumerate(HOSTILE_VALUES)]
    run = RecordedRun(_config(), [_prediction(i) for i in range(n)] + labels).drain()
    assert _accounted(run) == len(labels), (run.daemon.joins.counts, _reasons(run))
    assert set(_reasons(run)) <= {
        "invalid_json",
        "not_an_object",
        "oversize",
        "missing_event_id",
        "missing_label",
        "empty",
    }, _reasons(run)
    for message in run.sink.messages(DEAD_LETTERS):
        detail = dict(message.headers).get("monitord.error.detail", b"")
        assert detail, message.headers


@pytest.mark.parametrize("time_ms", [0, -1, -(2**62), 2**62, int((T0 + 10**9) * 1000)], ids=str)
def test_labels_of_hostile_record_times_are_released_and_answered_for(time_ms: int) -> None:
    n = 300
    labels = [
        _label_record(i, orjson.dumps({"event_id": f"e{i}", "label": i % 2}), time_ms)
        for i in range(n)
    ]
    run = RecordedRun(_config(), [_prediction(i) for i in range(n)] + labels).drain()
    assert run.daemon.joins.gate.held() == 0
    assert _accounted(run) == n, run.daemon.joins.counts


def test_three_hundred_thousand_orphans_keep_the_join_bounded_and_counted() -> None:
    config = _config(max_pending=100, remember_joined=100)
    join = LabelJoin(config.labels, config.events, config.limits.max_name_chars)
    tp = TopicPartition("labels", 0)
    n, offset = 300_000, 0
    for start in range(0, n, 10_000):
        records = [
            _label_record(
                start + k,
                orjson.dumps({"event_id": f"o{start + k}", "label": "x" * 300}),
            )
            for k in range(10_000)
        ]
        offset += len(records)
        join.hold({tp: records})
        join.fold(math.inf)
    (store,) = join.stores.values()
    assert len(store.early) == 100
    assert len(store.early_order) <= 2 * 100 + 1024 + 1
    assert join.gate.held() == 0
    assert join.gate._bytes == 0
    held_text = sum(len(label) for label, *_ in store.early.values())
    assert held_text <= 100 * 256
    assert join.counts["", "orphan"] == n - 100


def test_a_stream_of_only_duplicate_and_conflicting_labels_is_counted_and_bounded() -> None:
    n = 200
    predictions = [_prediction(i) for i in range(n)]
    labels = [
        _label_record(k, orjson.dumps({"event_id": "e7", "label": k % 3}), int((T0 + 8) * 1000))
        for k in range(5000)
    ]
    run = RecordedRun(_config(), predictions + labels).drain()
    counts = run.daemon.joins.counts
    assert counts["m", "joined"] == 1
    assert counts["", "duplicate"] + counts["", "conflicting"] == 4999
    assert counts["", "conflicting"] > 0
    assert sum(len(s.done) for s in run.daemon.joins.stores.values()) <= n


def _inline(i: int, prediction: Any, label: Any) -> Record:
    body = {
        "model": "m",
        "event_id": f"e{i}",
        "timestamp": T0 + i,
        "features": {"a": float(i % 7)},
        "prediction": prediction,
        "label": label,
    }
    value = json.dumps(body).encode()  # orjson refuses integers beyond 64 bits
    return Record("in", 0, i, b"m", value, int((T0 + i) * 1000))


def _finite_state(run: RecordedRun) -> None:
    version = run.daemon.performance.versions[KEY]
    _, arrays = version.snapshot()
    for name, array in arrays.items():
        if np.asarray(array).dtype.kind == "f":
            assert np.isfinite(array).all(), name


def test_a_regression_model_switching_to_classes_mid_stream_is_not_silently_unscored() -> None:
    config = parse_config({"performance": {"warmup_labels": 100, "window_size": 50}})
    rng = np.random.default_rng(1)
    rows = [_inline(i, float(rng.normal()), float(rng.normal())) for i in range(300)]
    rows += [_inline(300 + i, "cat", 1.0) for i in range(100)]  # breaks the prediction column
    rows += [_inline(400 + i, 0.5, ["dog", "yes", True][i % 3]) for i in range(300)]
    run = RecordedRun(config, rows).drain()
    version = run.daemon.performance.versions[KEY]
    assert version.reference is not None
    assert version.reference.scoring.task == "regression"
    _finite_state(run)
    assert len(run.sink.messages(DEAD_LETTERS)) == 100  # the text predictions
    # 300 labels are no numbers a regression scores: counted, not lost.
    assert run.daemon.joins.counts["m", "unscored"] == 300, run.daemon.joins.counts
    assert version.rows == 300


def test_probabilities_outside_the_unit_interval_are_not_read_as_classes() -> None:
    config = parse_config({"performance": {"warmup_labels": 100, "window_size": 50}})
    rng = np.random.default_rng(2)
    rows = [_inline(i, float(rng.uniform()), int(rng.integers(2))) for i in range(200)]
    rows += [_inline(200 + i, 1e6 if i % 2 else -1e6, 1) for i in range(100)]
    run = RecordedRun(config, rows).drain()
    version = run.daemon.performance.versions[KEY]
    assert version.reference is not None
    assert version.reference.scoring.probabilistic
    _finite_state(run)
    assert run.daemon.joins.counts["m", "unscored"] == 100, run.daemon.joins.counts


def test_huge_and_tiny_inline_labels_leave_the_error_stream_finite() -> None:
    config = parse_config({"performance": {"warmup_labels": 100, "window_size": 50}})
    rng = np.random.default_rng(3)
    rows = [_inline(i, float(rng.normal()), float(rng.normal())) for i in range(200)]
    hostile = [1e308, -1e308, 5e-324, -0.0, 2**200, True, "x", None, [1], {"a": 1}]
    rows += [_inline(200 + i, -1e150, hostile[i % len(hostile)]) for i in range(200)]
    rows += [_inline(400 + i, float(rng.normal()), float(rng.normal())) for i in range(200)]
    run = RecordedRun(config, rows).drain()
    _finite_state(run)
    version = run.daemon.performance.versions[KEY]
    assert all(math.isfinite(v) for v in version.last.values()), version.last
    counts = run.daemon.joins.counts
    assert counts["m", "bad_label"] == 40, counts  # the arrays and objects
    assert counts["m", "unscored"] == 40, counts  # True and "x": no numbers to regress


def _replay(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["replay", *args, "--model", "m"]) == 0
    return capsys.readouterr().err


def test_replay_accounts_for_every_row_of_a_hostile_labels_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 1200
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,x1,prediction\n" + "".join(f"e{i},{i % 7},{i % 2}\n" for i in range(n))
    )
    lines = [json.dumps({"event_id": f"e{i}", "label": i % 2}) for i in range(n)]
    lines += [
        json.dumps({"event_id": "e5", "label": 1}),  # the same again
        json.dumps({"event_id": "e5", "label": 0}),  # another
        '{"event_id": "e7", "label": NaN}',
        '{"event_id": "e8", "label": [1]}',
        '{"event_id": "e9", "label": null}',
        "[]",
        json.dumps({"event_id": "nowhere", "label": 1}),
        json.dumps({"event_id": "nowhere either", "label": 1}),
    ]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("\n".join(lines) + "\n")
    err = _replay([str(events), "--labels", str(labels)], capsys)
    assert (
        "4 of 1208 label rows dead-lettered (invalid_json 1, missing_label 2, not_an_object 1)"
        in err
    )
    assert (
        f"labels joined to {n} of {n} rows; not joined: conflicting 1, duplicate 1, orphan 2" in err
    )


def test_replay_tells_of_labels_its_task_cannot_score(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 1500
    rng = np.random.default_rng(4)
    events = tmp_path / "events.csv"
    events.write_text(
        "event_id,x1,prediction\n" + "".join(f"e{i},{i % 7},{rng.normal():.4f}\n" for i in range(n))
    )
    labels = tmp_path / "labels.jsonl"  # JSON keeps each label's type (a CSV column has one)
    values = [round(float(rng.normal()), 4) if i < 1000 else "dog" for i in range(n)]
    labels.write_text(
        "".join(json.dumps({"event_id": f"e{i}", "label": v}) + "\n" for i, v in enumerate(values))
    )
    err = _replay([str(events), "--labels", str(labels)], capsys)
    assert f"labels joined to {n} of {n} rows" in err
    assert "500 joined rows left out of performance" in err, err


def _value_bytes(records: list[Record]) -> int:
    return sum(len(record.value or b"") for record in records)


def test_the_performance_stream_holds_no_padded_record_bytes() -> None:
    # Label records padded to 100 kB each (fields beyond id and label are ignored): the
    # warm-up and the open window keep their rows, not the records' bytes.
    n, pad = 140, "x" * 100_000
    labels = [
        _label_record(i, orjson.dumps({"event_id": f"e{i}", "label": i % 2, "pad": pad}))
        for i in range(n)
    ]
    run = RecordedRun(_config(), [_prediction(i) for i in range(n)] + labels).drain()
    version = run.daemon.performance.versions[KEY]
    assert version.rows == n
    kept = [row.record for row in version.reference_rows + version.window]
    assert _value_bytes(kept) <= len(kept) * 2048, _value_bytes(kept)


@pytest.mark.parametrize("prediction", [[0.125] * 20_000, {"p": [0.125] * 20_000}], ids=str)
def test_array_and_object_predictions_are_dead_lettered_not_held(prediction: Any) -> None:
    n = 50
    run = RecordedRun(_config(), [_prediction(i, prediction) for i in range(n)]).drain()
    assert _reasons(run) == {"wrong_type": n}
    assert run.daemon.joins.pending() == 0


def test_a_second_label_before_its_prediction_is_told_duplicate_or_conflicting() -> None:
    # Labels stamped before their prediction (a producer's clock behind) wait as early
    # labels; another label for the same id while it waits is the same, or another.
    config = parse_config(
        {"labels": {"topics": ["labels"]}, "kafka": {"consumer": {"max_poll_records": 20}}}
    )
    early_ms = int((T0 + 1) * 1000)
    labels = [
        _label_record(k, orjson.dumps({"event_id": "e150", "label": value}), early_ms)
        for k, value in enumerate([1, 1, 0, 1.0, 0])
    ]
    run = RecordedRun(config, labels + [_prediction(i) for i in range(200)]).drain()
    counts = run.daemon.joins.counts
    assert counts["m", "joined"] == 1
    # The first label stands, as once joined (`JoinStore.take`): 1.0 is 1, 0 is another.
    assert (counts["", "duplicate"], counts["", "conflicting"]) == (2, 2), counts


def test_hostile_labels_waiting_and_joined_survive_a_crash_and_restart(tmp_path: Path) -> None:
    n = 400
    config = parse_config(
        {
            "labels": {"topics": ["labels"]},
            "kafka": {"consumer": {"max_poll_records": 50}},
            "checkpoint": {"interval_events": 50},
            "performance": {"warmup_labels": 100, "window_size": 50},
        }
    )
    odd: list[Any] = [2**200, -0.0, 1e308, True, "x" * 300, "", -(2**63), 2**64]
    labels = [
        # Every fifth stamped at 0 or before its prediction: it waits, untimed or early.
        _label_record(
            k,
            json.dumps({"event_id": f"e{k}", "label": odd[k % len(odd)]}).encode(),
            (0 if k % 10 == 0 else int((T0 + 1) * 1000)) if k % 5 == 0 else None,
        )
        for k in range(n)
    ]
    records = labels + [_prediction(i) for i in range(n)]
    whole = RecordedRun(config, records, tmp_path / "whole.sqlite").drain()
    first = RecordedRun(config, records, tmp_path / "crashed.sqlite")
    first.steps(6)
    first.crash()
    second = RecordedRun(
        config, records, tmp_path / "crashed.sqlite", committed=first.source.committed
    ).drain()
    assert whole.daemon.performance.versions[KEY].rows == n
    assert second.daemon.performance.versions[KEY].rows == n
    assert not any(store.early for store in second.daemon.joins.stores.values())


def test_probabilities_of_a_class_no_label_names_are_told_not_scored_as_all_misses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = parse_config({"performance": {"warmup_labels": 100, "window_size": 50}})
    rng = np.random.default_rng(5)
    scores = rng.uniform(size=200).round(4).tolist()
    rows = [_inline(i, p, "yes" if p > 0.5 else "no") for i, p in enumerate(scores)]
    run = RecordedRun(config, rows).drain()
    version = run.daemon.performance.versions[KEY]
    assert version.reference is not None
    assert version.reference.scoring.probabilistic
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("performance.positive_class" in m and "'1'" in m for m in warned), warned


def _future_first(n: int, record_ms: int) -> list[Record]:
    """``n`` predictions, the first stamped 2100-01-01 (its record at ``record_ms``), and a
    label stamped at its prediction's time for every 100th from the 100th."""
    future = orjson.loads(_prediction(0).value or b"")
    future["timestamp"] = "2100-01-01T00:00:00Z"
    first = Record("in", 0, 0, b"m", orjson.dumps(future), record_ms)
    labels = [
        _label_record(k, orjson.dumps({"event_id": f"e{i}", "label": 1}), int((T0 + i) * 1000))
        for k, i in enumerate(range(100, n, 100))
    ]
    return [first] + [_prediction(i) for i in range(1, n)] + labels


def test_an_untimed_event_stamped_in_the_far_future_releases_no_label_early() -> None:
    # A record without a time tells how far its partition is read by its event's time,
    # unless that is after the wall clock plus events.max_time_ahead_s (as a record's).
    run = RecordedRun(_config(max_delay_s=500.0), _future_first(3000, -1)).drain()
    counts = run.daemon.joins.counts
    assert counts["m", "joined"] == 29, counts
    assert counts["", "orphan"] == 0, counts


@pytest.mark.parametrize("record_ms", [-1, 4_102_444_800_000], ids=["untimed", "year-2100"])
def test_one_prediction_stamped_in_the_far_future_does_not_stop_expiry_or_coverage(
    record_ms: int,
) -> None:
    n = 3000
    config = parse_config(
        {
            "labels": {
                "topics": ["labels"],
                "max_delay_s": 500.0,
                "expected_delay_s": 100.0,
                "min_coverage": 0.5,
                "coverage_window": 100,
            },
            "kafka": {"consumer": {"max_poll_records": 200}},
        }
    )
    run = RecordedRun(config, _future_first(n, record_ms)).drain()
    counts = run.daemon.joins.counts
    # Predictions unlabelled 500 s past their time are given up, the future one aside.
    assert counts["m", "evicted"] >= n - 30 - 600, counts
    coverage = [e for e in run.evaluations if e.features == ("unlabelled_share",)]
    assert len(coverage) >= (n - 600) // 100, len(coverage)
