r"""ADWIN: adaptive windowing drift detection, one independent window per feature column.

Each feature keeps a window ``W`` of its recent finite values, compressed into exponential
histogram buckets: bucket row ``i`` holds up to ``max_buckets`` summaries (sum and variance)
of ``2**i`` values each; when a row fills to ``max_buckets + 1`` its two oldest summaries
merge into row ``i + 1``. Every ``clock`` values, once the width ``n = |W|`` exceeds
``grace_period``, every bucket boundary splits ``W`` into an older ``W0`` (``n0`` values,
mean ``mu0``) and a newer ``W1`` (``n1``, ``mu1``), and the window is cut when, with both
``n0, n1 >= L`` (``min_window_length``)::

    |mu0 - mu1| > sqrt(2 * m * s2 * d) + 2/3 * d * m
    m  = 1 / (n0 - L + 1) + 1 / (n1 - L + 1)
    d  = ln(2 * ln(n) / delta)        # delta' = delta / ln(n), a union bound over cuts
    s2 = variance of W (sum of squared deviations / n)

A cut drops the oldest bucket and the scan restarts until no boundary fires; the value that
caused it is reported as a detection. Like ``river.drift.ADWIN`` (0.26), whose change points
this module reproduces exactly (same arithmetic order, same bucket bookkeeping), a feature's
window is discarded entirely when its next finite value arrives after a detection.

NaN and +/-inf are skipped: they do not enter the window, do not advance the clock or the
grace counter, and are counted in `ADWIN.n_skipped`. Stream rows still count them, so
``Detection.row`` is the position in the fed stream.

Reference: A. Bifet and R. Gavaldà, "Learning from time-changing data with adaptive
windowing", SIAM International Conference on Data Mining (SDM), 2007, pp. 443-448.

>>> import numpy as np
>>> from detectors.adwin import ADWIN
>>> rng = np.random.default_rng(7)
>>> before, after = rng.normal(0.0, 1.0, (1000, 2)), rng.normal([0.0, 3.0], 1.0, (1000, 2))
>>> detector = ADWIN(n_features=2)
>>> [(d.row, d.drifted.tolist()) for d in detector.update(np.concatenate([before, after]))]
[(1023, [False, True])]
>>> detector.width.tolist()  # feature 1's window restarted at row 1024
[2000, 976]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from detectors.detection import (
    BoolArray,
    Detection,
    FloatArray,
    IntArray,
    State,
    check_batch,
)

ROW_CAPACITY = 64
"""Bucket rows kept per feature. Row ``i`` holds values in summaries of ``2**i``, so 64 rows
cover any window narrower than ``2**63`` values; `restore` refuses widths beyond ``2**52``."""

_PARAMETERS = ("delta", "clock", "max_buckets", "min_window_length", "grace_period")
_MAX_RESTORED_WIDTH = 2.0**52


# error_model="numpy": IEEE division (inf/NaN, never ZeroDivisionError) like river's Rust.
@njit(cache=True, error_model="numpy", inline="always")
def _shift_left(
    totals: FloatArray, variances: FloatArray, counts: IntArray, f: int, row: int, n: int
) -> None:
    c = counts[f, row]
    for j in range(n, c):
        totals[f, row, j - n] = totals[f, row, j]
        variances[f, row, j - n] = variances[f, row, j]
    # Freed slots go back to zero: an emptied row must read as river's fresh bucket.
    for j in range(max(c - n, 0), c):
        totals[f, row, j] = 0.0
        variances[f, row, j] = 0.0
    counts[f, row] = c - n


@njit(cache=True, error_model="numpy", inline="always")
def _insert(
    totals: FloatArray, variances: FloatArray, counts: IntArray, n_rows: IntArray, f: int,
    x: float, n_max: int,
) -> None:  # fmt: skip
    """Put ``x`` in bucket row 0, then merge the two oldest summaries of every full row."""
    c = counts[f, 0]
    totals[f, 0, c] = x
    variances[f, 0, c] = 0.0
    counts[f, 0] = c + 1
    row = 0
    while counts[f, row] == n_max + 1:
        size = float(1 << row)
        t0, t1 = totals[f, row, 0], totals[f, row, 1]
        mu0, mu1 = t0 / size, t1 / size
        merged_var = variances[f, row, 0] + variances[f, row, 1]
        merged_var += size * 0.5 * (mu0 - mu1) * (mu0 - mu1)
        n_rows[f] = max(n_rows[f], row + 2)
        slot = counts[f, row + 1]
        totals[f, row + 1, slot] = t0 + t1
        variances[f, row + 1, slot] = merged_var
        counts[f, row + 1] = slot + 1
        _shift_left(totals, variances, counts, f, row, 2)
        row += 1


@njit(cache=True, error_model="numpy", inline="always")
def _scan(
    totals: FloatArray, variances: FloatArray, counts: IntArray, n_rows: IntArray, f: int,
    width: float, total: float, variance: float, delta: float, min_len: float,
) -> tuple[bool, float, float, float, float]:  # fmt: skip
    """Cut the window while a split fires; return (cut, first |mu0 - mu1|, width, total, var)."""
    detected, statistic = False, 0.0
    rescan = True
    while rescan:
        rescan = False
        n0, n1, u0, u1 = 0.0, width, 0.0, total
        log_term = math.log(2.0 * math.log(width) / delta)
        linear_term = 2.0 / 3.0 * log_term
        window_var = variance / width
        done = False
        for row in range(n_rows[f] - 1, -1, -1):
            size = float(1 << row)
            c = counts[f, row]
            for j in range(c):
                n0 += size
                n1 -= size
                u0 += totals[f, row, j]
                u1 -= totals[f, row, j]
                if row == 0 and j == c - 1:
                    done = True
                    break
                if n0 < min_len or n1 < min_len:
                    continue
                gap = abs(u0 / n0 - u1 / n1)
                m = 1.0 / (n0 - min_len + 1.0) + 1.0 / (n1 - min_len + 1.0)
                if not gap > math.sqrt(2.0 * m * window_var * log_term) + linear_term * m:
                    continue
                if not detected:
                    detected, statistic = True, gap
                rescan = True
                if width > 0.0:  # drop the oldest summary (river's delete_element)
                    last = n_rows[f] - 1
                    size_last = float(1 << last)
                    u, v = totals[f, last, 0], variances[f, last, 0]
                    width -= size_last
                    total -= u
                    mu_gap = u / size_last - total / width
                    variance -= v + size_last * width * mu_gap * mu_gap / (size_last + width)
                    _shift_left(totals, variances, counts, f, last, 1)
                    if counts[f, last] == 0:
                        n_rows[f] = last
                    done = True
                    break
            if done:
                break
    return detected, statistic, width, total, variance


@njit(cache=True, error_model="numpy")
def _update_kernel(
    batch: FloatArray, first_row: int, params: FloatArray, totals: FloatArray,
    variances: FloatArray, counts: IntArray, n_rows: IntArray, total: FloatArray,
    variance: FloatArray, width: FloatArray, tick: IntArray, pending: BoolArray,
    n_detections: IntArray, n_skipped: IntArray, out_rows: IntArray, out_stat: FloatArray,
    out_drift: BoolArray, out_width: IntArray,
) -> tuple[int, int]:  # fmt: skip
    """Fold ``batch`` into the state in place; return (records written, batch rows done).

    Writes one record per row where some feature's window was cut, and stops early when the
    output buffers are full so the caller can grow them and resume.
    """
    delta, clock, n_max = params[0], int(params[1]), int(params[2])
    min_len, grace = params[3], params[4]
    n_batch, n_features = batch.shape
    n_out = 0
    for r in range(n_batch):
        if n_out == out_rows.shape[0]:
            return n_out, r
        hit = False
        for f in range(n_features):
            x = batch[r, f]
            if not math.isfinite(x):
                n_skipped[f] += 1
                continue
            if pending[f]:  # river discards the whole window on the update after a drift
                for i in range(n_rows[f]):
                    totals[f, i, :] = 0.0
                    variances[f, i, :] = 0.0
                    counts[f, i] = 0
                n_rows[f] = 1
                total[f] = variance[f] = width[f] = 0.0
                tick[f] = 0
                pending[f] = False
            w, t, v = width[f] + 1.0, total[f], variance[f]
            if w > 1.0:  # Welford-style update, in river's exact operation order
                dv = x - t / (w - 1.0)
                v += (w - 1.0) * dv * dv / w
            t += x
            _insert(totals, variances, counts, n_rows, f, x, n_max)
            # `tick` counts modulo `clock` (no integer division per value): a scan is due
            # exactly when river's running count is a multiple of `clock`.
            tick[f] = 0 if tick[f] + 1 == clock else tick[f] + 1
            if tick[f] == 0 and w > grace:
                cut, statistic, w, t, v = _scan(
                    totals, variances, counts, n_rows, f, w, t, v, delta, min_len
                )
                if cut:
                    if not hit:
                        out_stat[n_out, :] = 0.0
                        out_drift[n_out, :] = False
                        hit = True
                    out_stat[n_out, f] = statistic
                    out_drift[n_out, f] = True
                    pending[f] = True
                    n_detections[f] += 1
            width[f], total[f], variance[f] = w, t, v
        if hit:
            out_rows[n_out] = first_row + r
            for f in range(n_features):
                out_width[n_out, f] = int(width[f])
            n_out += 1
    return n_out, n_batch


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass
class _Windows:
    """Every feature's window; ``f`` features, ``R = ROW_CAPACITY``, ``S = max_buckets + 1``."""

    totals: FloatArray  # (f, R, S) bucket sums; unused slots are 0 (river's fresh buckets)
    variances: FloatArray  # (f, R, S) bucket sums of squared deviations
    counts: IntArray  # (f, R) summaries held in each bucket row
    n_rows: IntArray  # (f,) bucket rows in use
    total: FloatArray  # (f,) window sum
    variance: FloatArray  # (f,) window sum of squared deviations
    width: FloatArray  # (f,) window length, a float as in river so the arithmetic matches
    tick: IntArray  # (f,) finite values since the window was last discarded, mod clock
    pending: BoolArray  # (f,) drift on the last value: discard the window before the next
    n_detections: IntArray  # (f,) cumulative
    n_skipped: IntArray  # (f,) cumulative

    @classmethod
    def empty(cls, n: int, slots: int) -> _Windows:
        def zeros(*shape: int) -> FloatArray:
            return np.zeros(shape, dtype=np.float64)

        def ints(value: int) -> IntArray:
            return np.full(n, value, dtype=np.int64)

        return cls(
            totals=zeros(n, ROW_CAPACITY, slots),
            variances=zeros(n, ROW_CAPACITY, slots),
            counts=np.zeros((n, ROW_CAPACITY), dtype=np.int64),
            n_rows=ints(1),
            total=zeros(n),
            variance=zeros(n),
            width=zeros(n),
            tick=ints(0),
            pending=np.zeros(n, dtype=np.bool_),
            n_detections=ints(0),
            n_skipped=ints(0),
        )


class ADWIN:
    """Vectorized ADWIN over ``n_features`` independent streams (see the module docstring).

    Detections report, per drifted feature, ``statistic = |mu0 - mu1|`` at the first cut that
    fired on that row; ``n_observed`` is every feature's window width after the row (for a
    drifted feature, the window left by the cut, as river's ``width`` reads at that point).
    """

    name = "adwin"

    def __init__(
        self,
        n_features: int,
        delta: float = 0.002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        self._n_features = _check_int("n_features", n_features, 1)
        if isinstance(delta, bool) or not isinstance(delta, float | int) or not 0 < delta < 1:
            raise ValueError(f"delta must be a number in the open interval (0, 1), got {delta!r}")
        # river 0.26 panics with max_buckets=1 (it can empty a bucket row, then delete from it).
        self._max_buckets = _check_int("max_buckets", max_buckets, 2)
        self._params = np.array(
            [
                delta,
                _check_int("clock", clock, 1),
                max_buckets,
                _check_int("min_window_length", min_window_length, 1),
                _check_int("grace_period", grace_period, 0),
            ],
            dtype=np.float64,
        )
        self._grow_output(64)
        self.reset()

    def reset(self) -> None:
        """Forget everything: empty windows, zero counters, next row is row 0."""
        self._windows = _Windows.empty(self._n_features, self._max_buckets + 1)
        self._rows_seen = 0

    @property
    def n_features(self) -> int:
        return self._n_features

    @property
    def rows_seen(self) -> int:
        return self._rows_seen

    @property
    def estimation(self) -> FloatArray:
        """``(n_features,)`` mean of each current window (0 where the window is empty)."""
        w = self._windows
        return np.divide(w.total, w.width, out=np.zeros(self._n_features), where=w.width > 0)

    @property
    def width(self) -> IntArray:
        """``(n_features,)`` number of values in each current window."""
        return self._windows.width.astype(np.int64)

    @property
    def n_detections(self) -> IntArray:
        """``(n_features,)`` detections since construction or `reset` (river's restarts at 0)."""
        return self._windows.n_detections.copy()

    @property
    def n_skipped(self) -> IntArray:
        """``(n_features,)`` NaN or infinite values skipped since construction or `reset`."""
        return self._windows.n_skipped.copy()

    def update(self, batch: npt.NDArray[np.generic]) -> list[Detection]:
        """Fold a float64 ``(n_rows, n_features)`` batch in; return one detection per cut row."""
        check_batch(batch, self._n_features, "f")
        values = np.asarray(batch, dtype=np.float64)  # no copy: only narrows the static type
        w, done, records = self._windows, 0, []
        while done < batch.shape[0]:
            if done > 0:  # the output buffers filled up: grow them and resume
                self._grow_output(2 * self._out_rows.shape[0])
            n_out, n_done = _update_kernel(
                values[done:],
                self._rows_seen + done,
                self._params,
                w.totals,
                w.variances,
                w.counts,
                w.n_rows,
                w.total,
                w.variance,
                w.width,
                w.tick,
                w.pending,
                w.n_detections,
                w.n_skipped,
                self._out_rows,
                self._out_stat,
                self._out_drift,
                self._out_width,
            )
            records.extend(self._detections(n_out))
            done += n_done
        self._rows_seen += batch.shape[0]
        return records

    def _grow_output(self, size: int) -> None:
        n = self._n_features
        self._out_rows = np.zeros(size, dtype=np.int64)  # (size,) stream row of each record
        self._out_stat = np.zeros((size, n), dtype=np.float64)
        self._out_drift = np.zeros((size, n), dtype=np.bool_)
        self._out_width = np.zeros((size, n), dtype=np.int64)

    def _detections(self, n_out: int) -> list[Detection]:
        return [
            Detection(
                detector=self.name,
                first_row=int(self._out_rows[i]),
                row=int(self._out_rows[i]),
                statistic=self._out_stat[i].copy(),
                threshold=np.full(self._n_features, np.nan),
                drifted=self._out_drift[i].copy(),
                p_value=None,
                n_observed=self._out_width[i].copy(),
            )
            for i in range(n_out)
        ]

    def snapshot(self) -> State:
        """Copy of the full state plus the parameters it was built with."""
        state: State = {f.name: getattr(self._windows, f.name).copy() for f in fields(_Windows)}
        state["rows_seen"] = np.array(self._rows_seen, dtype=np.int64)
        for key, value in zip(_PARAMETERS, self._params, strict=True):
            state[key] = np.array(value)
        return state

    def restore(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        """Load a `snapshot`; raise ValueError if it does not fit this detector."""
        names = [f.name for f in fields(_Windows)]
        missing = sorted({*names, "rows_seen", *_PARAMETERS} - set(state))
        if missing:
            raise ValueError(f"ADWIN state is missing {missing}; pass a snapshot() result")
        for key, value in zip(_PARAMETERS, self._params, strict=True):
            if np.shape(state[key]) != () or float(state[key]) != value:
                raise ValueError(
                    f"ADWIN state has {key}={state[key]!r} but this detector has {key}={value!r};"
                    " restore into a detector built with the same parameters"
                )
        template = _Windows.empty(self._n_features, self._max_buckets + 1)
        loaded: dict[str, npt.NDArray[Any]] = {}
        for key in [*names, "rows_seen"]:
            want = getattr(template, key) if key != "rows_seen" else np.array(0, dtype=np.int64)
            value = np.asarray(state[key])
            if value.shape != want.shape or not np.can_cast(value.dtype, want.dtype):
                raise ValueError(
                    f"ADWIN state {key!r} has shape {value.shape} and dtype {value.dtype}, "
                    f"expected {want.shape} {want.dtype}; was it taken from an ADWIN with "
                    f"n_features={self._n_features} and max_buckets={self._max_buckets}?"
                )
            loaded[key] = np.array(value, dtype=want.dtype)
        rows_seen = int(loaded.pop("rows_seen"))
        windows = _Windows(**loaded)
        if rows_seen < 0 or not self._consistent(windows):
            raise ValueError(
                "ADWIN state is inconsistent (bucket counts, rows in use and window widths "
                "disagree); it was not produced by snapshot() or was altered"
            )
        self._windows, self._rows_seen = windows, rows_seen

    def _consistent(self, w: _Windows) -> bool:
        # The kernel does not bounds-check, so a snapshot read from an untrusted place must
        # describe a reachable bucket layout before it is used.
        in_use = np.arange(ROW_CAPACITY) < w.n_rows[:, None]
        implied = (w.counts * 2.0 ** np.arange(ROW_CAPACITY)).sum(axis=1)
        return bool(
            (w.n_rows >= 1).all()
            and (w.n_rows <= ROW_CAPACITY).all()
            and (w.counts >= 0).all()
            and (w.counts <= self._max_buckets).all()
            and (w.counts[~in_use] == 0).all()
            and np.array_equal(implied, w.width)
            and (w.width <= _MAX_RESTORED_WIDTH).all()
            and (w.tick >= 0).all()
            and (w.tick < self._params[1]).all()
        )


__all__ = ["ADWIN", "ROW_CAPACITY"]
