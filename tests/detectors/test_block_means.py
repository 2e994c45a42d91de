"""BlockMeanADWIN: ADWIN itself at block 1, river's ADWIN over block means at block L
(whatever the batch split), missing values and blocks, and quiet on dependent data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from river import drift
from scipy.signal import lfilter

from detectors.adwin import ADWIN
from detectors.block_means import BlockMeanADWIN
from detectors.detection import Detection, FloatArray

RiverADWIN: Any = drift.ADWIN  # river ships no type hints


def _shifted(seed: int, rows: int = 6000, columns: int = 3) -> FloatArray:
    """Columns whose mean moves up and down by 0.5 to 2 every 1,000 to 2,000 rows, with
    missing values."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 1.0, (rows, columns))
    for j in range(columns):
        change = int(rng.integers(1000, 2000))
        while change < rows:
            data[change:, j] += rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0)
            change += int(rng.integers(1000, 2000))
    data[rng.random(data.shape) < 0.05] = np.nan
    data[rng.random(data.shape) < 0.005] = np.inf  # non-finite counts as missing too
    return data


def _feed(detector: BlockMeanADWIN | ADWIN, data: FloatArray, sizes: list[int]) -> list[Detection]:
    detections, start = [], 0
    for size in sizes:
        detections += detector.update(data[start : start + size])
        start += size
    detections += detector.update(data[start:])
    return detections


def _uneven(seed: int, rows: int) -> list[int]:
    """Batch sizes from 1 row to several blocks, covering most of ``rows``."""
    sizes = np.random.default_rng(seed).choice([1, 2, 3, 7, 13, 50, 211], size=rows)
    return [int(s) for s in sizes[: int(np.searchsorted(np.cumsum(sizes), 0.9 * rows))]]


def _river_rows(data: FloatArray, block: int) -> list[list[int]]:
    """Per column, the stream rows at which river's ADWIN (defaults: delta 0.002, clock 32,
    max_buckets 5, min_window_length 5, grace_period 10) cuts when fed block means that
    skip missing values; a block without any finite value is not fed at all."""
    whole = data.shape[0] // block
    blocks = data[: whole * block].reshape(whole, block, data.shape[1])
    finite = np.isfinite(blocks)
    sums = np.where(finite, blocks, 0.0).sum(axis=1)
    counts = finite.sum(axis=1)
    rows: list[list[int]] = []
    for j in range(data.shape[1]):
        detector, found = RiverADWIN(delta=0.002), []
        for b in range(whole):
            if counts[b, j] == 0:
                continue
            detector.update(float(sums[b, j] / counts[b, j]))
            if detector.drift_detected:
                found.append((b + 1) * block - 1)
        rows.append(found)
    return rows


def _per_column(detections: list[Detection], columns: int) -> list[list[int]]:
    return [[d.row for d in detections if d.drifted[j]] for j in range(columns)]


def test_block_one_is_adwin_cut_for_cut() -> None:
    data = _shifted(0)
    ours = _feed(BlockMeanADWIN(3, block=1), data, _uneven(1, data.shape[0]))
    plain = ADWIN(3).update(data)
    assert len(ours) >= 3  # every column's shift is found
    assert [(d.first_row, d.row) for d in ours] == [(d.first_row, d.row) for d in plain]
    for a, b in zip(ours, plain, strict=True):
        assert np.array_equal(a.drifted, b.drifted)
        assert np.array_equal(a.statistic, b.statistic)
        assert np.array_equal(a.n_observed, b.n_observed)


@pytest.mark.parametrize(("block", "seed"), [(2, 3), (7, 4), (25, 5)])
def test_block_cuts_are_rivers_on_block_means(block: int, seed: int) -> None:
    data = _shifted(seed)
    data[block * 40 : block * 43, 1] = np.nan  # three blocks without any value in column 1
    expected = _river_rows(data, block)
    assert all(len(rows) >= 2 for rows in expected)  # every column cuts, more than once

    whole = BlockMeanADWIN(3, block=block)
    in_one = whole.update(data)
    assert _per_column(in_one, 3) == expected
    for d in in_one:
        assert d.row % block == block - 1  # the row completing a block
        assert d.first_row == d.row + 1 - block

    batched = BlockMeanADWIN(3, block=block)
    in_pieces = _feed(batched, data, _uneven(seed, data.shape[0]))
    assert [(d.row, d.drifted.tolist()) for d in in_pieces] == [
        (d.row, d.drifted.tolist()) for d in in_one
    ]
    assert batched.rows_seen == whole.rows_seen == data.shape[0]
    # ADWIN skipped exactly the blocks without a finite value (at least the three made so).
    n_blocks = data.shape[0] // block
    blocks = data[: n_blocks * block].reshape(n_blocks, block, 3)
    empty = (~np.isfinite(blocks)).all(axis=1).sum(axis=0)
    assert empty[1] >= 3
    assert batched.adwin.n_skipped.tolist() == empty.tolist()


def test_block_means_skip_missing_values() -> None:
    # Block means are 1.0 and 3.0 whether or not NaNs sit beside the values: ADWIN sees the
    # same series, so the same cuts at the same rows.
    rng = np.random.default_rng(7)
    clean = np.repeat(np.r_[rng.normal(1.0, 0.1, 300), rng.normal(3.0, 0.1, 300)], 4)
    holed = clean.copy()
    holed[1::4] = np.nan  # one value of every block of four
    holed[2::8] = -np.inf
    both = np.column_stack([clean, holed])
    detections = BlockMeanADWIN(2, block=4).update(both)
    assert detections, "a shift of 20 standard deviations is found"
    assert all(d.drifted.tolist() == [True, True] for d in detections)
    assert _per_column(detections, 2) == _river_rows(clean[:, None], 4) * 2


def test_dependent_values_cut_only_with_blocks() -> None:
    # AR(1) at 0.9: the values' long-run inflation is (1 + 0.9) / (1 - 0.9) = 19, so blocks
    # of 40 = ceil(2 * 19) rows are close to independent. Nothing changes in the stream.
    rng = np.random.default_rng(5)
    series = lfilter([1.0], [1.0, -0.9], rng.standard_normal(200_000))[:, None]
    assert len(BlockMeanADWIN(1, block=1).update(series)) > 500
    assert len(BlockMeanADWIN(1, block=40).update(series)) <= 1


def test_snapshot_resumes_inside_a_block() -> None:
    data = _shifted(8, rows=3000)
    whole = BlockMeanADWIN(3, block=9).update(data)
    first = BlockMeanADWIN(3, block=9)
    head = first.update(data[:1004])  # 1004 = 111 blocks and 5 rows
    resumed = BlockMeanADWIN(3, block=9)
    resumed.restore(first.snapshot())
    tail = resumed.update(data[1004:])
    assert [d.row for d in head + tail] == [d.row for d in whole]
    with pytest.raises(ValueError, match="partial block"):
        BlockMeanADWIN(3, block=4).restore(first.snapshot())  # 5 rows do not fit a block of 4


@pytest.mark.parametrize("block", [0, -3, 2.5, True, "4"])
def test_invalid_block_is_named(block: Any) -> None:
    with pytest.raises(ValueError, match="block"):
        BlockMeanADWIN(2, block=block)
