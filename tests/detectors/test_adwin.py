"""ADWIN: change points identical to river.drift.ADWIN 0.26, NaN skipping, the contract."""

from __future__ import annotations

import io
import itertools
import random
from typing import Any

import numpy as np
import pytest
from river import drift

from detectors.adwin import ADWIN
from detectors.detection import Detection, DetectorInputError, FloatArray

RiverADWIN: Any = drift.ADWIN  # river ships no type hints; this keeps mypy --strict honest

CONFIGS: list[dict[str, Any]] = [
    {},  # river's defaults
    {"delta": 0.05},
    {"delta": 1e-4},
    {"clock": 1, "grace_period": 30},
    {"clock": 7, "grace_period": 0, "min_window_length": 2, "max_buckets": 2},
]


def make_streams(seed: int, n_rows: int, n_streams: int) -> FloatArray:
    """Columns with 0-3 change points: mean shifts, variance shifts, bernoulli, large offsets."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_rows, n_streams))
    for s in range(n_streams):
        n_cuts = int(rng.integers(0, 4))
        cuts = np.sort(rng.choice(np.arange(100, n_rows - 100), size=n_cuts, replace=False))
        bounds = [0, *cuts.tolist(), n_rows]
        for lo, hi in itertools.pairwise(bounds):
            kind = s % 4
            if kind == 0:
                out[lo:hi, s] = rng.normal(rng.uniform(-1.5, 1.5), 1.0, hi - lo)
            elif kind == 1:
                out[lo:hi, s] = rng.normal(0.3, rng.uniform(0.2, 3.0), hi - lo)
            elif kind == 2:
                out[lo:hi, s] = rng.random(hi - lo) < rng.uniform(0.05, 0.95)
            else:
                out[lo:hi, s] = rng.normal(1e3 + rng.uniform(-3, 3), 2.0, hi - lo)
    return out


def river_run(column: FloatArray, params: dict[str, Any]) -> tuple[list[int], float, int]:
    """river's detection rows, final estimation and final width for one stream."""
    detector = RiverADWIN(**params)
    rows = []
    for i, x in enumerate(column.tolist()):
        detector.update(x)
        if detector.drift_detected:
            rows.append(i)
    return rows, float(detector.estimation), int(detector.width)


def rows_by_feature(detections: list[Detection], n_features: int) -> list[list[int]]:
    rows: list[list[int]] = [[] for _ in range(n_features)]
    for detection in detections:
        for f in np.flatnonzero(detection.drifted):
            rows[f].append(detection.row)
    return rows


def feed_in_batches(detector: ADWIN, data: FloatArray, seed: int) -> list[Detection]:
    rng = np.random.default_rng(seed)
    detections, start = [], 0
    while start < data.shape[0]:
        stop = min(start + int(rng.integers(1, 400)), data.shape[0])
        detections.extend(detector.update(data[start:stop]))
        start = stop
    return detections


def assert_same_detections(a: list[Detection], b: list[Detection]) -> None:
    assert [d.row for d in a] == [d.row for d in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.drifted, y.drifted)
        np.testing.assert_array_equal(x.statistic, y.statistic)
        np.testing.assert_array_equal(x.n_observed, y.n_observed)


@pytest.mark.parametrize("params", CONFIGS)
def test_change_points_match_river(params: dict[str, Any]) -> None:
    data = make_streams(seed=len(str(params)), n_rows=4000, n_streams=60)
    expected = [river_run(data[:, f], params) for f in range(data.shape[1])]
    assert sum(len(rows) for rows, _, _ in expected) >= 30  # the streams do drift

    whole = ADWIN(data.shape[1], **params)
    whole_detections = whole.update(data)
    batched = ADWIN(data.shape[1], **params)
    batched_detections = feed_in_batches(batched, data, seed=1)

    for detector, detections in [(whole, whole_detections), (batched, batched_detections)]:
        rows = [d.row for d in detections]
        assert rows == sorted(set(rows))
        assert rows_by_feature(detections, data.shape[1]) == [rows for rows, _, _ in expected]
        np.testing.assert_allclose(detector.estimation, [e for _, e, _ in expected], atol=1e-9)
        np.testing.assert_array_equal(detector.width, [w for _, _, w in expected])
        assert detector.rows_seen == data.shape[0]
    assert_same_detections(whole_detections, batched_detections)


def test_long_streams_match_river() -> None:
    # Tens of thousands of values fill many bucket rows and exercise the merge cascade.
    rng = np.random.default_rng(11)
    n = 60_000
    data = np.column_stack(
        [
            rng.normal(0.0, 1.0, n),
            rng.normal(np.linspace(0.0, 0.5, n), 1.0),
            rng.random(n) < np.where(np.arange(n) < 45_000, 0.2, 0.25),
        ]
    ).astype(np.float64)
    detector = ADWIN(3)
    rows = rows_by_feature(detector.update(data), 3)
    for f in range(3):
        expected_rows, estimation, width = river_run(data[:, f], {})
        assert rows[f] == expected_rows
        assert detector.estimation[f] == pytest.approx(estimation, abs=1e-9)
        assert detector.width[f] == width


def test_river_docstring_example() -> None:
    rng = random.Random(12345)
    stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
    detections = ADWIN(1).update(np.array(stream, dtype=np.float64)[:, None])
    assert [d.row for d in detections] == [1023]


def test_many_detections_grow_the_output_buffers() -> None:
    # Blocks alternating 0/10 with a scan on every value: a cut per block per feature, at
    # rows offset per feature so there are far more detection rows than the 64 preallocated.
    params: dict[str, Any] = {"clock": 1, "grace_period": 5}
    n = 6000
    data = np.column_stack([((np.arange(n) + 17 * f) // 40 % 2) * 10.0 for f in range(3)])
    detections = ADWIN(3, **params).update(data)
    assert len(detections) > 200
    expected = [river_run(data[:, f], params)[0] for f in range(3)]
    assert rows_by_feature(detections, 3) == expected


def test_nonfinite_values_are_skipped_and_counted() -> None:
    clean = make_streams(seed=5, n_rows=3000, n_streams=12)
    rng = np.random.default_rng(6)
    n_total = 3700
    holes = np.zeros((n_total, clean.shape[1]), dtype=bool)
    for f in range(clean.shape[1]):
        holes[rng.choice(n_total, size=n_total - clean.shape[0], replace=False), f] = True
    data = rng.choice([np.nan, np.inf, -np.inf], size=holes.shape)
    data.T[~holes.T] = clean.T.ravel()  # column f's clean values, in order, at its finite rows

    detector = ADWIN(clean.shape[1])
    rows = rows_by_feature(feed_in_batches(detector, data, seed=7), clean.shape[1])
    detected = 0
    for f in range(clean.shape[1]):
        expected_rows, estimation, width = river_run(clean[:, f], {})
        position = np.flatnonzero(~holes[:, f])  # clean index -> stream row
        assert rows[f] == position[expected_rows].tolist()
        assert detector.estimation[f] == pytest.approx(estimation, abs=1e-9)
        assert detector.width[f] == width
        detected += len(expected_rows)
    assert detected > 0
    np.testing.assert_array_equal(detector.n_skipped, holes.sum(axis=0))
    assert detector.rows_seen == n_total


def test_detection_fields() -> None:
    data = make_streams(seed=3, n_rows=3000, n_streams=8)
    detector = ADWIN(8)
    detections = detector.update(data)
    assert detections
    for d in detections:
        assert (d.detector, d.first_row, d.p_value) == ("adwin", d.row, None)
        assert np.isnan(d.threshold).all()
        assert (d.statistic[d.drifted] > 0).all()
        assert (d.statistic[~d.drifted] == 0).all()
    assert detector.n_detections.sum() == sum(int(d.drifted.sum()) for d in detections)
    first = detections[0]
    replay = ADWIN(8)
    replay.update(data[: first.row + 1])
    np.testing.assert_array_equal(first.n_observed, replay.width)


def test_snapshot_restore_resumes_exactly() -> None:
    data = make_streams(seed=8, n_rows=3000, n_streams=10)
    data[::13, 2] = np.nan
    uninterrupted = ADWIN(10, delta=0.01)
    expected = uninterrupted.update(data)

    first = ADWIN(10, delta=0.01)
    detections = first.update(data[:1234])
    buffer = io.BytesIO()
    arrays: dict[str, Any] = first.snapshot()
    np.savez(buffer, **arrays)  # through the on-disk format, read back without pickle
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as saved:
        state = {key: saved[key] for key in saved.files}
    resumed = ADWIN(10, delta=0.01)
    resumed.restore(state)
    detections += resumed.update(data[1234:])

    assert_same_detections(detections, expected)
    final, reference = resumed.snapshot(), uninterrupted.snapshot()
    assert final.keys() == reference.keys()
    for key, value in reference.items():
        np.testing.assert_array_equal(final[key], value, err_msg=key)


def test_restore_rejects_a_mismatched_state() -> None:
    state = ADWIN(3).snapshot()
    with pytest.raises(ValueError, match="n_features=2"):
        ADWIN(2).restore(state)
    with pytest.raises(ValueError, match="delta"):
        ADWIN(3, delta=0.01).restore(state)
    with pytest.raises(ValueError, match="missing"):
        ADWIN(3).restore({k: v for k, v in state.items() if k != "width"})
    tampered = dict(state, counts=state["counts"] + 1)
    with pytest.raises(ValueError, match="inconsistent"):
        ADWIN(3).restore(tampered)


def test_update_does_not_mutate_input() -> None:
    data = make_streams(seed=9, n_rows=500, n_streams=4)
    data[::7, 1] = np.nan
    copy = data.copy()
    ADWIN(4).update(data)
    np.testing.assert_array_equal(data, copy)


def test_reset_equals_fresh_detector() -> None:
    data = make_streams(seed=10, n_rows=2000, n_streams=5)
    used = ADWIN(5)
    used.update(data[::-1].copy())
    used.reset()
    fresh = ADWIN(5)
    assert_same_detections(used.update(data), fresh.update(data))
    for key, value in fresh.snapshot().items():
        np.testing.assert_array_equal(used.snapshot()[key], value, err_msg=key)


def test_layout_of_the_batch_does_not_matter() -> None:
    data = make_streams(seed=12, n_rows=2000, n_streams=6)
    expected = ADWIN(6).update(data)
    assert_same_detections(ADWIN(6).update(np.asfortranarray(data)), expected)
    wide = np.zeros((2000, 12))
    wide[:, ::2] = data
    assert_same_detections(ADWIN(6).update(wide[:, ::2]), expected)


@pytest.mark.parametrize(
    "batch",
    [
        np.zeros((5, 3)),
        np.zeros(5),
        np.zeros((0, 2)),
        np.zeros((5, 2), dtype=np.float32),
        np.zeros((5, 2), dtype=np.int64),
        [[0.0, 1.0]],
    ],
    ids=["wrong-width", "1-d", "empty", "float32", "int64", "list"],
)
def test_bad_batches_raise(batch: Any) -> None:
    detector = ADWIN(2)
    with pytest.raises(DetectorInputError):
        detector.update(batch)
    assert detector.rows_seen == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_features", 0),
        ("n_features", 2.0),
        ("delta", 0.0),
        ("delta", 1.0),
        ("delta", float("nan")),
        ("clock", 0),
        ("clock", True),
        ("max_buckets", 1),
        ("min_window_length", 0),
        ("grace_period", -1),
        ("grace_period", 1.5),
    ],
)
def test_invalid_parameters_raise(name: str, value: Any) -> None:
    kwargs: dict[str, Any] = {"n_features": 2, name: value}
    with pytest.raises(ValueError, match=name):
        ADWIN(**kwargs)
