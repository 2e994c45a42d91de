"""A version's performance stream: what it evaluates does not depend on how the joined pairs
are batched (a restart or another poll interleaving batches them differently)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from connectors.stream import Record, TopicPartition
from monitord.config import parse_config
from monitord.join_store import Joined
from monitord.monitor import OffsetRange
from monitord.performance import Performance, _finite_median, _offset_ranges

T0 = 1_700_000_000.0


def _pairs(n: int = 6000, change: int = 3000, seed: int = 11) -> list[Joined]:
    """Joined pairs of a classifier whose labels' rule moves at pair ``change``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, (n, 2))
    limit = np.where(np.arange(n) < change, 8.0, 5.5)
    labels = (x[:, 0] + x[:, 1] <= limit) ^ (rng.random(n) < 0.1)
    predictions = x[:, 0] + x[:, 1] <= 8.0
    partition = TopicPartition("in", 0)
    return [
        Joined(
            "m",
            "1",
            int(predictions[i]),
            bool(labels[i]),
            T0 + i,
            T0 + i + 60.0,
            partition,
            i,
            Record("labels", 0, i, b"m", b"{}", int((T0 + i + 60.0) * 1000)),
        )
        for i in range(n)
    ]


def _evaluations(pairs: list[Joined], batch: int) -> list[tuple[Any, ...]]:
    performance = Performance(parse_config({}))
    found = []
    for start in range(0, len(pairs), batch):
        for e in performance.update(pairs[start : start + batch]):
            result = e.result
            found.append(
                (
                    result.detector,
                    result.first_row,
                    result.row,
                    e.offsets,
                    e.start_time,
                    e.end_time,
                    e.last_record.offset,
                    e.evidence,
                )
            )
    return found


@pytest.mark.parametrize("batch", [1, 37, 250])
def test_evaluations_do_not_depend_on_the_batches(batch: int) -> None:
    pairs = _pairs()
    whole = _evaluations(pairs, len(pairs))
    # The labels' rule moves, so their share moves too: label drift is tested per window.
    assert {e[0] for e in whole} == {"performance", "error_change", "label_drift"}
    assert _evaluations(pairs, batch) == whole


def _regression_pairs(n: int = 6000, change: int = 3000, seed: int = 12) -> list[Joined]:
    """Joined pairs of a regression whose errors grow at pair ``change``."""
    rng = np.random.default_rng(seed)
    predictions = rng.normal(size=n)
    labels = predictions + rng.normal(size=n) * np.where(np.arange(n) < change, 0.1, 0.3)
    return [
        pair._replace(prediction=float(predictions[i]), label=float(labels[i]))
        for i, pair in enumerate(_pairs(n, change, seed))
    ]


def _described(evaluations: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            e.result.detector,
            e.result.row,
            str(e.result.statistic.tolist()),  # as text: NaN equals NaN
            str(e.result.threshold.tolist()),
            e.result.drifted.tolist(),
            e.offsets,
            e.start_time,
            e.end_time,
            e.evidence,
        )
        for e in evaluations
    ]


@pytest.mark.parametrize("cut", [999, 1500, 4321])
@pytest.mark.parametrize("make", [_pairs, _regression_pairs], ids=["classes", "regression"])
def test_a_restored_stream_evaluates_as_an_uninterrupted_one(cut: int, make: Any) -> None:
    # Cut in the warm-up, in the first window and late in a window: what the restored
    # stream tests (its open window's misses scored again) equals the uninterrupted run.
    pairs, key = make(), ("m", "1")
    config = parse_config({})
    uninterrupted, before = Performance(config), Performance(config)
    for performance in (uninterrupted, before):
        performance.update(pairs[:cut])
    snapshot = before.snapshot(key)
    assert snapshot is not None
    restored = Performance(config)
    restored.restore(key, *snapshot)
    expected, found = [], []
    for start in range(cut, len(pairs), 700):
        expected += uninterrupted.update(pairs[start : start + 700])
        found += restored.update(pairs[start : start + 700])
    assert "performance" in {e.result.detector for e in expected}
    assert _described(found) == _described(expected)


def test_the_median_delay_is_numpys_to_the_bit() -> None:
    # Zeros of both signs, ties, sums that overflow: np.median's arithmetic, not a sort's.
    rng = np.random.default_rng(5)
    edges = [0.0, -0.0, 1.0, -1.0, 2.5, 1.7976931348623157e308, -1.7976931348623157e308, 5e-324]
    for size in [*range(1, 12), 199, 200, 201]:
        for values in (rng.normal(size=size) * 1e3, rng.choice(edges, size=size)):
            with np.errstate(over="ignore"):
                expected = np.float64(np.median(values))
            assert np.float64(_finite_median(values)).tobytes() == expected.tobytes(), values


def test_offset_ranges_of_one_partition_equal_the_general_case() -> None:
    # The common case checks the partitions' identity first: equal partitions that are not
    # one object, and several partitions (the step per row), give the same ranges.
    pairs = _pairs(40)
    copies = [p._replace(partition=TopicPartition("in", 0), offset=100 - p.offset) for p in pairs]
    mixed = [p._replace(partition=TopicPartition("in", p.offset % 3)) for p in pairs]
    assert _offset_ranges(pairs) == (OffsetRange("in", 0, 0, 39),)
    assert _offset_ranges(copies) == (OffsetRange("in", 0, 61, 100),)
    assert _offset_ranges(mixed) == tuple(
        OffsetRange("in", k, min(range(k, 40, 3)), max(range(k, 40, 3))) for k in range(3)
    )
