r"""Chi-square test of homogeneity of each categorical feature's window against its reference.

For one feature the observed table is ``2 x (K + 1)``: row 0 the reference counts of its
``K`` categories plus "unseen" (0 in the reference), row 1 the window counts; missing values
are left out and columns that are zero in both rows are dropped. With row sums
:math:`R_r`, column sums :math:`C_k` and total :math:`N`,

.. math::

    E_{rk} = R_r C_k / N, \qquad
    \chi^2 = \sum_{r,k} (O_{rk} - E_{rk})^2 / E_{rk}, \qquad
    \mathrm{dof} = (\text{kept columns} - 1)

with Yates' continuity correction when ``dof == 1`` (each :math:`O_{rk}` moves towards
:math:`E_{rk}` by at most 0.5), and the p-value :math:`P(\chi^2_{\mathrm{dof}} \ge \chi^2)`
(Pearson 1900; Yates 1934). A table with a single kept column has ``dof == 0``, statistic 0
and p-value 1. The statistic, dof and p-value are those of
``scipy.stats.chi2_contingency(table)`` with its defaults, for all features in a few numpy
calls over one flat array of buckets and one compiled pass that sums each table's terms in
numpy's own order (so the statistic is bit-equal, not merely close). The statistic is what
the calibrated threshold is applied to; the p-value is evidence only.

Example:
    >>> import numpy as np
    >>> from detectors.chi2 import chi2_statistic
    >>> codes = np.array([[0], [0], [1], [1], [1], [2]])  # 2: unseen for 2 categories
    >>> statistic, dof, p_value = chi2_statistic(codes, (np.array([30, 10]),))
    >>> round(float(statistic[0]), 4), int(dof[0]), round(float(p_value[0]), 4)
    (9.1226, 2, 0.0104)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.stats import chi2

from detectors.buckets import CategoryBuckets
from detectors.detection import Detection, FloatArray, IntArray, SizedThresholds, check_thresholds
from detectors.window import WindowView
from detectors.window_detector import window_detection


@njit(cache=True, nogil=True)
def _pairwise_sum(values: FloatArray, start: int, n: int) -> float:
    """numpy's own float64 summation order (``pairwise_sum`` in its add loop).

    Under 8 terms: left to right from 0.0; up to 128: eight interleaved partial sums,
    combined as a tree, then the leftover terms; above: split in halves (multiple of 8).
    Summing in exactly this order makes the statistic bit-equal to scipy's ``terms.sum()``.
    """
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    if n <= 128:
        partial = values[start : start + 8].copy()
        whole = n - n % 8
        for i in range(start + 8, start + whole, 8):
            for lane in range(8):
                partial[lane] += values[i + lane]
        total = float(
            ((partial[0] + partial[1]) + (partial[2] + partial[3]))
            + ((partial[4] + partial[5]) + (partial[6] + partial[7]))
        )
        for i in range(start + whole, start + n):
            total += values[i]
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(values, start, half) + _pairwise_sum(values, start + half, n - half)


@njit(cache=True, nogil=True)
def _segment_sums(values: FloatArray, lengths: IntArray) -> FloatArray:
    """``(c,)`` sums of consecutive segments of ``values`` with the given lengths."""
    sums = np.empty(lengths.shape[0])
    start = 0
    for f in range(lengths.shape[0]):
        sums[f] = _pairwise_sum(values, start, lengths[f])
        start += lengths[f]
    return sums


class _Layout:
    """Where each term of each feature's 2-row table goes in one flat array of terms.

    Feature ``f`` owns ``2 (K_f + 1)`` consecutive terms, its reference row then its window
    row. After the dropped columns are squeezed out, each feature's segment is its table
    flattened row-major, the array scipy sums.
    """

    def __init__(self, buckets: CategoryBuckets) -> None:
        self.buckets = buckets
        flat = np.arange(buckets.reference_counts.shape[0])
        self.row0 = flat + buckets.spread(buckets.offsets)  # 2 offsets[f] + (flat - offsets[f])
        self.row1 = self.row0 + buckets.spread(buckets.sizes)
        self.n_terms = 2 * buckets.reference_counts.shape[0]


def _chi2(
    window_codes: npt.NDArray[np.integer], layout: _Layout
) -> tuple[FloatArray, IntArray, FloatArray, IntArray]:
    """Statistic, dof, p-value and non-missing window values, each ``(c,)``."""
    buckets = layout.buckets
    window, n_observed = buckets.window_counts(window_codes)
    reference = buckets.reference_counts
    column = reference + window
    kept = column > 0
    n_kept = np.asarray(buckets.per_feature(kept.astype(np.float64)), dtype=np.int64)
    dof = np.maximum(n_kept - 1, 0)  # 0 kept columns: no data at all, reported as NaN
    total = buckets.spread(buckets.reference_totals + n_observed)
    with np.errstate(invalid="ignore", divide="ignore"):
        # scipy's expected_freq: (row sum * column sum) / total.
        expected0 = buckets.spread(buckets.reference_totals) * column / total
        expected1 = buckets.spread(n_observed.astype(np.float64)) * column / total
        observed0, observed1 = reference, window.astype(np.float64)
        yates = buckets.spread(dof == 1)
        observed0 = np.where(yates, _towards(observed0, expected0), observed0)
        observed1 = np.where(yates, _towards(observed1, expected1), observed1)
        terms = np.empty(layout.n_terms)
        terms[layout.row0] = (observed0 - expected0) ** 2 / expected0
        terms[layout.row1] = (observed1 - expected1) ** 2 / expected1
    keep = np.empty(layout.n_terms, dtype=np.bool_)
    keep[layout.row0] = keep[layout.row1] = kept
    statistic = _segment_sums(terms[keep], 2 * n_kept)
    valid = (n_observed > 0) & (buckets.reference_totals > 0)
    statistic = np.where(valid, np.where(dof > 0, statistic, 0.0), np.nan)
    p_value = np.where(dof > 0, chi2.sf(statistic, np.maximum(dof, 1)), 1.0)
    return statistic, dof, np.where(valid, p_value, np.nan), n_observed.astype(np.int64)


def _towards(observed: FloatArray, expected: FloatArray) -> FloatArray:
    # Yates: move each count towards its expectation by 0.5, never past it (scipy gh-13875).
    diff = expected - observed
    return np.asarray(observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff))


def chi2_statistic(
    window_codes: npt.NDArray[np.integer],
    category_counts: Sequence[npt.NDArray[np.integer]] | CategoryBuckets,
) -> tuple[FloatArray, IntArray, FloatArray]:
    """``(c,)`` chi-square statistic, ``(c,)`` dof and ``(c,)`` p-value per feature.

    NaN statistic and p-value where the window (or the reference) has no non-missing value.

    Args:
        window_codes: ``(n, c)`` integer codes, -1 missing, ``n_categories[f]`` unseen.
        category_counts: per feature, reference count of each category
            (`ReferenceProfile.category_counts`), or a prebuilt `CategoryBuckets`.
    """
    buckets = (
        category_counts
        if isinstance(category_counts, CategoryBuckets)
        else CategoryBuckets.from_counts(category_counts)
    )
    statistic, dof, p_value, _ = _chi2(window_codes, _Layout(buckets))
    return statistic, dof, p_value


class Chi2Test:
    """Chi-square window test: drift where a feature's statistic exceeds its threshold."""

    name = "chi2"
    dtype_kind = "i"

    def __init__(
        self,
        category_counts: Sequence[npt.NDArray[np.integer]],
        thresholds: FloatArray | SizedThresholds,
    ) -> None:
        self._layout = _Layout(CategoryBuckets.from_counts(category_counts))
        self.n_features = self._layout.buckets.n_features
        self.thresholds = check_thresholds(thresholds, self.n_features)

    def evaluate(self, window: WindowView) -> Detection:
        statistic, _, p_value, n_observed = _chi2(np.asarray(window.rows), self._layout)
        return window_detection(self.name, window, statistic, self.thresholds, n_observed, p_value)


__all__ = ["Chi2Test", "chi2_statistic"]
