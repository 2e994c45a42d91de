r"""Bootstrap replicates of the window tests' statistics, resampled from the reference rows.

`detectors.calibration` needs the joint law of every (test, column) statistic under the
null to measure how correlated the tests are. Each replicate draws, as whole rows (which
keeps the correlation between features), a pseudo-reference of the sample's size and an
independent pseudo-window, and computes every statistic of the pair (Efron and Tibshirani
1993, ch. 16; Praestgaard 1995 for the KS bootstrap).

**Blocks.** Rows are drawn in blocks of consecutive sample rows (circular; Kunsch 1989;
Politis and Romano 1992), ``block_length`` long, so a pseudo-window keeps the serial
dependence of the stream; independent rows use blocks of one row.

**Counts, not rows.** Both draws are count vectors over the ``n`` sample rows, so one pass
over each feature's sorted order gives the exact lattice KS value (ties compared only at
the ends of tie groups) and the PSI bin counts at the profile's bin edges, O(n) per feature
and replicate in one compiled kernel; chi-square and categorical PSI are two sparse
products. PSI and chi-square use reference shares or counts of all ``n_rows`` reference
rows, not only the ``n`` sampled ones; the pseudo-reference weights
:math:`u_i = 1 + \sqrt{n / n_{rows}} (c_i - 1)` give shares with that smaller variance
(mean 1, variance :math:`n / n_{rows}`).

References: B. Efron and R. Tibshirani, An Introduction to the Bootstrap, 1993. J.
Praestgaard, Scand. J. Statist. 22 (1995) 305-322. H. R. Kunsch, Ann. Statist. 17 (1989)
1217-1241. D. N. Politis and J. P. Romano, in Exploring the Limits of Bootstrap, 1992.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy import sparse

from detectors.buckets import CategoryBuckets
from detectors.detection import FloatArray, IntArray
from detectors.profile import ReferenceProfile
from detectors.psi import SHARE_FLOOR
from detectors.workers import MAX_THREADS, WorkerPool, usable_cpus

WORKERS = WorkerPool(min(usable_cpus(), MAX_THREADS) - 1, "calibrate")
"""The threads calibration shares its kernels with (the calling thread is one more)."""


def draw_rows(
    rng: np.random.Generator, n: int, window: int, replicates: int, block_length: int = 1
) -> tuple[IntArray, IntArray]:
    """Row indices of ``replicates`` pseudo-references (``n`` rows) and pseudo-windows
    (``window`` rows), in circular blocks of ``block_length`` consecutive rows."""
    if block_length <= 1:
        return rng.integers(0, n, size=(replicates, n)), rng.integers(
            0, n, size=(replicates, window)
        )
    return _blocks(rng, n, n, replicates, block_length), _blocks(
        rng, n, window, replicates, block_length
    )


def _blocks(rng: np.random.Generator, n: int, size: int, replicates: int, length: int) -> IntArray:
    per_replicate = -(-size // length)
    starts = rng.integers(0, n, size=(replicates, per_replicate, 1))
    rows = (starts + np.arange(length)[None, None, :]) % n
    return np.ascontiguousarray(rows.reshape(replicates, per_replicate * length)[:, :size])


INT32_MAX = 2**31 - 1

LANES = 64
"""Replicates the numeric kernel advances together: one row's counts of all of them are
contiguous, so each step of the walk in sorted order is a short vector operation instead
of a gather per replicate."""


@njit(cache=True, nogil=True)
def lane_counts(drawn: IntArray, n: int, lanes: int, dtype: type) -> IntArray:
    """``(n, lanes)``: occurrences of each row index in ``drawn[b]``, in lane ``b``."""
    counts: IntArray = np.zeros((n, lanes), dtype=dtype)
    for b in range(drawn.shape[0]):
        for row in drawn[b]:
            counts[row, b] += 1
    return counts


@njit(cache=True, nogil=True)
def _numeric_kernel(
    order: IntArray,
    n_observed: IntArray,
    group_end: npt.NDArray[np.bool_],
    bin_end: IntArray,
    reference: IntArray,
    window: IntArray,
    shrink: float,
    floor: float,
    terms: FloatArray,
    ks: FloatArray,
    psi: FloatArray,
) -> None:
    """KS and PSI of (pseudo-reference, pseudo-window) count pairs, into ``ks``, ``psi``.

    ``reference`` and ``window`` are ``(n, lanes)``: per sample row, its count in each
    replicate; ``ks`` and ``psi`` get one row per replicate (the first ``len(ks)`` lanes).
    ``order[f]`` lists the sample rows by feature f's value, missing last; ``group_end[f, k]``
    marks the last of a tie group; ``bin_end[f, b]`` is the number of sorted values in PSI
    bins 0..b-1. Per feature, one pass in sorted order accumulates every replicate's counts;
    D is evaluated in integers, |i N_w - j N_r|, as `detectors.ks` does (exact in the
    counts' dtype: the caller picks one wide enough for N_r N_w). ``terms`` is
    `psi_terms` of the draws' sizes where ``shrink`` is 1, else empty: a replicate and
    feature with those sizes (nothing missing) looks its PSI terms up.
    """
    n_features, n = order.shape
    lanes, n_bins = reference.shape[1], bin_end.shape[1] - 1
    dtype = reference.dtype
    all_ref = np.zeros(lanes, dtype=dtype)
    all_win = np.zeros(lanes, dtype=dtype)
    for i in range(n):
        all_ref += reference[i]
        all_win += window[i]
    cum_ref, cum_win = np.empty(lanes, dtype=dtype), np.empty(lanes, dtype=dtype)
    total_ref, total_win = np.empty(lanes, dtype=dtype), np.empty(lanes, dtype=dtype)
    best = np.empty(lanes, dtype=dtype)
    at_ref = np.zeros((n_bins + 1, lanes), dtype=np.int64)  # counts at each bin's end
    at_win = np.zeros((n_bins + 1, lanes), dtype=np.int64)
    for f in range(n_features):
        m, order_f, ends, edges = n_observed[f], order[f], group_end[f], bin_end[f]
        total_ref[:] = all_ref
        total_win[:] = all_win
        for k in range(m, n):  # rows missing this feature count on neither side
            total_ref -= reference[order_f[k]]
            total_win -= window[order_f[k]]
        cum_ref[:] = 0
        cum_win[:] = 0
        best[:] = 0
        b = 1
        while b <= n_bins and edges[b] == 0:
            b += 1
        for k in range(m):
            row = order_f[k]
            for r in range(lanes):
                cum_ref[r] += reference[row, r]
                cum_win[r] += window[row, r]
            if ends[k]:
                for r in range(lanes):
                    best[r] = max(
                        best[r], abs(cum_ref[r] * total_win[r] - cum_win[r] * total_ref[r])
                    )
            while b <= n_bins and edges[b] == k + 1:
                at_ref[b] = cum_ref
                at_win[b] = cum_win
                b += 1
        for r in range(ks.shape[0]):
            n_ref, n_win = np.int64(total_ref[r]), np.int64(total_win[r])
            if n_ref == 0 or n_win == 0:
                ks[r, f] = np.nan
                psi[r, f] = np.nan
                continue
            ks[r, f] = np.int64(best[r]) / (n_ref * n_win)
            if terms.shape[0] == n_win + 1 and terms.shape[1] == n_ref + 1:
                value = 0.0
                ref_below = win_below = 0  # counts of the bins before, as integers
                for bin_ in range(n_bins):
                    ref_upto = win_upto = 0
                    if edges[bin_ + 1] > 0:  # else no value is in these bins (stale counts)
                        ref_upto, win_upto = at_ref[bin_ + 1, r], at_win[bin_ + 1, r]
                    value += terms[win_upto - win_below, ref_upto - ref_below]
                    ref_below, win_below = ref_upto, win_upto
                psi[r, f] = value
                continue
            weight_total = m + shrink * (n_ref - m)
            value = 0.0
            before_ref = 0.0
            before_win = 0.0
            for bin_ in range(n_bins):
                end = edges[bin_ + 1]
                upto_ref = 0.0
                upto_win = 0.0
                if end > 0:
                    upto_ref = end + shrink * (at_ref[bin_ + 1, r] - end)
                    upto_win = float(at_win[bin_ + 1, r])
                share_ref = max((upto_ref - before_ref) / weight_total, floor)
                share_win = max((upto_win - before_win) / n_win, floor)
                value += (share_win - share_ref) * math.log(share_win / share_ref)
                before_ref = upto_ref
                before_win = upto_win
            psi[r, f] = value


@njit(cache=True, nogil=True)
def psi_terms(n_ref: int, n_win: int, floor: float) -> FloatArray:
    """``(n_win + 1, n_ref + 1)``: the PSI term of a bin holding ``w`` of ``n_win`` window
    rows and ``r`` of ``n_ref`` reference rows, computed as `_numeric_kernel` computes it
    unshrunk (the same operations: a lookup gives the same bits). A replicate's PSI is a
    sum of such terms over the bins: a million logarithms a calibration of 50 features,
    where the window's and the reference's counts take a few thousand pairs of values."""
    terms = np.empty((n_win + 1, n_ref + 1))
    for w in range(n_win + 1):
        share_win = max(float(w) / n_win, floor)
        for r in range(n_ref + 1):
            # The kernel's weight total m + shrink * (n_ref - m) is n_ref exactly unshrunk.
            share_ref = max(float(r) / float(n_ref), floor)
            terms[w, r] = (share_win - share_ref) * math.log(share_win / share_ref)
    return terms


MAX_TERMS = 1 << 18
"""Most entries of a `psi_terms` table (2 MiB): beyond, the reference and window are large
enough that the table would cost about as many logarithms as it saves."""


class NumericResampler:
    """Sorted layout of the numeric row sample; KS and PSI statistics of replicates."""

    def __init__(self, profile: ReferenceProfile, rows: FloatArray) -> None:
        n, p = rows.shape
        self.order = np.ascontiguousarray(np.argsort(rows, axis=0, kind="stable").T)
        self.n_observed = np.isfinite(rows).sum(axis=0).astype(np.int64)
        ordered = np.take_along_axis(rows, self.order.T, axis=0)  # NaN last
        observed = np.arange(n)[:, None] < self.n_observed[None, :]
        following = np.vstack([ordered[1:], np.full((1, p), np.nan)])
        self.group_end = np.ascontiguousarray((observed & (ordered != following)).T)
        # Sorted values <= each inner edge: the profile's rule "bin = (v > edges).sum()".
        inner = profile.bin_edges[:, 1:-1]
        below = (ordered.T[:, :, None] <= inner[:, None, :]) & observed.T[:, :, None]
        self.bin_end = np.zeros((p, inner.shape[1] + 2), dtype=np.int64)
        self.bin_end[:, 1:-1] = below.sum(axis=1)
        self.bin_end[:, -1] = self.n_observed
        if (np.diff(self.bin_end, axis=1) < 0).any():  # the kernel walks bin ends in order
            raise ValueError("profile: bin_edges must be finite and ascending per feature")

    def statistics(self, drawn: DrawnRows, shrink: float) -> tuple[FloatArray, FloatArray]:
        """``(replicates, p)`` KS and PSI of each replicate of ``drawn``."""
        (block, n_ref), n_win = drawn.reference.shape, drawn.window.shape[1]
        p, n = self.order.shape
        ks, psi = np.empty((block, p)), np.empty((block, p))
        # D compares i N_w with j N_r, at most N_r N_w: 32-bit lanes are twice as many.
        dtype = np.int32 if n_ref * n_win <= INT32_MAX else np.int64
        terms = _NO_TERMS
        if shrink == 1.0 and (n_ref + 1) * (n_win + 1) <= MAX_TERMS:
            terms = _terms(n_ref, n_win)

        def lane_group(group: int) -> None:
            lo, hi = group * LANES, min((group + 1) * LANES, block)
            reference, window = drawn.lanes(group, n, dtype)
            _numeric_kernel(
                self.order,
                self.n_observed,
                self.group_end,
                self.bin_end,
                reference,
                window,
                shrink,
                SHARE_FLOOR,
                terms,
                ks[lo:hi],
                psi[lo:hi],
            )

        # Replicates are independent: lane groups shared across CPUs.
        WORKERS.share(-(-block // LANES), lane_group)
        return ks, psi


_NO_TERMS = np.empty((0, 0))


@functools.lru_cache(maxsize=8)
def _terms(n_ref: int, n_win: int) -> FloatArray:
    """`psi_terms` of these sizes, shared by the calibrations of a fleet (read-only)."""
    terms = psi_terms(n_ref, n_win, SHARE_FLOOR)
    terms.flags.writeable = False
    return terms


class DrawnRows:
    """The drawn row indices of a block of replicates (pseudo-references and
    pseudo-windows, read-only), and their lane counts once counted: calibrations that
    share the rows share the counts too."""

    def __init__(self, reference: IntArray, window: IntArray) -> None:
        reference.flags.writeable = window.flags.writeable = False
        self.reference, self.window = reference, window
        self._lanes: dict[tuple[int, int, str], tuple[IntArray, IntArray]] = {}

    def lanes(self, group: int, n: int, dtype: type) -> tuple[IntArray, IntArray]:
        """`lane_counts` of lane group ``group`` (replicates ``group * LANES`` on) of the
        pseudo-references and of the pseudo-windows, over ``n`` rows."""
        key = (group, n, np.dtype(dtype).char)
        found = self._lanes.get(key)
        if found is None:
            lo, hi = group * LANES, min((group + 1) * LANES, self.reference.shape[0])
            reference = lane_counts(self.reference[lo:hi], n, LANES, dtype)
            window = lane_counts(self.window[lo:hi], n, LANES, dtype)
            reference.flags.writeable = window.flags.writeable = False
            found = self._lanes[key] = (reference, window)  # one key per thread: no race
        return found

    def nbytes(self, n: int) -> int:
        """The rows' bytes, and their 32-bit lane counts' over ``n`` rows."""
        groups = -(-self.reference.shape[0] // LANES)
        return int(self.reference.nbytes + self.window.nbytes + 2 * groups * n * LANES * 4)


class CategoricalResampler:
    """Bucket layout of the categorical sample (its first ``rows`` rows); chi-square and PSI
    of replicates."""

    def __init__(self, profile: ReferenceProfile, rows: int | None = None) -> None:
        buckets = CategoryBuckets.from_counts(profile.category_counts)
        codes = profile.category_rows[:rows]
        n = codes.shape[0]
        observed = codes >= 0
        flat = np.minimum(codes, buckets.n_categories) + buckets.offsets
        row, feature = np.nonzero(observed)
        self.indicator = sparse.csr_matrix(
            (np.ones(row.size), (row, flat[row, feature])),
            shape=(n, buckets.reference_counts.shape[0]),
        )
        self.buckets = buckets
        self.known = buckets.reference_counts > 0  # the live reference never has "unseen"
        # The sample's shares stand for counts of all rows: n_rows / n rows per sampled row.
        self.scale_to_rows = max(profile.n_rows, n) / n

    def statistics(
        self, drawn_reference: IntArray, drawn_window: IntArray, shrink: float
    ) -> tuple[FloatArray, FloatArray]:
        """``(replicates, c)`` chi-square and PSI of each replicate."""
        n = self.indicator.shape[0]
        block = drawn_reference.shape[0]
        # (n, block): one column per replicate, as the indicator product takes them.
        reference = lane_counts(drawn_reference, n, block, np.int64)
        window = lane_counts(drawn_window, n, block, np.int64)
        weights = (1.0 - shrink) + shrink * reference.astype(np.float64)
        counts = np.asarray(self.indicator.T @ weights).T * self.scale_to_rows
        counts = np.where(self.known, counts, 0.0)
        drawn = np.asarray(self.indicator.T @ window.astype(np.float64)).T
        return chi2_and_psi(counts, drawn, self.buckets)


def chi2_and_psi(
    reference: FloatArray, window: FloatArray, buckets: CategoryBuckets
) -> tuple[FloatArray, FloatArray]:
    """``(B, c)`` chi-square (as `detectors.chi2`) and PSI (as `detectors.psi`) per replicate.

    ``reference`` and ``window`` are ``(B, T)`` counts in the flat bucket layout.
    """
    offsets, sizes = buckets.offsets, buckets.sizes

    def per_feature(values: FloatArray) -> FloatArray:
        return np.asarray(np.add.reduceat(values, offsets, axis=1))

    def spread(values: FloatArray) -> FloatArray:
        return np.repeat(values, sizes, axis=1)

    column = reference + window
    kept = column > 0
    dof = per_feature(kept.astype(np.float64)) - 1
    reference_total, window_total = per_feature(reference), per_feature(window)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = spread(reference_total + window_total)
        expected_ref = spread(reference_total) * column / total
        expected_win = spread(window_total) * column / total
        yates = spread(dof == 1)
        observed_ref = np.where(yates, _towards(reference, expected_ref), reference)
        observed_win = np.where(yates, _towards(window, expected_win), window)
        terms = (observed_ref - expected_ref) ** 2 / expected_ref
        terms += (observed_win - expected_win) ** 2 / expected_win
        statistic = np.where(dof > 0, per_feature(np.where(kept, terms, 0.0)), 0.0)
        share_ref = np.maximum(reference / spread(reference_total), SHARE_FLOOR)
        share_win = np.maximum(window / spread(window_total), SHARE_FLOOR)
    psi = per_feature((share_win - share_ref) * np.log(share_win / share_ref))
    valid = (window_total > 0) & (reference_total > 0)
    return np.where(valid, statistic, np.nan), np.where(valid, psi, np.nan)


def _towards(observed: FloatArray, expected: FloatArray) -> FloatArray:
    diff = expected - observed
    return np.asarray(observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff))


__all__ = [
    "INT32_MAX",
    "LANES",
    "WORKERS",
    "CategoricalResampler",
    "DrawnRows",
    "NumericResampler",
    "chi2_and_psi",
    "draw_rows",
    "lane_counts",
]
