r"""Null laws: how each test's statistic is distributed when nothing changed.

A threshold is only as honest as the law behind it. Each law here takes *effective* sizes
(`detectors.dependence`: ``rows / tau``) so that serially dependent rows count for what they
carry, and each is valid for the small windows and references monitord accepts.

- **KS** (`ks_sf`, `ks_isf`): the Kolmogorov distribution at
  :math:`\lambda = (\sqrt{m} + 0.12 + 0.11/\sqrt{m}) D`,
  :math:`m = n_r n_w / (n_r + n_w)` of the effective sizes (Stephens 1970). Under
  dependence the empirical process converges to a Gaussian process whose variance is the
  independent one times the long-run inflation (Billingsley 1968, th. 22.1); the largest
  inflation over the quartiles makes it conservative. Ties only shrink D (Noether 1963).
- **PSI and chi-square** (`CountLaw`): simulated. The truth of a window is drawn around the
  reference shares as a Dirichlet with the reference's effective size (its own sampling
  error, which stays for the life of the profile), the window's counts as a
  Dirichlet-multinomial whose variance is the multinomial one times the window's inflation,
  and the statistic is computed exactly as the live test computes it against the actual
  reference. Small windows (a PSI bin expecting two values, an empty bin adding
  :math:`p_k \ln(p_k / 10^{-4})`), rare categories and an "unseen" bucket (Good-Turing mass)
  are then in the law, where a chi-square approximation is far too light. Beyond the
  simulated range the upper tail is a generalised Pareto fitted to the top `TAIL` of the
  draws (peaks over threshold; Pickands 1975, method of moments of Hosking and Wallis 1987),
  with shape at least 0: never lighter than exponential, which PSI's and Pearson's tails
  are not.
- **Rates** (`rate_count_isf`: missing values, unseen categories): a beta-binomial count
  whose mean is the reference rate (with half an event of prior, so a reference without any
  still admits a few) and whose variance adds the reference's sampling error and the
  window's inflation.
- **Out of range** (`out_of_range_isf`): for exchangeable continuous values, the number K of
  ``w`` window values outside the range of ``n`` reference values has the exact law
  :math:`P(K = k) = (k + 1) \binom{n - 2 + w - k}{n - 2} / \binom{n + w}{n}` (the reference
  values' positions among the ``n + w`` ranks are uniform). It is far heavier than
  Binomial(w, 2/n): the range is itself an extreme. Under dependence it is taken at the
  effective sizes and its count scaled by the window's inflation (exceedances come in runs).

References: M. A. Stephens, JRSS B 32 (1970) 115-122. P. Billingsley, Convergence of
Probability Measures, 1968. J. Pickands, Ann. Statist. 3 (1975) 119-131. J. R. M. Hosking and
J. R. Wallis, Technometrics 29 (1987) 339-349. I. J. Good, Biometrika 40 (1953) 237-264.
S. S. Wilks, Order statistics, Bull. AMS 54 (1948) 6-50.

Example:
    >>> import numpy as np
    >>> from detectors.nulls import out_of_range_isf, ks_isf
    >>> int(out_of_range_isf(0.001, np.array([300.0]), np.array([100.0]), np.array([1.0]))[0])
    6
    >>> round(float(ks_isf(0.001, np.array([2000.0]), np.array([100.0]))[0]), 3)
    0.197
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numba import njit
from scipy import special

from detectors.detection import FloatArray, IntArray

TAIL = 0.02
"""Share of simulated draws whose excesses fit the generalised Pareto tail."""

MAX_SHAPE = 0.45
"""Largest tail shape fitted (the method of moments needs a finite variance: shape < 1/2)."""

DRAWS = 8192
"""Simulated windows per count law (fewer for long windows of a dependent series)."""
_MAX_SIMULATED_ROWS = 1 << 21  # rows of AR(1) paths simulated for one law


def _stephens(n_effective: FloatArray) -> FloatArray:
    root = np.sqrt(np.maximum(n_effective, 1e-12))
    return np.asarray(root + 0.12 + 0.11 / root)


def _ks_m(reference_effective: FloatArray, window_effective: FloatArray) -> FloatArray:
    n_r, n_w = np.asarray(reference_effective), np.asarray(window_effective)
    return np.asarray(n_r * n_w / (n_r + n_w))


def ks_sf(
    statistic: FloatArray, reference_effective: FloatArray, window_effective: FloatArray
) -> FloatArray:
    """P(D > statistic) under the null, per feature (broadcasting)."""
    lam = _stephens(_ks_m(reference_effective, window_effective)) * np.asarray(statistic)
    return np.asarray(special.kolmogorov(lam))


def ks_isf(
    level: float, reference_effective: FloatArray, window_effective: FloatArray
) -> FloatArray:
    """The D exceeded with probability ``level`` under the null, per feature."""
    return np.asarray(
        special.kolmogi(level) / _stephens(_ks_m(reference_effective, window_effective))
    )


@dataclass(frozen=True, eq=False)
class TailLaw:
    """The upper tail of a statistic's null law from simulated draws.

    Empirical below the ``1 - TAIL`` quantile ``u``; above it, a generalised Pareto tail
    :math:`P(S > x) = \\zeta (1 + \\xi (x - u) / \\sigma)^{-1/\\xi}` (exponential at
    :math:`\\xi = 0`).
    """

    draws: FloatArray  # sorted
    u: float
    zeta: float  # share of draws above u
    shape: float
    scale: float

    @classmethod
    def from_draws(cls, draws: FloatArray) -> TailLaw:
        values = np.sort(np.asarray(draws, dtype=np.float64)[np.isfinite(draws)])
        if values.shape[0] < 100:
            raise ValueError(f"draws: need at least 100 finite draws, got {values.shape[0]}")
        u = float(np.quantile(values, 1.0 - TAIL, method="inverted_cdf"))
        excess = values[values > u] - u
        zeta = excess.shape[0] / values.shape[0]
        if excess.shape[0] < 2:  # (almost) nothing above u: a point mass tail
            return cls(values, u, max(zeta, 1.0 / values.shape[0]), 0.0, 1e-12)
        mean, variance = float(excess.mean()), float(excess.var())
        ratio = mean * mean / variance if variance > 0 else np.inf
        shape = 0.5 * (1.0 - ratio)
        if shape <= 0.0:
            shape, scale = 0.0, mean
        elif shape > MAX_SHAPE:
            shape, scale = MAX_SHAPE, mean * (1.0 - MAX_SHAPE)
        else:
            scale = 0.5 * mean * (1.0 + ratio)
        return cls(values, u, zeta, shape, max(scale, 1e-12))

    def sf(self, statistic: FloatArray) -> FloatArray:
        """P(S > statistic); NaN statistics give 1 (they never drift)."""
        x = np.asarray(statistic, dtype=np.float64)
        n = self.draws.shape[0]
        empirical = (n - np.searchsorted(self.draws, x, side="right")) / n
        excess = np.maximum(x - self.u, 0.0)
        if self.shape > 0:
            tail = self.zeta * (1.0 + self.shape * excess / self.scale) ** (-1.0 / self.shape)
        else:
            tail = self.zeta * np.exp(-excess / self.scale)
        p = np.where(x > self.u, tail, empirical)
        return np.asarray(np.where(np.isnan(x), 1.0, p))

    def isf(self, level: float) -> float:
        """The statistic exceeded with probability at most ``level``."""
        if level >= self.zeta:
            n = self.draws.shape[0]
            above = int(np.floor(level * n))  # draws allowed strictly above the threshold
            return float(self.draws[max(n - above - 1, 0)])
        ratio = self.zeta / level
        if self.shape > 0:
            return float(self.u + self.scale / self.shape * (ratio**self.shape - 1.0))
        return float(self.u + self.scale * np.log(ratio))


def simulate_counts(
    rng: np.random.Generator,
    shares: FloatArray,
    reference_effective: float,
    window_rows: int,
    window_inflation: float,
    draws: int = DRAWS,
    persistent: bool = True,
) -> IntArray:
    """``(draws, K)`` window counts over K buckets under the null (module docstring).

    The window's truth is drawn around ``shares`` (Dirichlet at the reference's effective
    size); its rows are then independent draws from it. With ``window_inflation`` above 1
    and a ``persistent`` series, they are consecutive values of a stationary Gaussian AR(1)
    series binned at the truth's quantiles, its coefficient chosen (`ar_coefficient`) so
    that the median indicator of ``window_rows`` rows has that inflation: a persistent
    series fills a few *neighbouring* buckets of a window, which makes PSI and chi-square
    far heavier-tailed than the same variance spread over independent buckets would. A
    series that is not persistent (an inflation that only allows for the uncertainty of an
    estimate of 1) spreads it over the buckets: a Dirichlet-multinomial.

    Args:
        shares: ``(K,)`` reference share of each bucket, in the order of the underlying
            values (quantile bins; categories in any fixed order).
        reference_effective: the reference's effective number of values.
        window_rows: values per window.
        window_inflation: the window's variance inflation ``tau`` (1: independent rows).
    """
    tau = min(window_inflation, float(window_rows))
    rho = ar_coefficient(tau, window_rows) if persistent and window_rows > 1 else 0.0
    if rho >= _MIN_COEFFICIENT:  # long AR(1) paths are dear: at least 2,048 of them
        draws = min(draws, max(_MAX_SIMULATED_ROWS // window_rows, 2048))
    concentration = np.asarray(shares, dtype=np.float64) * max(reference_effective, 1.0)
    truth = _dirichlet(rng, np.broadcast_to(concentration, (draws, concentration.shape[0])))
    if rho < _MIN_COEFFICIENT:
        if tau > 1.0 + 1e-9 and window_rows > 1:
            # Dirichlet-multinomial: variance W p (1 - p) (W + a) / (1 + a) = tau W p (1 - p).
            precision = max((window_rows - tau) / (tau - 1.0), 0.05)
            truth = _dirichlet(rng, precision * truth, fallback=truth)
        return np.asarray(rng.multinomial(window_rows, truth), dtype=np.int64)
    cumulative = np.cumsum(truth, axis=1)[:, :-1]
    thresholds = special.ndtri(np.clip(cumulative, 1e-12, 1.0 - 1e-12))
    counts = np.zeros(truth.shape, dtype=np.int64)
    chunk = max(1, _SHOCKS_PER_CHUNK // window_rows)
    for lo in range(0, draws, chunk):
        hi = min(lo + chunk, draws)
        shocks = rng.standard_normal((hi - lo, window_rows))
        _ar_counts(shocks, rho, np.ascontiguousarray(thresholds[lo:hi]), counts[lo:hi])
    return counts


INDEPENDENT = 1.02
"""Inflation up to which a window counts as independent rows."""
PERSISTENT = 1.25
"""Long-run inflation from which a series' windows are simulated as AR(1) paths: below it
(weak dependence, or noise the dependence gate let through) where the variance lands
matters little, and the Dirichlet-multinomial costs a fraction of the paths."""
_MIN_COEFFICIENT = 0.01  # below it the AR(1) windows are independent draws for all we need
_SHOCKS_PER_CHUNK = 1 << 20


@njit(cache=True, nogil=True)
def _ar_counts(shocks: FloatArray, rho: float, thresholds: FloatArray, counts: IntArray) -> None:
    """Add to ``counts[d]`` the buckets of a stationary AR(1) path driven by ``shocks[d]``:
    bucket = number of ``thresholds[d]`` strictly below the value."""
    gain = math.sqrt(1.0 - rho * rho)
    n_thresholds = thresholds.shape[1]
    for d in range(shocks.shape[0]):
        z = shocks[d, 0]
        for t in range(shocks.shape[1]):
            if t:
                z = rho * z + gain * shocks[d, t]
            lo, hi = 0, n_thresholds
            while lo < hi:
                middle = (lo + hi) // 2
                if thresholds[d, middle] < z:
                    lo = middle + 1
                else:
                    hi = middle
            counts[d, lo] += 1


def ar_coefficient(inflation: float, rows: int) -> float:
    """The lag-1 correlation of a Gaussian AR(1) whose median indicator has variance
    inflation ``inflation`` over ``rows`` consecutive rows (the indicators' autocorrelation
    at lag k is ``(2 / pi) arcsin(rho^k)``; Sheppard 1899)."""
    if inflation <= 1.0 or rows < 2:
        return 0.0
    lags = np.arange(1, min(rows, 20_000), dtype=np.float64)
    weights = 1.0 - lags / rows

    def tau(rho: float) -> float:
        return 1.0 + 2.0 * float(np.sum(weights * np.arcsin(rho**lags))) * 2.0 / math.pi

    low, high = 0.0, 0.9999
    if tau(high) <= inflation:
        return high
    for _ in range(50):
        middle = 0.5 * (low + high)
        if tau(middle) < inflation:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _dirichlet(
    rng: np.random.Generator, concentration: FloatArray, fallback: FloatArray | None = None
) -> FloatArray:
    gammas = rng.standard_gamma(concentration)
    totals = gammas.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = gammas / totals
    bad = ~(totals[:, 0] > 0)
    if bad.any():  # every gamma underflowed: the mass sits on one bucket
        source = concentration if fallback is None else fallback
        pick = np.argmax(source[bad], axis=1)
        result[bad] = 0.0
        result[np.flatnonzero(bad), pick] = 1.0
    return np.asarray(result)


class CountLaws:
    """Count laws shared between columns with the same inputs (quantised conservatively:
    effective reference sizes down to quarters of a doubling, inflation up to eighths),
    and between every profile in the process through `SHARED_COUNT_LAWS`: a fleet of
    models over numeric features mostly asks for the same few laws (equal-frequency bins
    have equal shares), and simulating them was most of a new version's calibration."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._laws: dict[tuple[object, ...], tuple[TailLaw, ...]] = {}

    def laws(
        self,
        kind: tuple[object, ...],
        shares: FloatArray,
        reference_effective: float,
        window_rows: int,
        window_inflation: float,
        statistics: Callable[[IntArray], tuple[FloatArray, ...]],
        draws: int = DRAWS,
        persistent: bool = True,
    ) -> tuple[TailLaw, ...]:
        """The laws of ``statistics(counts)`` for simulated window counts (cached by
        ``kind``, which must name everything ``statistics`` depends on besides the shares:
        the cache is shared by every profile in the process)."""
        # The reference's size matters less than the window's inflation: coarser steps.
        n_e = _quantise(reference_effective, down=True, per_doubling=4)
        # Within 2 % of independence a window is independent rows for all a law can tell
        # (rounding up to the next step would overstate its variance by 9 %).
        tau = 1.0 if window_inflation <= INDEPENDENT else _quantise(window_inflation, False, 8)
        # The exact shares, not rounded ones: a law shared between profiles must be the
        # same whichever asks first, for thresholds to be a function of the profile alone.
        exact = tuple(float(share) for share in np.asarray(shares, dtype=np.float64))
        key = (self._seed, *kind, exact, n_e, int(window_rows), tau, draws, persistent)
        found = self._laws.get(key)
        if found is None:
            found = self._laws[key] = SHARED_COUNT_LAWS.get(
                key,
                lambda rng: tuple(
                    TailLaw.from_draws(s)
                    for s in statistics(
                        simulate_counts(
                            rng, np.asarray(exact), n_e, int(window_rows), tau, draws, persistent
                        )
                    )
                ),
            )
        return found

    def share(self) -> None:
        """Use the process's shared laws (`SHARED_COUNT_LAWS`) in place of equal ones made
        in another process (a calibration worker's, unpickled here: a copy per version)."""
        for key, laws in self._laws.items():
            self._laws[key] = SHARED_COUNT_LAWS.get(key, functools.partial(_made, laws))


def _made(laws: tuple[TailLaw, ...], rng: np.random.Generator) -> tuple[TailLaw, ...]:
    return laws


class SharedCountLaws:
    """The process's most recently used count laws, at most ``capacity`` of them.

    A law's random draws are seeded by its key alone, so it is the same whichever profile
    asks first, in whatever order: thresholds stay a function of a profile and the seed
    (a restored version recalibrates to the very thresholds it had)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._laws: OrderedDict[tuple[object, ...], tuple[TailLaw, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        key: tuple[object, ...],
        make: Callable[[np.random.Generator], tuple[TailLaw, ...]],
    ) -> tuple[TailLaw, ...]:
        with self._lock:
            found = self._laws.get(key)
            if found is not None:
                self._laws.move_to_end(key)
                return found
        digest = hashlib.blake2b(repr(key).encode(), digest_size=16).digest()
        made = make(np.random.default_rng(list(np.frombuffer(digest, dtype=np.uint32))))
        with self._lock:
            self._laws[key] = made
            while len(self._laws) > self.capacity:
                self._laws.popitem(last=False)
        return made

    def __len__(self) -> int:
        return len(self._laws)

    def clear(self) -> None:
        with self._lock:
            self._laws.clear()


SHARED_COUNT_LAWS = SharedCountLaws(capacity=256)
"""Laws shared by every profile in the process (each holds up to `DRAWS` sorted draws,
64 KiB: the cache is at most 16 MiB beyond what live versions hold anyway)."""


def _quantise(value: float, down: bool, per_doubling: int) -> float:
    steps = np.log2(max(value, 1e-12)) * per_doubling
    steps = np.floor(steps) if down else np.ceil(steps)
    return float(2.0 ** (steps / per_doubling))


def rate_count_isf(
    level: float,
    reference_rate: FloatArray,
    reference_effective: FloatArray,
    window_rows: FloatArray,
    window_inflation: FloatArray,
) -> FloatArray:
    """``(p,)`` largest event count per window not surprising at ``level`` (beta-binomial).

    The rate's prior is half an event: ``(events + 0.5) / (n + 1)`` of the effective
    reference. Drift where the window's count exceeds the result.
    """
    n_e = np.maximum(np.asarray(reference_effective, dtype=np.float64), 1.0)
    w = np.maximum(np.rint(np.asarray(window_rows, dtype=np.float64)), 1.0)
    tau = np.clip(np.asarray(window_inflation, dtype=np.float64), 1.0, None)
    mean = (np.asarray(reference_rate) * n_e + 0.5) / (n_e + 1.0)
    # Var(K) = W m (1 - m) * inflation: the window's dependence plus the reference's error.
    inflation = np.minimum(tau + w / (n_e + 1.0), w - 1e-9)
    # Capped where betaln still resolves the differences (the law is the binomial there).
    precision = np.clip((w - inflation) / np.maximum(inflation - 1.0, 1e-12), 1e-6, 1e9)
    laws = [(int(n), float(m), float(q)) for n, m, q in zip(w, mean, precision, strict=True)]
    counts = _once_each(lambda law: _beta_binomial_isf(level, *law), laws)
    return np.asarray(np.where(w <= 1, w, counts), dtype=np.float64)


def _beta_binomial_isf(level: float, n: int, mean: float, precision: float) -> float:
    """Smallest k with P(K > k) <= level for K ~ BetaBinomial(n, precision mean,
    precision (1 - mean)), summed in logs (scipy's own loses tails below about 1e-10)."""
    if level <= 0.0:  # no share of the budget: never alarm
        return float(n)
    k = np.arange(n + 1, dtype=np.float64)
    a, b = precision * mean, precision * (1.0 - mean)
    log_pmf = (
        special.gammaln(n + 1.0)
        - special.gammaln(k + 1.0)
        - special.gammaln(n - k + 1.0)
        + special.betaln(k + a, n - k + b)
        - special.betaln(a, b)
    )
    # P(K > k) = sum of the pmf above k, from the top down, in logs.
    above = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
    tail = np.append(above[1:], -np.inf)
    allowed = np.flatnonzero(tail <= np.log(level))
    return float(k[allowed[0]]) if allowed.size else float(n)


def out_of_range_isf(
    level: float,
    reference_effective: FloatArray,
    window_effective: FloatArray,
    window_inflation: FloatArray,
) -> FloatArray:
    """``(p,)`` largest count of window values outside the reference range not surprising at
    ``level``, from the exchangeable law at effective sizes, scaled by the inflation."""
    n_e = np.maximum(np.asarray(reference_effective, dtype=np.float64), 2.0)
    w_e = np.maximum(np.asarray(window_effective, dtype=np.float64), 1.0)
    sizes = [(float(n), float(w)) for n, w in zip(n_e, w_e, strict=True)]
    counts = np.array(_once_each(lambda size: _range_isf(level, *size), sizes))
    return np.asarray(np.ceil(counts * np.maximum(window_inflation, 1.0)))


_Args = TypeVar("_Args", bound=tuple[object, ...])


def _once_each(law: Callable[[_Args], float], each: list[_Args]) -> list[float]:
    """``[law(args) for args in each]``, computing each distinct ``args`` once (a model's
    columns mostly share their sizes and rates)."""
    found: dict[_Args, float] = {}
    for args in each:
        if args not in found:
            found[args] = law(args)
    return [found[args] for args in each]


def _range_isf(level: float, n: float, w: float) -> float:
    if level <= 0.0:
        return float(np.floor(w))
    k = np.arange(0, int(np.floor(w)) + 1, dtype=np.float64)
    log_pmf = np.log(k + 1.0) + _log_binomial(n - 2.0 + w - k, n - 2.0) - _log_binomial(n + w, n)
    pmf = np.exp(log_pmf - log_pmf.max())
    pmf /= pmf.sum()
    above = np.cumsum(pmf[::-1])[::-1] - pmf  # P(K > k)
    allowed = np.flatnonzero(above <= level)
    return float(k[allowed[0]]) if allowed.size else float(k[-1])


def _log_binomial(a: FloatArray | float, b: float) -> FloatArray:
    a = np.asarray(a, dtype=np.float64)
    return np.asarray(
        special.gammaln(a + 1.0) - special.gammaln(b + 1.0) - special.gammaln(a - b + 1.0)
    )


__all__ = [
    "DRAWS",
    "INDEPENDENT",
    "MAX_SHAPE",
    "PERSISTENT",
    "SHARED_COUNT_LAWS",
    "TAIL",
    "CountLaws",
    "SharedCountLaws",
    "TailLaw",
    "ar_coefficient",
    "ks_isf",
    "ks_sf",
    "out_of_range_isf",
    "rate_count_isf",
    "simulate_counts",
]
