"""A performance stream started from a profile's (prediction, label) pairs: no warm-up, and
checkpointed without storing the pairs again."""

from __future__ import annotations

import numpy as np

from connectors.stream import Record, TopicPartition
from monitord.config import PerformanceSettings
from monitord.join_store import Joined
from monitord.performance import VersionPerformance

SETTINGS = PerformanceSettings()
TP = TopicPartition("events", 0)


def _pairs(n: int, miss_rate: float, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    predictions = np.where(rng.random(n) < miss_rate, 1 - labels, labels)
    return list(zip(predictions.tolist(), labels.tolist(), strict=True))


def _joined(pairs: list[tuple[int, int]], first_offset: int) -> list[Joined]:
    out = []
    for i, (prediction, label) in enumerate(pairs, start=first_offset):
        record = Record(TP.topic, TP.partition, i, None, b"{}", 1000 * i)
        out.append(Joined("m", "1", prediction, label, float(i), float(i) + 5.0, TP, i, record))
    return out


def _stream(reference: list[tuple[int, int]] | None = None) -> VersionPerformance:
    return VersionPerformance("m", "1", SETTINGS, 1e6, 0.002, reference or ())


def test_profile_pairs_are_the_reference_from_row_0() -> None:
    reference = _pairs(500, 0.05, seed=1)
    stream = _stream(reference)
    assert not stream.warming_up
    assert stream.reference is not None
    assert stream.reference.rows == 500
    # Fewer rows than performance.warmup_labels: a warm-up would still be under way.
    evaluations = stream.update(_joined(_pairs(200, 0.05, seed=2) + _pairs(200, 0.4, 3), 0))
    windows = [e.result for e in evaluations if e.result.detector == "performance"]
    assert [(w.first_row, w.row, bool(w.drifted[0])) for w in windows] == [
        (0, 199, False),
        (200, 399, True),
    ]
    assert {e.profile_id for e in evaluations} == {stream.reference_id}
    assert (
        _stream(reference).reference_id
        == stream.reference_id
        != _stream(_pairs(500, 0.05, seed=9)).reference_id
    )
    # Without pairs, the same rows are the warm-up.
    assert _stream().update(_joined(_pairs(400, 0.05, seed=2), 0)) == []


def test_checkpoint_leaves_the_pairs_to_the_profile_and_restores_to_the_same_stream() -> None:
    reference = _pairs(300, 0.05, seed=1)
    traffic = _joined(_pairs(250, 0.05, seed=2) + _pairs(600, 0.3, seed=3), 0)
    whole = _stream(reference)
    expected = whole.update(traffic)

    first = _stream(reference)
    first.update(traffic[:250])
    state, arrays = first.snapshot()
    assert bytes(arrays["rows"]).startswith(b'{"reference":[],')
    restored = _stream(reference)  # as Performance makes it: from the same profile
    restored.restore(state, arrays)
    assert restored.reference_id == whole.reference_id
    rest = restored.update(traffic[250:])
    assert [(e.result.detector, e.result.first_row, e.result.row) for e in rest] == [
        (e.result.detector, e.result.first_row, e.result.row)
        for e in expected
        if e.result.row >= 250
    ]
