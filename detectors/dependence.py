r"""Serial dependence of each column, estimated from the reference in time order.

Rows of a monitored stream are rarely independent: a sensor sampled every second, traffic
with a daily cycle, a slowly warming machine. A window of ``m`` such rows holds fewer than
``m`` rows' worth of information, and every test calibrated for independent rows fires too
often. This module measures how much fewer.

**Variance inflation.** For a stationary 0/1 series :math:`I_t` with autocorrelation
:math:`\rho_k`, the share of ones in ``m`` consecutive rows has variance
:math:`\sigma^2 \tau_m / m` with

.. math:: \tau_m = 1 + 2 \sum_{k=1}^{m-1} (1 - k/m) \, \rho_k

(the Bartlett form of the long-run variance). Independent rows give :math:`\tau_m = 1`;
a Gaussian AR(1) series with lag-1 correlation 0.9 gives about 13 at the median for long
windows. A window of ``m`` rows then has :math:`m / \tau_m` *effective* rows: every
two-sample law of `detectors.nulls` takes effective sizes, and the calibration's bootstrap
resamples blocks of consecutive rows (`Dependence.block_length`).

**Which series.** The empirical distribution function at ``x`` is a share of indicators
:math:`1\{X_t \le x\}`; the tests compare such shares (KS at every ``x``, PSI and
chi-square per bin or category, quality tests per event). Per column the estimate is the
mean :math:`\tau_m` over the indicators of the three quartiles (numeric) or of the three most
frequent categories (categorical) (the largest of three noisy estimates would be biased
upwards by the noise alone), or that of the missing value when larger. How that variance spreads
over PSI bins and categories is `detectors.nulls`' model (a Gaussian AR(1) with the same
inflation): a persistent series fills a few neighbouring bins of a window.

**Estimation.** First a gate: a column whose normal scores (of its ranks) show no serial
correlation in a Ljung-Box test over the first lags at level `GATE_LEVEL` is independent,
:math:`\tau = 1` exactly. An estimate that only adds noise would not be harmless: a
threshold set for 1.2 times the variance lets through about a tenth of the false alarms
the budget allows, deep in the tail, and costs power. Otherwise sample autocorrelations by
FFT are summed up to Geyer's initial positive sequence (the first lag pair
:math:`\rho_{2j} + \rho_{2j+1} \le 0` ends the sum; Geyer 1992). A seasonal cycle
longer than the window keeps its autocorrelations positive over the window and is counted
in full; a trend within the reference looks like strong dependence, and lowers the
effective size accordingly. Missing values are dropped from a numeric series first.

**Limits.** A short reference underestimates strong dependence (its sample autocorrelations
are biased towards 0: with 50 rows of an AR(1) series at 0.9, about half the true
:math:`\tau`), so a reference with few effective rows is flagged (`MIN_EFFECTIVE_ROWS`) and
its tests refuse to alarm rather than pretend. Dependence that the reference does not show
(a cycle longer than the reference) cannot be estimated from it: build the reference from
at least one full cycle. The estimate uses at most `MAX_ROWS` consecutive rows.

References: G. M. Ljung and G. E. P. Box, Biometrika 65 (1978) 297-303. C. J. Geyer,
Practical Markov chain Monte Carlo, Statistical Science 7 (1992) 473-483. H. R. Kunsch, The
jackknife and the bootstrap for general stationary observations, Ann. Statist. 17 (1989)
1217-1241. P. Buhlmann, Sieve bootstrap for time series, Bernoulli 3 (1997) 123-148.

Example:
    >>> import numpy as np
    >>> from scipy.signal import lfilter
    >>> from detectors.dependence import estimate_dependence
    >>> rng = np.random.default_rng(0)
    >>> iid = rng.standard_normal((5000, 1))
    >>> ar = lfilter([1.0], [1.0, -0.9], rng.standard_normal(5000))[:, None]
    >>> dependence = estimate_dependence(np.hstack([iid, ar]), np.empty((5000, 0), int))
    >>> bool(dependence.at(1000)[0] < 1.2), bool(10 < dependence.at(1000)[1] < 17)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats

from detectors.detection import FloatArray, IntArray

MAX_ROWS = 20_000
"""Consecutive rows the estimate reads at most (the first ones of the reference)."""

MIN_EFFECTIVE_ROWS = 10.0
"""A column whose reference holds fewer effective rows cannot be calibrated honestly."""

GATE_LEVEL = 0.1
"""Level below which a column counts as serially dependent (lag-1 or Ljung-Box test)."""
GATE_LAGS = 10

_HERMITE = np.polynomial.hermite_e.hermegauss(9)  # nodes and weights for E[f(Z)], Z ~ N(0, 1)

QUARTILES = (0.25, 0.5, 0.75)
TOP_CATEGORIES = 3

GRID = np.unique(np.round(2.0 ** (np.arange(0, 41) / 2)).astype(np.int64))
"""Window lengths ``m`` at which ``tau_m`` is tabulated: 1, 2, 3, 4, 6, 8, ... about 2**20."""
_LOG_GRID = np.log2(GRID.astype(np.float64))


@dataclass(frozen=True, eq=False)
class Dependence:
    """``tau_m`` per column (numeric columns first, then categorical), tabulated on `GRID`.

    ``inflation[j, g]`` is column j's variance inflation for ``GRID[g]`` consecutive rows;
    beyond the grid it stays at its last value.
    """

    inflation: FloatArray  # (k, len(GRID)), each >= 1
    n_rows: int  # rows the estimate read

    def __post_init__(self) -> None:
        if self.inflation.ndim != 2 or self.inflation.shape[1] != GRID.shape[0]:
            raise ValueError(
                f"inflation: expected shape (k, {GRID.shape[0]}), got {self.inflation.shape}"
            )
        if not np.all(np.isfinite(self.inflation) & (self.inflation >= 1.0)):
            raise ValueError("inflation: every value must be finite and at least 1")

    @classmethod
    def independent(cls, n_columns: int, n_rows: int = 0) -> Dependence:
        """No serial dependence (rows known to be exchangeable, e.g. shuffled training data)."""
        return cls(np.ones((n_columns, GRID.shape[0])), n_rows)

    @property
    def n_columns(self) -> int:
        return int(self.inflation.shape[0])

    def at(self, rows: float) -> FloatArray:
        """``(k,)`` inflation ``tau_m`` of ``rows`` consecutive rows (interpolated in log m
        between grid points)."""
        x = np.log2(max(float(rows), 1.0))
        if x >= _LOG_GRID[-1]:
            return np.asarray(self.inflation[:, -1])
        upper = min(max(int(np.searchsorted(_LOG_GRID, x, side="right")), 1), _LOG_GRID.size - 1)
        low, high = _LOG_GRID[upper - 1], _LOG_GRID[upper]
        weight = (x - low) / (high - low)
        curves = self.inflation
        return np.asarray((1 - weight) * curves[:, upper - 1] + weight * curves[:, upper])

    def block_length(self, limit: int) -> int:
        """Rows per block of a block bootstrap keeping the stream's dependence: about twice
        the (lower) median column's long-run inflation, at most ``limit``; rows whose
        columns are mostly independent get blocks of one row (the blocks only shape how
        the tests move together, which a few persistent columns hardly change)."""
        if self.n_columns == 0:
            return 1
        typical = float(np.quantile(self.inflation[:, -1], 0.5, method="lower"))
        length = 1 if typical <= 1.0 else math.ceil(2.0 * typical)
        return int(min(length, max(limit, 1)))

    def tail_equivalent(self, depth: float) -> Dependence:
        """This estimate widened by its own sampling error, for tails of ``depth``.

        A tail probability at inflation tau behaves like ``exp(-depth / tau)``, which is
        convex in tau: an estimate as often too low as too high lets through more false
        alarms than it saves. With ``log tau`` uncertain by ``s`` (the delta method on the
        lag-1 autocorrelation of an AR(1) with the same long-run inflation:
        ``s = 2 / sqrt((1 - rho^2) n)``), the returned inflation ``tau*`` solves
        ``exp(-depth / tau*) = E[exp(-depth / (tau e^{s Z}))]``, so the tail holds on
        average over what the reference could have shown. ``depth`` is ``-log`` of the
        per-test level.
        """
        if self.n_rows < 2 or self.n_columns == 0:
            return self
        long_run = self.inflation[:, -1]
        rho = np.clip((long_run - 1.0) / (long_run + 1.0), 0.0, 0.95)
        spread = 2.0 / np.sqrt((1.0 - rho**2) * self.n_rows)
        nodes, weights = _HERMITE
        weights = weights / weights.sum()
        # E[exp(-depth e^{-s Z} / tau)] per column, in logs to keep deep tails finite.
        exponents = -depth * np.exp(-np.outer(spread, nodes)) / long_run[:, None]
        largest = exponents.max(axis=1, keepdims=True)
        log_mean = largest[:, 0] + np.log((weights * np.exp(exponents - largest)).sum(axis=1))
        factor = np.maximum(depth / (-log_mean) / long_run, 1.0)[:, None]
        return Dependence(self.inflation * factor, self.n_rows)

    def pooled(self) -> Dependence:
        """Each column's curve raised to at least the (lower) median column's.

        The rows of one stream are the same events in time: what makes one column persistent
        (slow sensors, bursts of traffic) usually moves the others, and a short reference
        underestimates some columns' dependence by chance. With many columns the family
        alarms on the one estimated lowest, so the median is a floor; a stream whose columns
        are mostly independent keeps its estimates.
        """
        if self.n_columns < 2:
            return self
        # The lower median: with half the columns independent, nothing is raised.
        floor = np.quantile(self.inflation, 0.5, axis=0, method="lower")
        return Dependence(np.maximum(self.inflation, floor[None, :]), self.n_rows)


SHORT_EFFECTIVE_ROWS = 50.0
"""Below this many effective rows a reference's thresholds are honest but conservative."""


def notes(dependence: Dependence, names: Sequence[str], observed: FloatArray) -> list[str]:
    """What a person should know about each column's dependence: too short to calibrate,
    short for its dependence, or dependent over the whole reference (a cycle or trend at
    least as long as the reference, which it cannot show whole).

    Args:
        names: the columns, in the dependence's order.
        observed: ``(k,)`` non-missing reference rows per column.
    """
    out = []
    long_run = dependence.inflation[:, -1]
    effective = np.asarray(observed) / np.maximum(dependence.at(dependence.n_rows), 1.0)
    quarter = dependence.at(max(dependence.n_rows // 4, 1))
    for j, name in enumerate(names):
        if effective[j] < MIN_EFFECTIVE_ROWS:
            out.append(
                f"{name}: about {effective[j]:.0f} effective rows (serial dependence "
                f"{long_run[j]:.1f}x): too few to calibrate, its tests never alarm; use a "
                "longer reference"
            )
        elif effective[j] < SHORT_EFFECTIVE_ROWS:
            out.append(
                f"{name}: about {effective[j]:.0f} effective rows (serial dependence "
                f"{long_run[j]:.1f}x): thresholds are conservative; a longer reference sees more"
            )
        if dependence.n_rows >= 40 and long_run[j] > 1.5 * max(float(quarter[j]), 1.0):
            out.append(
                f"{name}: still correlated a quarter of the reference apart: a cycle or trend "
                "as long as the reference; build it from at least one full cycle"
            )
    return out


def estimate_dependence(
    numeric: FloatArray, category_codes: IntArray, max_rows: int = MAX_ROWS
) -> Dependence:
    """Estimate each column's `Dependence` from reference rows in time order.

    Args:
        numeric: ``(n, p)`` float64, NaN (or +/-inf) where missing.
        category_codes: ``(n, c)`` integer codes, negative where missing.
        max_rows: the first ``max_rows`` rows are read.
    """
    numeric = np.asarray(numeric, dtype=np.float64)[:max_rows]
    codes = np.asarray(category_codes)[:max_rows]
    gate = _complete_columns_gate(numeric)
    curves = [_numeric_curve(numeric[:, j], gate[j]) for j in range(numeric.shape[1])]
    curves += [_categorical_curve(codes[:, j]) for j in range(codes.shape[1])]
    inflation = np.vstack(curves) if curves else np.ones((0, GRID.shape[0]))
    return Dependence(inflation, numeric.shape[0])


def _numeric_curve(column: FloatArray, dependent: bool | None = None) -> FloatArray:
    """``dependent``: the gate's answer where it is already known."""
    finite = np.isfinite(column)
    values = column[finite]
    if dependent is None:
        dependent = _dependent(values, finite)
    if not dependent:
        return np.ones(GRID.shape[0])
    quartiles = [values <= level for level in np.quantile(values, QUARTILES)]
    missing = [~finite] if 0 < finite.sum() < finite.shape[0] else []
    return _curve(quartiles, missing)


def _categorical_curve(codes: IntArray) -> FloatArray:
    present = codes >= 0
    values = codes[present]
    if not _dependent(values.astype(np.float64), present):
        return np.ones(GRID.shape[0])
    found, counts = np.unique(values, return_counts=True)
    top = [values == code for code in found[np.argsort(-counts, kind="stable")[:TOP_CATEGORIES]]]
    missing = [~present] if 0 < present.sum() < present.shape[0] else []
    return _curve(top, missing)


def _dependent(values: FloatArray, present: npt.NDArray[np.bool_]) -> bool:
    """Whether the lag-1 or Ljung-Box test finds serial correlation in the normal scores of
    ``values`` or in the missing indicator ``~present`` (see the module docstring)."""
    candidates = []
    if values.shape[0] >= 8:
        ranks = stats.rankdata(values)
        candidates.append(special.ndtri((ranks - 0.5) / ranks.shape[0]))
    if 0 < present.sum() < present.shape[0]:
        candidates.append((~present).astype(np.float64))
    return any(_ljung_box(series) < GATE_LEVEL / 2 for series in candidates)


def _complete_columns_gate(numeric: FloatArray) -> list[bool | None]:
    """`_dependent` of every column without missing values, all at once (a model's
    features at its first calibration: one call per profile, not per column); None for
    the others."""
    n, p = numeric.shape
    gate: list[bool | None] = [None] * p
    complete = np.flatnonzero(np.isfinite(numeric).all(axis=0))
    if n < 8 or complete.shape[0] == 0:
        return gate
    ranks = stats.rankdata(numeric[:, complete], axis=0)
    scores = special.ndtri((ranks - 0.5) / n)
    for j, p_value in zip(complete, _ljung_box_columns(scores), strict=True):
        gate[j] = bool(p_value < GATE_LEVEL / 2)
    return gate


def _ljung_box_columns(series: FloatArray) -> FloatArray:
    """`_ljung_box` of each column of ``series`` ``(n, k)``."""
    n = series.shape[0]
    centred = series - series.mean(axis=0)
    variance = np.einsum("ij,ij->j", centred, centred)
    constant = np.all(series == series[0], axis=0)
    variance = np.where(constant, 1.0, variance)
    rho = np.array(
        [
            np.einsum("ij,ij->j", centred[:-k], centred[k:]) / variance
            for k in range(1, min(GATE_LAGS, n - 1) + 1)
        ]
    )
    terms = n * (n + 2) * rho**2 / (n - np.arange(1, rho.shape[0] + 1))[:, None]
    lags = min(GATE_LAGS, max(n // 5, 1))
    p_values = np.minimum(stats.chi2.sf(terms[0], 1), stats.chi2.sf(terms[:lags].sum(axis=0), lags))
    return np.asarray(np.where(constant, 1.0, p_values))


def serially_dependent(series: FloatArray) -> bool:
    """Whether one series (e.g. a model's misses, 0 and 1) fails the gate of the module
    docstring: serial correlation at lag 1 or over the first `GATE_LAGS` lags."""
    return series.shape[0] >= 8 and _ljung_box(series) < GATE_LEVEL / 2


def _ljung_box(series: FloatArray) -> float:
    """The smaller p-value of the Ljung-Box test at lag 1 (most powerful against AR(1)) and
    over the first `GATE_LAGS` lags (other short-range dependence)."""
    n = series.shape[0]
    if np.all(series == series[0]):
        return 1.0
    # A few lags: dot products, cheaper than the FFT of the whole series.
    centred = series - series.mean()
    variance = float(centred @ centred)
    rho = np.array(
        [float(centred[:-k] @ centred[k:]) / variance for k in range(1, min(GATE_LAGS, n - 1) + 1)]
    )
    terms = n * (n + 2) * rho**2 / (n - np.arange(1, rho.shape[0] + 1))
    lags = min(GATE_LAGS, max(n // 5, 1))
    return float(min(stats.chi2.sf(terms[0], 1), stats.chi2.sf(float(terms[:lags].sum()), lags)))


def _curve(levels: list[npt.NDArray[np.bool_]], missing: list[npt.NDArray[np.bool_]]) -> FloatArray:
    """The mean curve of the ``levels`` indicators, or the missing indicator's if larger."""
    curves = [
        inflation_curve(indicator.astype(np.float64))
        for indicator in levels
        if 0 < indicator.sum() < indicator.shape[0]
    ]
    curve = np.mean(curves, axis=0) if curves else np.ones(GRID.shape[0])
    for indicator in missing:
        curve = np.maximum(curve, inflation_curve(indicator.astype(np.float64)))
    return np.asarray(curve)


def inflation_curve(series: FloatArray) -> FloatArray:
    """``(len(GRID),)`` ``tau_m`` of one series: autocorrelations summed up to Geyer's
    initial positive sequence, corrected for the bias of a centred sample autocorrelation.

    With the mean estimated from the same ``n`` rows, the sample autocorrelation at lag k is
    about :math:`(1 - k/n)(\rho_k - \tau/n) / (1 - \tau/n)`: every lag loses the variance of
    the mean, which for a persistent series of few effective rows is most of the signal
    (50 rows of an AR(1) at 0.9 show about half their :math:`\tau`). Solving for the
    :math:`\rho_k` with the :math:`\tau` they sum to is linear; a series too short for its
    own dependence (the solution beyond ``n``) gets :math:`\tau = n`, one effective row.
    """
    rho = _autocorrelation(series)
    n = rho.shape[0]
    pairs = rho[0 : n - 1 : 2][: (n - 1) // 2] + rho[1:n:2][: (n - 1) // 2]
    ends = np.flatnonzero(pairs <= 0)
    kept = 2 * int(ends[0]) if ends.size else 2 * pairs.shape[0]
    lags = np.arange(1, max(kept, 1))
    unbiased = rho[1 : max(kept, 1)] / (1.0 - lags / n)
    total, k = float(unbiased.sum()), float(lags.shape[0])
    denominator = 1.0 + 2.0 * total / n - 2.0 * k / n
    tau_long = (1.0 + 2.0 * total) / denominator if denominator > 0 else float(n)
    tau_long = min(max(tau_long, 1.0), float(n))
    rho_kept = unbiased * (1.0 - tau_long / n) + tau_long / n
    # tau_m = 1 + 2 * sum_{k < m} (1 - k/m) rho_k for every grid m at once: cumulative sums
    # of rho_k and k rho_k, read at k = min(m, kept) - 1.
    cumulative = np.concatenate([[0.0], np.cumsum(rho_kept)])
    weighted = np.concatenate([[0.0], np.cumsum(lags * rho_kept)])
    upto = np.minimum(GRID - 1, lags.shape[0])
    tau = 1.0 + 2.0 * (cumulative[upto] - weighted[upto] / GRID)
    if tau_long >= n:  # no usable estimate: every window is one effective row
        tau = np.maximum(tau, np.minimum(GRID, n).astype(np.float64))
    # A window of m rows holds at least one effective row, and no series more than n.
    return np.asarray(np.clip(tau, 1.0, np.minimum(GRID, n).astype(np.float64)))


def _autocorrelation(series: FloatArray) -> FloatArray:
    """``(n,)`` sample autocorrelations at lags 0..n-1 (biased estimator, FFT)."""
    centred = series - series.mean()
    n = centred.shape[0]
    size = 1 << int(2 * n - 1).bit_length()
    spectrum = np.fft.rfft(centred, size)
    covariance = np.fft.irfft(spectrum * np.conj(spectrum), size)[:n]
    if covariance[0] <= 0:
        result = np.zeros(n)
        result[0] = 1.0
        return result
    return np.asarray(covariance / covariance[0])


__all__ = [
    "GATE_LAGS",
    "GATE_LEVEL",
    "GRID",
    "MAX_ROWS",
    "MIN_EFFECTIVE_ROWS",
    "QUARTILES",
    "SHORT_EFFECTIVE_ROWS",
    "TOP_CATEGORIES",
    "Dependence",
    "estimate_dependence",
    "inflation_curve",
    "notes",
    "serially_dependent",
]
