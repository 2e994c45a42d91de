r"""Two-sample Kolmogorov-Smirnov test of each feature's window against its reference.

.. math:: D = \sup_x |F_{ref}(x) - F_{win}(x)|

where :math:`F` are the empirical CDFs of the non-missing values (Kolmogorov 1933, Smirnov
1948); NaN and +/-inf are missing. The statistic equals ``scipy.stats.ks_2samp(ref,
win).statistic`` exactly: the window is sorted per feature in one numpy call, then one
compiled pass walks each feature's sorted reference and window together, O(n_ref + n_win)
per feature with no Python loop per value.

Two-sided p-values (`ks_pvalues`, opt-in on `KSTest`) follow ``ks_2samp(method="auto")``.
Up to `EXACT_MAX_N` values per side they are exact: :math:`P(D \ge h / \mathrm{lcm}(n_1,
n_2))` is the share of monotone lattice paths from (0, 0) to :math:`(n_1, n_2)` that leave
the band :math:`|x n_2 - y n_1| < h \gcd(n_1, n_2)` somewhere (Hodges 1958, after Gnedenko
and Korolyuk). For equal sizes the reflection principle gives an alternating sum of binomial
ratios; otherwise Viehmann's recursion (arXiv:2102.08037) propagates, cell by cell, the
probability that a uniformly random path to the cell has already left the band, which stays
in [0, 1] and so needs no huge binomial coefficients. Above `EXACT_MAX_N` the p-value is
the one-sample Kolmogorov distribution ``kstwo.sf(D, round(n1 n2 / (n1 + n2)))``.

Example:
    >>> import numpy as np
    >>> from detectors.ks import ks_pvalues, ks_statistic
    >>> ref = np.sort(np.array([[0.0], [1.0], [2.0], [3.0]]), axis=0)
    >>> d = ks_statistic(ref, np.array([[2.5], [3.5]]))
    >>> float(d[0])
    0.75
    >>> round(float(ks_pvalues(d, np.array([4]), np.array([2]))[0]), 6)
    0.4
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.stats import kstwo

from detectors.detection import Detection, FloatArray, IntArray, SizedThresholds
from detectors.window import WindowView
from detectors.window_detector import window_detection
from detectors.workers import WorkerPool


@njit(cache=True, nogil=True)
def _sup_counts(ref: FloatArray, ref_n: IntArray, win: FloatArray, win_n: IntArray) -> IntArray:
    """``(p, 2)`` counts ``(i, j)`` of reference and window values <= x at the sup point x.

    ``ref`` is ``(p, n_ref)`` and ``win`` ``(p, n_win)``: each feature's values contiguous,
    sorted, NaN last. Between two window values only the reference CDF moves, so
    ``|i n_win - j n_ref|`` peaks just before a window value (reference CDF ahead) or at one
    (window CDF ahead): only those points are scored, the reference walked once alongside.
    The first peak in x order is kept, the one a merge scoring every value would keep.
    """
    n_features = ref.shape[0]
    out = np.zeros((n_features, 2), dtype=np.int64)
    for f in range(n_features):
        r, w = ref[f], win[f]
        n1, n2 = ref_n[f], win_n[f]
        if n1 == 0 or n2 == 0:
            continue
        best = -1
        i = j = 0
        while j < n2:
            x = w[j]
            while i < n1 and r[i] < x:
                i += 1
            if i + j > 0:  # just before x (a point exists there)
                gap = abs(i * n2 - j * n1)  # |i/n1 - j/n2| scaled to integers: no rounding
                if gap > best:
                    best = gap
                    out[f, 0], out[f, 1] = i, j
            while j < n2 and w[j] <= x:
                j += 1
            while i < n1 and r[i] <= x:
                i += 1
            gap = abs(i * n2 - j * n1)  # at x
            if gap > best:
                best = gap
                out[f, 0], out[f, 1] = i, j
    return out


BACKGROUND_MIN_VALUES = 100_000
"""Reference plus window values from which `KSTest.start` runs the walk on the worker thread;
below, handing it over would cost about as much as the walk itself."""


_WALKER = WorkerPool(1, "ks-walk")
"""The thread that runs `_sup_counts` for `KSTest.start`."""


EXACT_MAX_N = 10_000
"""scipy's ``ks_2samp(method="auto")`` is exact up to this many values per side."""


def _statistic(counts: IntArray, ref_n: IntArray, win_n: IntArray) -> FloatArray:
    # The same float operations as scipy (cdf1 - cdf2), then scipy's exact-mode snap of D
    # onto the lattice h / lcm(n1, n2) where it would use the exact distribution.
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.abs(counts[:, 0] / ref_n - counts[:, 1] / win_n)
        lcm = np.lcm(ref_n, win_n)
        snapped = np.round(d * lcm) / lcm
    exact = np.maximum(ref_n, win_n) <= EXACT_MAX_N
    d = np.where(exact, snapped, d)
    return np.where((ref_n == 0) | (win_n == 0), np.nan, d)


def _sorted_columns(window: FloatArray) -> FloatArray:
    """``(p, n_win)``: each feature's window values, +/-inf made NaN, sorted, NaN last."""
    # +/-inf is missing, as in the reference profile; NaN sorts last, where the walk stops.
    # One feature per row: the walk then reads each feature's values contiguously.
    finite = np.where(np.isinf(window), np.nan, window).T.copy()
    finite.sort(axis=1)
    return finite


def ks_statistic(reference_sorted: FloatArray, window: FloatArray) -> FloatArray:
    """``(p,)`` KS statistic per feature; NaN where either side has no observed value.

    Args:
        reference_sorted: ``(n_ref, p)`` each column sorted ascending, NaN (missing) last.
        window: ``(n_win, p)`` float64, NaN or +/-inf where missing; not modified.
    """
    ref_n = (~np.isnan(reference_sorted)).sum(axis=0)
    win_sorted = _sorted_columns(window)
    win_n = (~np.isnan(win_sorted)).sum(axis=1)
    reference = np.ascontiguousarray(reference_sorted.T)
    return _statistic(_sup_counts(reference, ref_n, win_sorted, win_n), ref_n, win_n)


@njit(cache=True, nogil=True)
def _outside_square(n: int, h: int) -> float:
    """P(D >= h / n) for two samples of size ``n`` (reflection principle).

    P = 2 * sum_{k >= 1} (-1)^(k-1) C(2n, n - kh) / C(2n, n). Subtracting the terms directly
    cancels catastrophically, so the sum is nested from the innermost term outwards,
    P = 2 a_1 (1 - a_2 (1 - a_3 (...))), where a_k = C(2n, n - kh) / C(2n, n - (k-1)h) is a
    product of h factors below 1. The operation order is scipy's, so a roundoff just above
    1 happens for the same (n, h) and takes the same fallback (see `ks_pvalues`).
    """
    nested = 0.0
    for k in range(n // h, -1, -1):
        ratio = 1.0
        for j in range(h):
            ratio = (n - k * h - j) * ratio / (n + k * h + j + 1)
        nested = ratio * (1.0 - nested)
    return 2.0 * nested


@njit(cache=True, nogil=True)
def _outside_band(n1: int, n2: int, h: int) -> float:
    """P(D >= h / lcm(n1, n2)) for unequal sizes by Viehmann's recursion.

    A path steps from (0, 0) to (m, n), m >= n, one unit right (a value of the larger
    sample) or up. Cell (i, j) lies inside the band when |i n/g - j m/g| < h. For a cell
    inside, the share B of paths to it that already left the band is the average of its two
    predecessors weighted by how many paths come through each, B(i, j) = (i B(i-1, j) +
    j B(i, j-1)) / (i + j); outside cells have B = 1. The answer is B(m, n). One column of
    B is kept and updated in place over the band only: the band's ends never move down.
    """
    m, n = max(n1, n2), min(n1, n2)
    g = math.gcd(m, n)
    mg, ng = m // g, n // g
    column = np.ones(n + 1)
    column[: min((h - 1) // mg, n) + 1] = 0.0  # i = 0: inside while j * mg < h, never left
    low = 0
    for i in range(1, m + 1):
        new_low = max((ng * i - h) // mg + 1, 0)  # first j with j * mg > i * ng - h
        high = min((ng * i + h - 1) // mg, n)  # last j with j * mg < i * ng + h
        if new_low > high:
            return 1.0  # the band is closed: every path has left it
        column[low:new_low] = 1.0  # cells that fell below the band are outside now
        low = new_low
        below = 0.0 if low == 0 else 1.0
        for j in range(low, high + 1):
            below = (column[j] * i + below * j) / (i + j)
            column[j] = below
    return float(column[n])


@njit(cache=True, nogil=True)
def _exact_pvalues(statistic: FloatArray, ref_n: IntArray, win_n: IntArray) -> FloatArray:
    out = np.empty(statistic.shape[0])
    for f in range(statistic.shape[0]):
        n1, n2 = ref_n[f], win_n[f]
        lcm = (n1 // math.gcd(n1, n2)) * n2
        h = int(np.rint(statistic[f] * lcm))  # D lies on the lattice k / lcm
        if h == 0:
            out[f] = 1.0
        elif n1 == n2:
            out[f] = _outside_square(n1, h)
        else:
            out[f] = _outside_band(n1, n2, h)
    return out


def ks_pvalues(
    statistic: FloatArray, ref_n: npt.NDArray[np.integer], win_n: npt.NDArray[np.integer]
) -> FloatArray:
    """``(p,)`` two-sided p-values of KS statistics, as ``scipy.stats.ks_2samp`` gives them.

    Exact while both sizes are at most `EXACT_MAX_N` (O(n1 n2 D) per feature for unequal
    sizes), else asymptotic. Like scipy, an exact value that roundoff pushed outside [0, 1]
    is replaced by the asymptotic one. NaN where the statistic is NaN or a size is 0.

    Args:
        statistic: ``(p,)`` KS statistics, e.g. from `ks_statistic`.
        ref_n: ``(p,)`` non-missing reference values per feature.
        win_n: ``(p,)`` non-missing window values per feature.
    """
    d = np.asarray(statistic, dtype=np.float64)
    n1 = np.asarray(ref_n, dtype=np.int64)
    n2 = np.asarray(win_n, dtype=np.int64)
    p = np.full(d.shape, np.nan)
    valid = (n1 > 0) & (n2 > 0) & ~np.isnan(d)
    exact = valid & (np.maximum(n1, n2) <= EXACT_MAX_N)
    if exact.any():
        p[exact] = _exact_pvalues(d[exact], n1[exact], n2[exact])
    # NaN-safe "outside [0, 1]": only roundoff above 1 happens in practice.
    asymptotic = valid & ~(exact & (p >= 0.0) & (p <= 1.0))
    if asymptotic.any():
        m, n = n1[asymptotic].astype(np.float64), n2[asymptotic].astype(np.float64)
        p[asymptotic] = kstwo.sf(d[asymptotic], np.round(m * n / (m + n)))
    np.clip(p, 0.0, 1.0, out=p)
    return p


class KSTest:
    """KS window test: a feature drifts when its statistic exceeds its threshold.

    With ``p_values=True`` each detection also carries `ks_pvalues` (evidence for a reader;
    the decision stays the calibrated threshold on the statistic). Off by default: exact
    p-values cost O(n_ref n_win D) per feature.
    """

    name = "ks"
    dtype_kind = "f"

    def __init__(
        self,
        reference_sorted: FloatArray,
        thresholds: FloatArray | SizedThresholds,
        p_values: bool = False,
    ) -> None:
        if reference_sorted.ndim != 2:
            raise ValueError(f"reference_sorted: expected 2-D, got {reference_sorted.shape}")
        if thresholds.shape != (reference_sorted.shape[1],):
            raise ValueError(
                f"thresholds: expected shape ({reference_sorted.shape[1]},), got {thresholds.shape}"
            )
        self.n_features = reference_sorted.shape[1]
        self._reference = np.ascontiguousarray(reference_sorted.T)  # (p, n_ref)
        self._ref_n = (~np.isnan(reference_sorted)).sum(axis=0)
        self.thresholds = thresholds
        self.p_values = p_values

    def evaluate(self, window: WindowView) -> Detection:
        win_sorted, win_n = self._sorted(window)
        return self._detection(
            window, _sup_counts(self._reference, self._ref_n, win_sorted, win_n), win_n
        )

    def start(self, window: WindowView) -> Callable[[], Detection]:
        """`evaluate` with the walk (the compiled kernel, which releases the GIL) on a worker
        thread: the caller meanwhile runs the other tests of its window."""
        win_sorted, win_n = self._sorted(window)
        if self._reference.size + win_sorted.size < BACKGROUND_MIN_VALUES:
            detection = self._detection(
                window, _sup_counts(self._reference, self._ref_n, win_sorted, win_n), win_n
            )
            return lambda: detection
        walk = _WALKER.submit(_sup_counts, self._reference, self._ref_n, win_sorted, win_n)
        # The detection reads only the window's row range, never its (moving) rows.
        return lambda: self._detection(window, walk.result(), win_n)

    def _sorted(self, window: WindowView) -> tuple[FloatArray, IntArray]:
        win_sorted = _sorted_columns(np.asarray(window.rows, dtype=np.float64))
        return win_sorted, (~np.isnan(win_sorted)).sum(axis=1)

    def _detection(self, window: WindowView, counts: IntArray, win_n: IntArray) -> Detection:
        statistic = _statistic(counts, self._ref_n, win_n)
        return window_detection(
            self.name,
            window,
            statistic,
            self.thresholds,
            win_n,
            ks_pvalues(statistic, self._ref_n, win_n) if self.p_values else None,
        )


__all__ = ["BACKGROUND_MIN_VALUES", "EXACT_MAX_N", "KSTest", "ks_pvalues", "ks_statistic"]
