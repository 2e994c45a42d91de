r"""Data-quality window tests: missing, unseen-category and out-of-range rates per feature.

Each statistic is a share of a window, compared with a per-feature threshold:

- `MissingRateTest` (numeric, detector ``"missing"``): NaN or +/-inf values / window rows.
- `CategoricalMissingRateTest` (codes, ``"missing"``): codes -1 (any negative) / window rows.
- `UnseenRateTest` (codes, ``"unseen"``): codes ``>= n_categories`` / non-missing values.
- `OutOfRangeTest` (numeric, ``"out_of_range"``): finite values outside the reference
  ``[min, max]`` / non-missing values.

A share with nothing to count (no non-missing value) is NaN and never drifts.

Thresholds: if a window of ``n`` values is drawn while the event rate is still the
reference rate ``r``, its count is Binomial(n, r). `binomial_rate_thresholds` returns
``k / n`` with ``k`` the smallest count such that ``P(X > k) <= alpha``, so a window rate
above the threshold has probability at most ``alpha`` under the reference; the calibration
module chooses ``alpha`` from the false-alarm budget. The signals follow the schema checks
of Breck et al., "Data Validation for Machine Learning", MLSys 2019.

Example:
    >>> import numpy as np
    >>> from detectors.quality import binomial_rate_thresholds
    >>> binomial_rate_thresholds(np.array([0.0, 0.01, 0.5]), 1000, 0.001).tolist()
    [0.005, 0.021, 0.549]
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.stats import binom

from detectors.detection import (
    Detection,
    FloatArray,
    IntArray,
    Limits,
    SizedThresholds,
    check_thresholds,
)
from detectors.window import WindowView
from detectors.window_detector import window_detection

RATE_FLOOR = 1e-3
"""Reference rate assumed when the reference saw none: a finite sample without a missing
value does not prove the rate is 0, and a threshold of 0 would page on one missing value."""


def binomial_rate_thresholds(
    reference_rate: FloatArray, window_size: int, alpha: float, rate_floor: float = RATE_FLOOR
) -> FloatArray:
    """``(p,)`` window rate above which a window is surprising at level ``alpha``.

    Args:
        reference_rate: ``(p,)`` reference rate of the event per feature, in [0, 1].
        window_size: values per window (``n`` of the binomial).
        alpha: per-window, per-feature false-alarm probability, in (0, 1).
        rate_floor: reference rates below it are raised to it (see `RATE_FLOOR`).
    """
    rate = np.asarray(reference_rate, dtype=np.float64)
    if not ((rate >= 0.0) & (rate <= 1.0)).all():
        raise ValueError(f"reference_rate: every rate must lie in [0, 1], got {rate}")
    if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size < 1:
        raise ValueError(f"window_size: must be an integer >= 1, got {window_size!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha: must lie in the open interval (0, 1), got {alpha!r}")
    if not 0.0 <= rate_floor <= 1.0:
        raise ValueError(f"rate_floor: must lie in [0, 1], got {rate_floor!r}")
    count = binom.isf(alpha, window_size, np.maximum(rate, rate_floor))
    return np.asarray(count / window_size, dtype=np.float64)


@njit(cache=True, nogil=True)
def _finite_and_outside(
    rows: FloatArray, low: FloatArray, high: FloatArray
) -> tuple[IntArray, IntArray]:
    """``(p,)`` finite values per column, and ``(p,)`` of them outside ``[low, high]``:
    one pass over the row-major window instead of a temporary array per comparison."""
    n_rows, n_features = rows.shape  # callers check it against low and high: no bound checks
    finite = np.zeros(n_features, dtype=np.int64)
    outside = np.zeros(n_features, dtype=np.int64)
    for i in range(n_rows):
        for f in range(n_features):
            value = rows[i, f]
            if np.isfinite(value):
                finite[f] += 1
                outside[f] += value < low[f] or value > high[f]
    return finite, outside


def _window_rows(window: WindowView, n_features: int) -> FloatArray:
    rows = np.asarray(window.rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != n_features:
        raise ValueError(f"window: expected rows of shape (n, {n_features}), got {rows.shape}")
    return rows


def _share(count: IntArray, of: IntArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(of > 0, count / of, np.nan)


def _per_feature_thresholds(thresholds: FloatArray | SizedThresholds) -> Limits:
    if isinstance(thresholds, SizedThresholds):
        return thresholds
    values = np.asarray(thresholds)
    if values.ndim != 1:
        raise ValueError(f"thresholds: expected shape (n_features,), got {values.shape}")
    return check_thresholds(values, values.shape[0])


class MissingRateTest:
    """Share of NaN or +/-inf values per numeric feature in the window."""

    name = "missing"
    dtype_kind = "f"

    def __init__(self, thresholds: FloatArray | SizedThresholds) -> None:
        self.thresholds = _per_feature_thresholds(thresholds)
        self.n_features = self.thresholds.shape[0]
        self._low, self._high = np.full(self.n_features, -np.inf), np.full(self.n_features, np.inf)

    def evaluate(self, window: WindowView) -> Detection:
        rows = _window_rows(window, self.n_features)
        n_observed, _ = _finite_and_outside(rows, self._low, self._high)
        n_rows = rows.shape[0]
        rate = (n_rows - n_observed) / n_rows
        return window_detection(self.name, window, rate, self.thresholds, n_observed)


class CategoricalMissingRateTest:
    """Share of missing (negative) codes per categorical feature in the window."""

    name = "missing"
    dtype_kind = "i"

    def __init__(self, thresholds: FloatArray | SizedThresholds) -> None:
        self.thresholds = _per_feature_thresholds(thresholds)
        self.n_features = self.thresholds.shape[0]

    def evaluate(self, window: WindowView) -> Detection:
        rows = np.asarray(window.rows, dtype=np.int64)
        n_observed = (rows >= 0).sum(axis=0)
        rate = (rows.shape[0] - n_observed) / rows.shape[0]
        return window_detection(self.name, window, rate, self.thresholds, n_observed)


class UnseenRateTest:
    """Share of non-missing codes at or above ``n_categories`` (categories the reference lacks)."""

    name = "unseen"
    dtype_kind = "i"

    def __init__(
        self, n_categories: npt.NDArray[np.integer], thresholds: FloatArray | SizedThresholds
    ) -> None:
        self.thresholds = _per_feature_thresholds(thresholds)
        self.n_features = self.thresholds.shape[0]
        unseen = np.asarray(n_categories, dtype=np.int64)
        if unseen.shape != (self.n_features,):
            raise ValueError(
                f"n_categories: expected shape ({self.n_features},) to match thresholds, "
                f"got {unseen.shape}"
            )
        self.n_categories = unseen

    def evaluate(self, window: WindowView) -> Detection:
        rows = np.asarray(window.rows, dtype=np.int64)
        n_observed = (rows >= 0).sum(axis=0)
        n_unseen = (rows >= self.n_categories).sum(axis=0)
        rate = _share(n_unseen, n_observed)
        return window_detection(self.name, window, rate, self.thresholds, n_observed)


class OutOfRangeTest:
    """Share of finite values outside the reference ``[numeric_min, numeric_max]``."""

    name = "out_of_range"
    dtype_kind = "f"

    def __init__(
        self,
        numeric_min: FloatArray,
        numeric_max: FloatArray,
        thresholds: FloatArray | SizedThresholds,
    ) -> None:
        self.thresholds = _per_feature_thresholds(thresholds)
        self.n_features = self.thresholds.shape[0]
        low = np.asarray(numeric_min, dtype=np.float64)
        high = np.asarray(numeric_max, dtype=np.float64)
        for name, bound in (("numeric_min", low), ("numeric_max", high)):
            if bound.shape != (self.n_features,):
                raise ValueError(
                    f"{name}: expected shape ({self.n_features},) to match thresholds, "
                    f"got {bound.shape}"
                )
        if (low > high).any():
            raise ValueError("numeric_min: must not exceed numeric_max for any feature")
        self.numeric_min, self.numeric_max = low, high

    def evaluate(self, window: WindowView) -> Detection:
        # +/-inf is missing, not out of range (as in the profile).
        rows = _window_rows(window, self.n_features)
        n_observed, outside = _finite_and_outside(rows, self.numeric_min, self.numeric_max)
        rate = _share(outside, n_observed)
        return window_detection(self.name, window, rate, self.thresholds, n_observed)


__all__ = [
    "RATE_FLOOR",
    "CategoricalMissingRateTest",
    "MissingRateTest",
    "OutOfRangeTest",
    "UnseenRateTest",
    "binomial_rate_thresholds",
]
