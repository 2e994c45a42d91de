r"""Population Stability Index of each feature's window against its reference.

.. math:: \mathrm{PSI} = \sum_k (q_k - p_k) \ln(q_k / p_k)

where :math:`p_k` is the reference share and :math:`q_k` the window share of bin or
category :math:`k` among the non-missing values (the symmetrised Kullback-Leibler
divergence of the binned distributions; Siddiqi, "Credit Risk Scorecards", Wiley 2006;
Yurdakul, "Statistical properties of population stability index", WMU 2018).

- Numeric features use the reference quantile bins of the profile: a value ``v`` goes to bin
  ``k = (v > edges[1:-1]).sum()``, exactly as `detectors.profile` binned the reference.
- Categorical features use the reference categories plus one "unseen" bucket (code
  ``n_categories``), whose reference share is 0.
- Missing values (NaN or +/-inf; code -1) are left out on both sides: the data-quality tests
  watch the missing rate.

Smoothing: both shares are floored at `SHARE_FLOOR` (1e-4) before the formula, without
renormalising. A bin that is empty on one side would otherwise contribute
:math:`\pm\infty` (``ln 0``), so one unseen category or one empty bin in a small window would
swamp every other bin; with the floor an empty bin contributes at most about
:math:`p_k \ln(p_k / 10^{-4})` (0.69 for a 10 % bin).

Example:
    >>> import numpy as np
    >>> from detectors.psi import psi_categorical, psi_numeric
    >>> edges = np.array([[-np.inf, 0.0, np.inf]])
    >>> fractions = np.array([[0.5, 0.5]])
    >>> round(float(psi_numeric(np.array([[-1.0], [1.0], [2.0], [3.0]]), edges, fractions)[0]), 6)
    0.274653
    >>> codes = np.array([[0], [0], [1], [2]])  # 2 is unseen for a 2-category feature
    >>> round(float(psi_categorical(codes, (np.array([50, 50]),))[0]), 6)
    2.128516
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt
from numba import njit

from detectors.buckets import CategoryBuckets
from detectors.detection import (
    Detection,
    FloatArray,
    IntArray,
    SizedThresholds,
    check_thresholds,
    read_only,
)
from detectors.window import WindowView
from detectors.window_detector import window_detection

_ScalarT = TypeVar("_ScalarT", bound=np.generic)

SHARE_FLOOR = 1e-4
"""Lower bound on every reference and window share (see the module docstring)."""


def _psi(reference_share: FloatArray, window_share: FloatArray) -> FloatArray:
    p = np.maximum(reference_share, SHARE_FLOOR)
    q = np.maximum(window_share, SHARE_FLOOR)
    return np.asarray((q - p) * np.log(q / p))


@njit(cache=True, nogil=True)
def _bin_counts(window_rows: FloatArray, inner_edges: FloatArray) -> tuple[IntArray, IntArray]:
    """``(p, b)`` window values per reference bin and ``(p,)`` finite values, in one pass.

    The profile's binning rule: bin = number of interior edges strictly below the value.
    Counted without branches (a comparison per edge, summed): on real data the bin of the
    next value is unpredictable, and a mispredicted early exit costs more than the edges.
    A NaN compares False with every edge and +/-inf lands in an end bin; neither is counted.
    """
    n_rows, n_features = window_rows.shape
    n_inner = inner_edges.shape[1]
    counts = np.zeros((n_features, n_inner + 1), dtype=np.int64)
    observed = np.zeros(n_features, dtype=np.int64)
    for f in range(n_features):
        for i in range(n_rows):
            value = window_rows[i, f]
            k = 0
            for j in range(n_inner):
                k += value > inner_edges[f, j]
            finite = np.isfinite(value)
            counts[f, k] += finite
            observed[f] += finite
    return counts, observed


def _numeric_psi(
    window_rows: FloatArray, bin_edges: FloatArray, bin_fractions: FloatArray
) -> tuple[FloatArray, IntArray]:
    """``(p,)`` PSI (NaN without observed values) and ``(p,)`` non-missing values."""
    inner = np.ascontiguousarray(bin_edges[:, 1:-1])
    counts, n_observed = _bin_counts(window_rows, inner)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / n_observed[:, None]
    psi = _psi(bin_fractions, shares).sum(axis=1)
    return np.where(n_observed > 0, psi, np.nan), n_observed


def psi_numeric(
    window_rows: FloatArray, bin_edges: FloatArray, bin_fractions: FloatArray
) -> FloatArray:
    """``(p,)`` PSI of each numeric feature; NaN where the window has no observed value.

    Args:
        window_rows: ``(n, p)`` float64, NaN or +/-inf where missing; not modified.
        bin_edges: ``(p, b + 1)`` reference quantile edges (`ReferenceProfile.bin_edges`).
        bin_fractions: ``(p, b)`` reference share per bin (`ReferenceProfile.bin_fractions`).
    """
    return _numeric_psi(window_rows, bin_edges, bin_fractions)[0]


def _categorical_psi(
    window_codes: npt.NDArray[np.integer], buckets: CategoryBuckets
) -> tuple[FloatArray, IntArray]:
    counts, n_observed = buckets.window_counts(window_codes)
    with np.errstate(invalid="ignore", divide="ignore"):
        window = counts / buckets.spread(n_observed)
    psi = buckets.per_feature(_psi(buckets.reference_shares, window))
    valid = (n_observed > 0) & (buckets.reference_totals > 0)
    return np.where(valid, psi, np.nan), n_observed.astype(np.int64)


def psi_categorical(
    window_codes: npt.NDArray[np.integer],
    category_counts: Sequence[npt.NDArray[np.integer]] | CategoryBuckets,
) -> FloatArray:
    """``(c,)`` PSI of each categorical feature over its categories plus "unseen".

    NaN where the window (or the reference) has no non-missing value.

    Args:
        window_codes: ``(n, c)`` integer codes, -1 missing, ``n_categories[f]`` unseen.
        category_counts: per feature, reference count of each category
            (`ReferenceProfile.category_counts`), or a prebuilt `CategoryBuckets` when
            called many times.
    """
    buckets = (
        category_counts
        if isinstance(category_counts, CategoryBuckets)
        else CategoryBuckets.from_counts(category_counts)
    )
    return _categorical_psi(window_codes, buckets)[0]


class PSITest:
    """PSI window test over numeric features: drift where the PSI exceeds the threshold."""

    name = "psi"
    dtype_kind = "f"

    def __init__(
        self,
        bin_edges: FloatArray,
        bin_fractions: FloatArray,
        thresholds: FloatArray | SizedThresholds,
    ) -> None:
        if bin_edges.ndim != 2 or bin_edges.shape[1] < 3:
            raise ValueError(
                f"bin_edges: expected shape (p, b + 1) with b >= 2, got {bin_edges.shape}"
            )
        n_features, n_bins = bin_edges.shape[0], bin_edges.shape[1] - 1
        if bin_fractions.shape != (n_features, n_bins):
            raise ValueError(
                f"bin_fractions: expected shape ({n_features}, {n_bins}) to match bin_edges, "
                f"got {bin_fractions.shape}"
            )
        self.n_features = n_features
        self.bin_edges = read_only(bin_edges)
        self.bin_fractions = read_only(bin_fractions)
        self.thresholds = check_thresholds(thresholds, n_features)

    def evaluate(self, window: WindowView) -> Detection:
        rows = np.asarray(window.rows, dtype=np.float64)
        statistic, n_observed = _numeric_psi(rows, self.bin_edges, self.bin_fractions)
        return window_detection(self.name, window, statistic, self.thresholds, n_observed)


class CategoricalPSITest:
    """PSI window test over categorical codes (categories plus an "unseen" bucket)."""

    name = "psi"
    dtype_kind = "i"

    def __init__(
        self,
        category_counts: Sequence[npt.NDArray[np.integer]],
        thresholds: FloatArray | SizedThresholds,
    ) -> None:
        self.buckets = CategoryBuckets.from_counts(category_counts)
        self.n_features = self.buckets.n_features
        self.thresholds = check_thresholds(thresholds, self.n_features)

    def evaluate(self, window: WindowView) -> Detection:
        statistic, n_observed = _categorical_psi(np.asarray(window.rows), self.buckets)
        return window_detection(self.name, window, statistic, self.thresholds, n_observed)


__all__ = ["SHARE_FLOOR", "CategoricalPSITest", "PSITest", "psi_categorical", "psi_numeric"]
