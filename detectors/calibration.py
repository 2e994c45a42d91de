r"""False-alarm budget: per-test, per-column thresholds that keep a whole model quiet.

The operator states how many events may pass, on average, between two false alarms for the
whole model (`FalseAlarmBudget`); `calibrate` turns that into one threshold per test and
column for a window plan (`WindowPlan`), and `Calibration.at` into thresholds for any other
window size (event-time and hybrid windows). A *false alarm* is an evaluation, on data from
the reference's own process, in which any test on any column exceeds its threshold.

**1. Per-evaluation target.** With ``E`` events between false alarms and one evaluation every
``step`` events, the expected number of false alarms in ``N`` events is
:math:`(N / \mathrm{step}) \, P(\text{alarm in one evaluation})`, so the family-wise level
per evaluation is :math:`\alpha = \mathrm{step} / E` (a window of ``w`` rows evaluated as
it closes: :math:`w / E`). This needs no independence between evaluations: expected counts
add. Sliding windows alarm in clusters; counting evaluations is the conservative reading.

**2. Serial dependence** (`detectors.dependence`): every column's variance inflation
:math:`\tau_m` for ``m`` consecutive rows is estimated from the reference in time order, and
every law below takes effective sizes, the reference's :math:`n / \tau_n` and the window's
:math:`w / \tau_w`. A column whose reference holds fewer than
`detectors.dependence.MIN_EFFECTIVE_ROWS` effective rows is *not calibratable*: its tests
never alarm and `Calibration.calibratable` says so, rather than a threshold that would page
on the reference's own noise.

**3. Marginal null laws** (`detectors.nulls`), accurate far into the tail at every window
and reference size monitord accepts: KS by the Kolmogorov law at the effective sizes; PSI
and chi-square simulated from the reference's shares (Dirichlet for the reference's own
error, Dirichlet-multinomial for the window) with a generalised Pareto tail beyond the
simulation, so that a PSI bin expecting two values or an empty category is in the law;
missing and unseen rates as beta-binomial counts; values out of the reference range by the
exact law of exceedances of a sample's extremes. The reference's own sampling error is in
every law: the live test compares fresh windows with one fixed reference.

**4. Family-wise level.** A common per-test level ``a`` gives the thresholds
:math:`t_k = Q_k^{-1}(a)`, and the family alarms when :math:`\min_k p_k < a`; its rate is
:math:`G(a) = P(\min_k p_k < a)` (the min-P of Westfall and Young 1993). Write
:math:`G(a) = 1 - (1 - a)^{M_{eff}(a)}`, the Sidak form with an *effective number of
tests* (Cheverud 2001; Nyholt 2004). Correlated columns and tests make :math:`M_{eff} < M`.
`detectors.resampling` draws ``n_resamples`` replicates of every distribution test at once
(pseudo-reference and pseudo-window as whole rows, in blocks of consecutive rows as long
as the strongest column's dependence), and :math:`M_{eff}(a)` is measured where ``G`` is
observable (quantiles of the replicates' min-p with at least 25 replicates beyond them, up
to G = 0.25). Extremes of correlated statistics become independent deep in the tail
(Sibuya 1960; Ledford and Tawn 1996), so :math:`M_{eff}(a)` grows towards M as ``a``
shrinks: it is extrapolated as a power law, :math:`\log M_{eff} = c_0 + c_1 \log a`, fitted by
least squares weighted by the replicates beyond each level, with :math:`-1/2 \le c_1 \le 0`,
and kept in [1, M]. The quality tests (discrete, weakly tied to the distribution tests)
count as independent: :math:`M(a) = M_{eff}(a) + M_{quality}`. Then ``a`` solves
:math:`1 - (1 - a)^{M(a)} = \alpha`.

**5. Limits.** The budget holds *on average over references*: a reference's own sampling
error stays for the life of the profile, so one reference is quieter and another louder
than the budget (the "conditional in-control performance" of control charts with estimated
parameters; Jensen et al. 2006); the smaller its effective size, the wider that spread. A
short reference underestimates strong dependence (`detectors.dependence`), and dependence it
does not show (a cycle longer than the reference) is not accounted for. The laws are
conservative where the inflation differs across a column's distribution, on ties (KS), and
for discrete counts (each quality test's level is an upper bound, so part of the budget goes
unspent). `benchmarks/calibration.py` measures false alarms against the budget over
reference sizes 50-2,000, windows 25-1,000, 1-20 correlated features, AR(1) dependence up
to 0.9, heavy tails, ties, categories and seasonality. Thresholds are deterministic for a
fixed ``seed``.

References: P. H. Westfall and S. S. Young, Resampling-Based Multiple Testing, 1993. Z.
Sidak, JASA 62 (1967) 626-633. J. M. Cheverud, Heredity 87 (2001) 52-58. D. R. Nyholt, Am. J.
Hum. Genet. 74 (2004) 765-769. M. Sibuya, Ann. Inst. Stat. Math. 11 (1960) 195-210. A. W.
Ledford and J. A. Tawn, Biometrika 83 (1996) 169-187. W. A. Jensen et al., J. Qual. Technol.
38 (2006) 349-364.

Example:
    >>> import numpy as np
    >>> from detectors.calibration import FalseAlarmBudget, WindowPlan, calibrate
    >>> from detectors.profile import build_profile
    >>> rows = np.random.default_rng(0).standard_normal((2000, 3))
    >>> profile = build_profile("m", "1", ["a", "b", "c"], rows)
    >>> plan, budget = WindowPlan(size=500, step=500), FalseAlarmBudget(1_000_000)
    >>> cal = calibrate(profile, plan, budget, n_resamples=500)
    >>> cal.per_evaluation_alpha
    0.0005
    >>> bool((cal.ks > 0.1).all())  # p < 0.05 per feature would be D > 0.068
    True
    >>> bool((cal.at(100).ks > cal.ks).all())  # smaller windows, higher thresholds
    True
"""

from __future__ import annotations

import math
import numbers
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from detectors.column_laws import ColumnLaws, Thresholds
from detectors.dependence import Dependence
from detectors.detection import BoolArray, FloatArray, IntArray, read_only
from detectors.profile import ReferenceProfile
from detectors.resampling import (
    WORKERS,
    CategoricalResampler,
    DrawnRows,
    NumericResampler,
    draw_rows,
)

__all__ = [
    "QUALITY_TESTS",
    "TESTS",
    "Calibration",
    "FalseAlarmBudget",
    "Thresholds",
    "WindowPlan",
    "calibrate",
    "rebound",
]

TESTS = ("ks", "psi", "chi2")
"""Distribution tests, as the window tests call themselves; ``psi`` covers both kinds."""
QUALITY_TESTS = ("missing", "out_of_range", "unseen")
"""Data-quality tests: rates of missing values, values out of range, unseen categories."""

_MIN_RESAMPLES = 200
_MIN_EXCEEDANCES = 25  # replicates beyond the lowest fitted level of the min-p
_MAX_LEVEL = 0.25  # highest family level used in the fit
_N_LEVELS = 12
_SLOPE_RANGE = (-0.5, 0.0)
_BLOCK = 250  # replicates drawn and evaluated together, at most _MAX_DRAWS row draws
_MAX_DRAWS = 4_000_000
_SIZES_PER_DOUBLING = 8  # window sizes of `Calibration.at` are rounded down to this grid

COPULA_ROWS = 2000
"""Sample rows the bootstrap of the effective number of tests resamples, at most."""

QUALITY_SHARE = 0.1
"""Share of the budget the data-quality tests spend, equally: their counts are discrete
(each spends at most its share) and a change in a rate is rarely what pages first."""


@dataclass(frozen=True)
class FalseAlarmBudget:
    """Expected number of events (rows) between two false alarms for the whole model."""

    events_between_false_alarms: float

    def __post_init__(self) -> None:
        value = self.events_between_false_alarms
        real = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (real and math.isfinite(value) and value > 0):
            raise ValueError(
                f"events_between_false_alarms: must be a finite number of events above 0, "
                f"got {value!r}; e.g. one false page per 30 days at 50 events/s is "
                "50 * 86400 * 30 = 129_600_000"
            )
        object.__setattr__(self, "events_between_false_alarms", float(value))

    @classmethod
    def per_period(cls, seconds: float, events_per_second: float) -> FalseAlarmBudget:
        """At most one false alarm per ``seconds`` at the expected traffic."""
        if not (math.isfinite(seconds) and seconds > 0):
            raise ValueError(f"seconds: must be a finite duration above 0, got {seconds!r}")
        if not (math.isfinite(events_per_second) and events_per_second > 0):
            raise ValueError(
                f"events_per_second: must be a finite rate above 0, got {events_per_second!r}"
            )
        return cls(seconds * events_per_second)


@dataclass(frozen=True)
class WindowPlan:
    """Count windows of ``size`` rows evaluated every ``step`` rows (``step == size``: tumbling)."""

    size: int
    step: int

    def __post_init__(self) -> None:
        if not _is_count(self.size) or self.size < 2:
            raise ValueError(f"size: a window needs at least 2 rows, got {self.size!r}")
        if not _is_count(self.step):
            raise ValueError(f"step: must be a whole number of rows, got {self.step!r}")
        if not 1 <= self.step <= self.size:
            raise ValueError(
                f"step: must be between 1 and size ({self.size}) rows, got {self.step}; "
                "a step above the window size would leave rows untested"
            )
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "step", int(self.step))


@dataclass(frozen=True, eq=False)
class Calibration:
    """Thresholds meeting a budget at the plan's window size, and at any other (`at`)."""

    thresholds: Thresholds  # at plan.size, one evaluation every plan.step rows
    effective_tests: float  # M_eff at per_test_alpha, quality tests included
    n_tests: int  # M: (test, column) pairs that can alarm
    n_resamples: int
    seed: int
    plan: WindowPlan
    budget: FalseAlarmBudget
    profile_id: str
    reference_effective: FloatArray  # (p + c,) effective reference rows per column
    calibratable: BoolArray  # (p + c,) False: too few effective rows, never alarms
    block_length: int  # rows per bootstrap block
    dependence: Dependence  # what the laws assumed: the estimate, widened and pooled
    _laws: ColumnLaws = field(repr=False)
    _family: _Family = field(repr=False)
    _sizes: dict[int, Thresholds] = field(default_factory=dict, repr=False)

    @property
    def ks(self) -> FloatArray | None:
        return self.thresholds.ks

    @property
    def psi(self) -> FloatArray | None:
        return self.thresholds.psi

    @property
    def psi_categorical(self) -> FloatArray | None:
        return self.thresholds.psi_categorical

    @property
    def chi2(self) -> FloatArray | None:
        return self.thresholds.chi2

    @property
    def per_evaluation_alpha(self) -> float:
        return self.thresholds.per_evaluation_alpha

    @property
    def per_test_alpha(self) -> float:
        return self.thresholds.per_test_alpha

    def at(self, rows: int) -> Thresholds:
        """Thresholds for a window of ``rows`` rows evaluated as it closes (``rows`` rows
        per evaluation): the plan's own for a full tumbling window, else for the size
        rounded down to eighths of a doubling (which only makes a threshold stricter),
        cached."""
        if rows >= self.plan.size and self.plan.step == self.plan.size:
            return self.thresholds  # a full window: the plan's own
        size = _size_grid(rows)
        if size not in self._sizes:
            alpha = min(size / self.budget.events_between_false_alarms, 0.5)
            self._sizes[size] = self._laws.thresholds(size, alpha, *self._family.levels(alpha))
        return self._sizes[size]


def calibrate(
    profile: ReferenceProfile,
    plan: WindowPlan,
    budget: FalseAlarmBudget,
    tests: Collection[str] = TESTS,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Calibration:
    """Thresholds meeting ``budget`` for the tests in ``tests`` (see the module docstring).

    Args:
        profile: the reference; its row sample is resampled as whole rows.
        plan: the count windows the tests will run on (the nominal size for other kinds).
        budget: events between false alarms for the whole model.
        tests: names from `TESTS` and `QUALITY_TESTS`; only tests that will run should
            spend the budget.
        n_resamples: bootstrap replicates; more narrows the effective-tests estimate.
        seed: the thresholds are a deterministic function of the inputs and the seed.
    """
    alpha = _check(profile, plan, budget, tests, n_resamples)
    laws = ColumnLaws(profile, frozenset(tests), alpha, seed)
    if not any(laws.tests.values()):
        p, c = len(profile.numeric_names), len(profile.categorical_names)
        raise ValueError(
            f"tests: none of {sorted(set(tests))} applies to this profile's {p} numeric and "
            f"{c} categorical features (ks: numeric, chi2 and unseen: categorical, psi, "
            "missing: both, out_of_range: numeric)"
        )
    min_p = _bootstrap_min_p(profile, plan, laws, n_resamples, seed)
    family = _Family.fit(min_p, laws.n_distribution_tests, laws.n_quality_tests)
    thresholds = laws.thresholds(plan.size, alpha, *family.levels(alpha))
    return Calibration(
        thresholds=thresholds,
        effective_tests=family.effective(thresholds.per_test_alpha),
        n_tests=laws.n_tests,
        n_resamples=n_resamples,
        seed=seed,
        plan=plan,
        budget=budget,
        profile_id=profile.profile_id,
        reference_effective=read_only(laws.reference_effective),
        calibratable=laws.calibratable.copy(),
        block_length=laws.block_length,
        dependence=laws.dependence,
        _laws=laws,
        _family=family,
    )


def rebound(calibration: Calibration, profile: ReferenceProfile) -> Calibration:
    """``calibration``, made for ``profile``'s content in another process (from a copy),
    reading ``profile`` itself and the laws this process shares: the laws that size
    thresholds for other windows keep what they were made from, a copy per version."""
    if calibration.profile_id != profile.profile_id:
        raise ValueError(
            f"a calibration of profile {calibration.profile_id} cannot serve {profile.profile_id}"
        )
    calibration._laws.rebind(profile)
    return calibration


def _size_grid(rows: int) -> int:
    steps = math.floor(math.log2(max(int(rows), 1)) * _SIZES_PER_DOUBLING + 1e-9)
    return max(int(2.0 ** (steps / _SIZES_PER_DOUBLING) + 1e-9), 1)


def _copula_min_p(
    statistics: FloatArray, columns: npt.NDArray[np.bool_], rng: np.random.Generator
) -> FloatArray:
    """Each replicate's smallest upper-tail rank p-value over the ``columns`` it may alarm on.

    Ranks among the replicates (randomised) make every marginal exactly uniform,
    so the min-p measures only how the tests move together; each test's own law sets its
    threshold (module docstring, 4).
    """
    b = statistics.shape[0]
    kept = np.where(np.isnan(statistics[:, columns]), -np.inf, statistics[:, columns])
    if kept.shape[1] == 0:
        return np.ones(0)
    # Ties (KS takes lattice values) are broken by one random order of the replicates for
    # every column: each column's ranks are still uniformly random among its ties, and tied
    # near-copies keep moving together (independent tie-breaks would decorrelate them). A
    # stable sort of the replicates taken in that order breaks ties by it.
    tie_order = np.argsort(rng.random(b))
    by_column = np.ascontiguousarray(kept[tie_order].T)
    # Randomised rank p-values, uniform on (0, 1), the jitter shared by the replicate too.
    jitter = np.asarray(rng.random(b))[tie_order]
    # numpy's quicksort (several times its stable sort), its runs of ties then ranked in
    # replicate order: the stable order, cheaper. Columns in parts, on the calibration's
    # threads (both steps release the GIL); the least over the parts is exact.
    parts = np.array_split(by_column, min(WORKERS.size + 1, len(by_column)))  # row views
    smallest_of = np.ones((len(parts), b))

    def rank(k: int) -> None:
        _ranked_min_p(parts[k], np.argsort(parts[k], axis=1), jitter, smallest_of[k])

    WORKERS.share(len(parts), rank)
    smallest = smallest_of.min(axis=0)
    min_p = np.empty(b)
    min_p[tie_order] = smallest
    return min_p


@njit(cache=True, nogil=True)
def _ranked_min_p(
    by_column: FloatArray, order: IntArray, jitter: FloatArray, smallest: FloatArray
) -> None:
    """Into ``smallest[i]``, the least ``(b - rank - jitter[i]) / b`` of replicate ``i`` over
    the rows of ``by_column`` (one column's statistics each), ranked by ``order`` (each row's
    argsort) with ties in replicate order: a run of ties takes its ranks in the order of its
    replicates, handed out by one pass over the replicates (no sort per run)."""
    b = by_column.shape[1]
    run_of = np.empty(b, dtype=np.int64)  # each replicate's run of ties
    next_rank = np.empty(b, dtype=np.int64)  # each run's next rank to hand out
    for j in range(by_column.shape[0]):
        row, ranked = by_column[j], order[j]
        start = runs = 0
        while start < b:
            end = start + 1
            while end < b and row[ranked[end]] == row[ranked[start]]:
                end += 1
            next_rank[runs] = start
            for rank in range(start, end):
                run_of[ranked[rank]] = runs
            runs += 1
            start = end
        for i in range(b):
            rank = next_rank[run_of[i]]
            next_rank[run_of[i]] = rank + 1
            smallest[i] = min(smallest[i], (b - rank - jitter[i]) / b)


def _bootstrap_min_p(
    profile: ReferenceProfile, plan: WindowPlan, laws: ColumnLaws, n_resamples: int, seed: int
) -> FloatArray:
    """Each replicate's smallest p-value over the distribution tests (empty without any)."""
    chosen = laws.chosen
    # The replicates measure only how the tests move together (the copula): the first
    # COPULA_ROWS sample rows, consecutive, carry the columns' correlation and dependence.
    sample = profile.numeric_rows[:COPULA_ROWS]
    rows = np.where(np.isfinite(sample), sample, np.nan)
    n, p = rows.shape
    c = laws.c
    numeric = NumericResampler(profile, rows) if p and chosen & {"ks", "psi"} else None
    categorical = (
        CategoricalResampler(profile, COPULA_ROWS) if c and chosen & {"chi2", "psi"} else None
    )
    if laws.n_distribution_tests == 0 or (numeric is None and categorical is None):
        return np.ones(0)
    # Weight of a pseudo-reference draw in shares of all n_rows reference rows.
    shrink = math.sqrt(n / max(profile.n_rows, n))
    per_block = max(1, min(_BLOCK, _MAX_DRAWS // max(n, plan.size)))
    blocks = tuple(
        min(per_block, n_resamples - start) for start in range(0, n_resamples, per_block)
    )
    replicates, rng = REPLICATE_ROWS.get(seed, n, plan.size, blocks, laws.block_length)
    collected: list[FloatArray] = []
    for drawn in replicates:
        statistics: dict[str, FloatArray] = {}
        if numeric is not None:
            ks, psi = numeric.statistics(drawn, shrink)
            if "ks" in chosen:
                statistics["ks"] = ks
            if "psi" in chosen:
                statistics["psi"] = psi
        if categorical is not None:
            chi2, psi_categorical = categorical.statistics(drawn.reference, drawn.window, shrink)
            if "chi2" in chosen:
                statistics["chi2"] = chi2
            if "psi" in chosen:
                statistics["psi_categorical"] = psi_categorical
        collected.append(np.hstack([statistics[name] for name in sorted(statistics)]))
    return _copula_min_p(np.vstack(collected), laws.distribution_columns(), rng)


class ReplicateRows:
    """The bootstrap's drawn rows, shared by every calibration in the process that draws
    alike: they depend only on the seed, the sizes and the block length, so a fleet of
    versions with the same settings draws them once. Each entry also holds the generator's
    state after the draws, from which the calibration continues exactly as if it had drawn
    them itself. At most ``max_bytes`` of rows and their lane counts are kept, the most
    recently used (200 reference rows and windows of 100: 8 MB)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._rows: OrderedDict[tuple[object, ...], _Entry] = OrderedDict()
        self._sizes: dict[tuple[object, ...], int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(
        self, seed: int, n: int, window: int, blocks: tuple[int, ...], block_length: int
    ) -> tuple[_Drawn, np.random.Generator]:
        """Each block's (pseudo-reference, pseudo-window) row indices, and the generator
        seeded by ``seed`` as it stands after drawing them."""
        key = (seed, n, window, blocks, block_length)
        with self._lock:
            found = self._rows.get(key)
            if found is not None:
                self._rows.move_to_end(key)
        if found is None:
            rng = np.random.default_rng(seed)
            drawn = [DrawnRows(*draw_rows(rng, n, window, count, block_length)) for count in blocks]
            self._keep(key, (drawn, rng.bit_generator.state), n)
            return drawn, rng
        rng = np.random.default_rng()
        rng.bit_generator.state = found[1]
        return found[0], rng

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._sizes.clear()
            self._bytes = 0

    def _keep(self, key: tuple[object, ...], entry: _Entry, n: int) -> None:
        size = sum(drawn.nbytes(n) for drawn in entry[0])
        if size > self.max_bytes // 4:
            return  # a reference of thousands of rows: drawn afresh, rather than evict all
        with self._lock:
            if key in self._rows:
                return
            self._rows[key] = entry
            self._sizes[key] = size
            self._bytes += size
            while self._bytes > self.max_bytes:
                oldest, _ = self._rows.popitem(last=False)
                self._bytes -= self._sizes.pop(oldest)


_Drawn = list[DrawnRows]
_Entry = tuple[_Drawn, Mapping[str, Any]]  # the rows, and the generator's state after

REPLICATE_ROWS = ReplicateRows(max_bytes=64 << 20)
"""The process's shared bootstrap draws (`ReplicateRows`)."""


@dataclass(frozen=True)
class _Family:
    """``M(a) = M_eff(a) + quality``: the family's effective number of tests at level a."""

    intercept: float
    slope: float
    distribution_tests: int
    quality_tests: int

    @classmethod
    def fit(cls, min_p: FloatArray, distribution_tests: int, quality_tests: int) -> _Family:
        """Fit ``log M_eff = c0 + c1 log a`` to the replicates' min-p (module docstring)."""
        b = min_p.shape[0]
        if distribution_tests == 0 or b == 0:
            return cls(0.0, 0.0, distribution_tests, quality_tests)
        levels = np.geomspace(_MAX_LEVEL, _MIN_EXCEEDANCES / b, _N_LEVELS)
        a = np.quantile(min_p, levels, method="inverted_cdf")
        usable = (a > 0) & (a < 1)
        if usable.sum() >= 3:
            effective = np.log1p(-levels[usable]) / np.log1p(-a[usable])
            x, y = np.log(a[usable]), np.log(np.clip(effective, 1.0, distribution_tests))
            w = np.sqrt(levels[usable] * b)
            slope, _ = np.polyfit(x, y, 1, w=w)
            slope = float(np.clip(slope, *_SLOPE_RANGE))
            intercept = float(np.average(y - slope * x, weights=w**2))
        else:  # no information on the dependence: Bonferroni-Sidak
            slope, intercept = 0.0, math.log(distribution_tests)
        return cls(intercept, slope, distribution_tests, quality_tests)

    def effective(self, level: float) -> float:
        """``M_eff(level)`` of the distribution tests."""
        if not self.distribution_tests:
            return 0.0
        value = math.exp(self.intercept + self.slope * math.log(level))
        return float(np.clip(value, 1.0, self.distribution_tests))

    def levels(self, alpha: float) -> tuple[float, float]:
        """Per-test levels of the distribution tests and of the quality tests: the quality
        tests share `QUALITY_SHARE` of ``alpha`` equally (all of it without distribution
        tests), the distribution tests the rest through ``M_eff``."""
        if not self.quality_tests:
            return self._distribution_level(alpha), 0.0
        if not self.distribution_tests:
            return 0.0, alpha / self.quality_tests
        share = QUALITY_SHARE * alpha
        return self._distribution_level(alpha - share), share / self.quality_tests

    def _distribution_level(self, alpha: float) -> float:
        """The per-test level ``a`` with ``1 - (1 - a)^M_eff(a) = alpha``."""
        total = self.distribution_tests

        def excess(log_a: float) -> float:
            a = math.exp(log_a)
            return -math.expm1(self.effective(a) * math.log1p(-a)) - alpha

        # G(a) increases with a (slope > -1), from G <= alpha at a = alpha / M to G >= alpha
        # at a = alpha; bisection in log a.
        low, high = math.log(alpha / max(total, 1)) - 1e-9, math.log(alpha)
        for _ in range(100):
            middle = 0.5 * (low + high)
            if excess(middle) > 0:
                high = middle
            else:
                low = middle
        return math.exp(low)


def _check(
    profile: ReferenceProfile,
    plan: WindowPlan,
    budget: FalseAlarmBudget,
    tests: Collection[str],
    n_resamples: int,
) -> float:
    known = (*TESTS, *QUALITY_TESTS)
    if isinstance(tests, str) or not set(tests) <= set(known) or not tests:
        raise ValueError(f"tests: pass a non-empty collection of {known}, got {tests!r}")
    if not _is_count(n_resamples):
        raise ValueError(f"n_resamples: must be an integer, got {n_resamples!r}")
    if n_resamples < _MIN_RESAMPLES:
        raise ValueError(
            f"n_resamples: need at least {_MIN_RESAMPLES} to estimate the effective number "
            f"of tests, got {n_resamples}"
        )
    if profile.numeric_rows.shape[0] < 2:
        raise ValueError(
            f"profile: the row sample has {profile.numeric_rows.shape[0]} rows; "
            "calibration resamples it and needs at least 2"
        )
    alpha = plan.step / budget.events_between_false_alarms
    if alpha >= 1.0:
        raise ValueError(
            f"events_between_false_alarms: {budget.events_between_false_alarms!r} events "
            f"allow a false alarm at every evaluation (one every {plan.step} rows); the "
            "budget must be many times the window step"
        )
    return alpha


def _is_count(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
