"""The label join and the performance stream under unlucky or hostile label traffic.

Each test drives the in-memory daemon end to end. Those marked ``xfail`` pin a defect of the
current code (the reason says which): they pass once it is fixed, and strict mode then asks
for the mark to go.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.stream import Polled, Record, TopicPartition, flatten
from monitord.config import Config, parse_config
from monitord.label_gate import LabelGate
from tests.monitord.recorded import RecordedRun

T0 = 1_700_000_000.0
KEY = ("m", "unversioned")


def _config(max_poll_records: int = 700, **labels: object) -> Config:
    return parse_config(
        {
            "labels": {"topics": ["labels"], **labels},
            "kafka": {"consumer": {"max_poll_records": max_poll_records}},
            "checkpoint": {"interval_events": 400},
        }
    )


def _prediction(i: int, offset: int | None = None, partition: int = 0) -> Record:
    body = {
        "model": "m",
        "event_id": f"e{i}",
        "timestamp": T0 + i,
        "features": {"a": float(i % 7), "b": float(i % 3)},
        "prediction": i % 2,
    }
    at = i if offset is None else offset
    return Record("in", partition, at, b"m", orjson.dumps(body), int((T0 + i) * 1000))


def _label(
    i: int, offset: int, partition: int = 0, time_ms: int | None = None, **extra: Any
) -> Record:
    body = {"event_id": f"e{i}", "label": i % 2, **extra}
    stamp = int((T0 + i + 1) * 1000) if time_ms is None else time_ms
    return Record("labels", partition, offset, b"m", orjson.dumps(body), stamp)


def _joined(run: RecordedRun) -> int:
    return run.daemon.joins.counts["m", "joined"]


def _rows(run: RecordedRun) -> list[tuple[Any, ...]]:
    """The version's performance stream as held: the warm-up rows, then the open window."""
    version = run.daemon.performance.versions[KEY]
    return [row[:5] for row in version.reference_rows + version.window]


def _stream(seed: int, n: int, partitions: int, early: float) -> list[Record]:
    """One model's predictions over ``partitions`` inference partitions and as many label
    partitions (partition ``i % partitions``), each label 0 to 300 s after its prediction,
    or (a share ``early``) stamped up to 50 s before it, as a producer's clock behind."""
    rnd = random.Random(seed)
    records = [_prediction(i, i // partitions, i % partitions) for i in range(n)]
    due = []
    for i in range(n):
        delay = -rnd.randint(1, 50) if rnd.random() < early else rnd.randint(0, 300)
        due.append((i + delay, i))
    offsets: Counter[int] = Counter()
    for at, i in sorted(due):
        p = i % partitions
        records.append(_label(i, offsets[p], p, int((T0 + at + 1) * 1000), label=int(at % 3 == 0)))
        offsets[p] += 1
    return records


def test_a_label_stamped_in_the_far_future_does_not_evict_the_pending_predictions() -> None:
    n = 600
    labels = [
        _label(i, i, timestamp="9000-01-01T00:00:00Z") if i == 50 else _label(i, i)
        for i in range(n)
    ]
    run = RecordedRun(_config(max_poll_records=100), [_prediction(i) for i in range(n)] + labels)
    run.drain()
    counts = run.daemon.joins.counts
    assert counts["m", "evicted"] <= 1  # at most the prediction of the label from the future
    assert _joined(run) >= n - 1


def test_label_records_turned_away_by_a_full_gate_are_not_committed() -> None:
    n = 100
    pad = "x" * 900
    labels = [_label(i, i, pad=pad) for i in range(n)]
    run = RecordedRun(_config(), [_prediction(i) for i in range(n)] + labels)
    # MAX_HELD_BYTES scaled down with the records: 100 labels of 900 kB against 64 MiB.
    run.daemon.joins.gate = LabelGate(max_bytes=64 * 1024)
    run.drain()  # MemorySource refuses the commit of offsets never read (Kafka would take it)
    assert _joined(run) == n


def test_a_full_gate_pauses_its_label_partition_instead_of_reading_it_again() -> None:
    # Labels stamped after every prediction (a backlog read from the start): none can be
    # folded before the inference partition is read to its end, so the gate fills.
    n, pad = 300, "x" * 900
    predictions = [_prediction(i) for i in range(3000)]
    late_ms = int((T0 + 4000) * 1000)
    labels = [_label(i, i, time_ms=late_ms + i, pad=pad) for i in range(n)]
    run = RecordedRun(_config(max_poll_records=100), predictions + labels)
    run.daemon.joins.gate = LabelGate(max_bytes=64 * 1024)  # about 50 of the labels
    polled: Counter[str] = Counter()
    paused_while_full = 0
    poll = run.source.poll

    def counting(timeout_s: float, max_records: int) -> Polled:
        nonlocal paused_while_full
        records = poll(timeout_s, max_records)
        polled.update(record.topic for record in flatten(records))
        paused_while_full += TopicPartition("labels", 0) in run.source.paused()
        return records

    run.source.poll = counting  # type: ignore[method-assign]
    run.drain()
    assert _joined(run) == n
    assert paused_while_full > 0
    # Read again only after the gate made room (about 50 labels a time, so each label at
    # most twice), not at each poll while the inference partition is read (thousands).
    assert polled["labels"] <= 2 * n, polled
    assert not run.source.paused()


def test_a_label_record_stamped_in_the_future_does_not_hold_back_its_partition() -> None:
    year_2100_ms = 4_102_444_800_000
    labels = [_label(i, i, time_ms=year_2100_ms if i == 10 else None) for i in range(300)]
    run = RecordedRun(_config(), [_prediction(i) for i in range(20_000)] + labels)
    run.steps(10)  # the inference partition is read far past every label, not to its end
    assert run.daemon.partitions.next_offset(TopicPartition("in", 0)) > 1000
    assert _joined(run) >= 299


@pytest.mark.parametrize("inference", ["bad_records", "no_record_times"])
def test_labels_are_folded_whatever_else_an_inference_partition_carries(inference: str) -> None:
    n = 20_000
    if inference == "bad_records":
        good = [_prediction(i) for i in range(n)]
        other = [Record("in", 1, i, b"x", b"not json", int((T0 + i) * 1000)) for i in range(n)]
    else:
        good = [_prediction(i)._replace(timestamp_ms=-1) for i in range(n)]
        other = []
    labels = [_label(i, i) for i in range(300)]
    run = RecordedRun(_config(), good + other + labels)
    run.steps(25)  # both inference partitions read past every label, not to their end
    assert run.daemon.partitions.next_offset(TopicPartition("in", 0)) > 1000
    assert _joined(run) == 300


def test_labels_of_one_model_on_several_partitions_keep_their_order_across_a_crash(
    tmp_path: Path,
) -> None:
    records = _stream(1, 3000, partitions=2, early=0.0)
    config = _config(max_poll_records=250)
    uninterrupted = RecordedRun(config, records, tmp_path / "whole.sqlite").drain()
    first = RecordedRun(config, records, tmp_path / "crashed.sqlite")
    first.steps(3)
    first.crash()
    committed = first.source.committed
    second = RecordedRun(config, records, tmp_path / "crashed.sqlite", committed=committed)
    second.drain()
    assert _rows(second) == _rows(uninterrupted)


def test_early_labels_keep_their_place_in_the_stream_across_a_crash(tmp_path: Path) -> None:
    records = _stream(1, 3000, partitions=1, early=0.05)
    config = _config(max_poll_records=250)
    uninterrupted = RecordedRun(config, records, tmp_path / "whole.sqlite").drain()
    first = RecordedRun(config, records, tmp_path / "crashed.sqlite")
    first.steps(2)
    first.crash()
    committed = first.source.committed
    second = RecordedRun(config, records, tmp_path / "crashed.sqlite", committed=committed)
    second.drain()
    assert _rows(second) == _rows(uninterrupted)


@pytest.mark.parametrize("partitions", [1, 3])
def test_early_labels_keep_their_place_in_the_stream_whatever_the_batch_size(
    partitions: int,
) -> None:
    # A fifth of the labels stamped before their predictions: released before or after
    # their prediction is read as the batch sizes fall, each pair joins in the same place.
    records = _stream(2, 3000, partitions=partitions, early=0.2)
    runs = [RecordedRun(_config(max_poll_records=n), records).drain() for n in (97, 250, 700)]
    assert _rows(runs[0]) == _rows(runs[1]) == _rows(runs[2])
    assert all(_joined(run) == 3000 for run in runs)


def test_predictions_restored_by_a_rebalance_meet_the_labels_folded_meanwhile(
    tmp_path: Path,
) -> None:
    n = 3000
    # Two inference partitions, one label partition: with one replica, every label joins.
    predictions = [_prediction(i, i // 2, i % 2) for i in range(n)]
    labels = [_label(i, k) for k, i in enumerate(sorted(range(n), key=lambda i: (i + 150, i)))]
    run = RecordedRun(_config(max_poll_records=250), predictions + labels, tmp_path / "s.sqlite")
    run.steps(4)
    moved = TopicPartition("in", 1)
    run.source.revoke([moved])  # another replica holds it a while, then leaves
    run.steps(3)
    run.source.assign([moved])
    run.drain()
    assert run.daemon.joins.counts["", "orphan"] == 0
    assert run.daemon.performance.versions[KEY].rows == n
