r"""False-alarm budget: per-test, per-feature thresholds that keep a whole model quiet.

The operator states how many events may pass, on average, between two false alarms for the
whole model (`FalseAlarmBudget`); `calibrate` turns that into one threshold per test and
feature (KS and PSI on numeric features, chi-square and PSI on categorical ones) for a count
window plan (`WindowPlan`). A *false alarm* is an evaluation, on data drawn from the
reference distribution, in which any test on any feature exceeds its threshold.

**1. Per-evaluation target.** With ``E`` events between false alarms and one evaluation every
``step`` events, the expected number of false alarms in ``N`` events is
:math:`(N / \mathrm{step}) \, P(\text{alarm in one evaluation})`, so the family-wise level
per evaluation is

.. math:: \alpha = \mathrm{step} / E .

This needs no independence between evaluations: expected counts add (linearity of
expectation). Tumbling windows (``step == size``) are independent given the reference;
sliding windows overlap and their alarms cluster, so the number of distinct alarm *episodes*
is smaller than the number of alarming evaluations; counting evaluations is the conservative
reading. For an event-time window use the expected number of events per window and per step.

**2. Two-sample null, resampled from the reference rows.** The live test compares a fresh
window with a *fixed* reference sample, so its null includes the reference's own sampling
error. A window bootstrapped from the reference and compared with that same reference would
miss it (a one-sample test: KS about :math:`\sqrt{1 + n_w / n_r}` too small). Each of the
``B`` replicates therefore draws, as whole rows with replacement (which keeps the
correlation between features), a pseudo-reference of the sample's size and an independent
pseudo-window of ``size`` rows, and computes every statistic of the pair (Efron and
Tibshirani 1993, ch. 16; Praestgaard 1995 for the KS bootstrap). Both draws are count
vectors over the ``n`` sample rows, so one pass over each feature's sorted order gives the
exact lattice KS value (ties compared only at the ends of tie groups) and the PSI bin counts
at the profile's bin edges, O(n) per feature and replicate in one compiled kernel. PSI and
chi-square use reference shares or counts of all ``n_rows`` reference rows, not only the
``n`` sampled ones; the pseudo-reference weights :math:`u_i = 1 + \sqrt{n / n_{rows}}
(c_i - 1)` give shares with that smaller variance (mean 1, variance :math:`n / n_{rows}`).

**3. Marginal null p-values**, accurate far into the tail, for each test and feature:

- KS: :math:`p = Q_{KS}(\lambda)`, the Kolmogorov distribution at
  :math:`\lambda = (\sqrt{n_e} + 0.12 + 0.11 / \sqrt{n_e}) D` with
  :math:`n_e = n_r n_w / (n_r + n_w)` (Stephens 1970). Against the exact two-sample
  distribution it is within 10 % down to :math:`10^{-8}` for :math:`n_w \ge 200`. With ties
  it is conservative: ties can only shrink D (Noether 1963).
- PSI, the symmetrised Kullback-Leibler divergence, is to second order Pearson's statistic
  over :math:`n_e`: :math:`\mathrm{PSI} \approx (1/n_w + 1/N_r) \chi^2_{b'-1}` with
  :math:`b'` the bins (categories) of positive reference share. Down to :math:`10^{-5}` the
  true tail is within a factor 1.3 of it when every bin expects 100 window values, 1.7 at
  50; with fewer it is much heavier (an empty bin adds about :math:`p_k \ln(p_k / 10^{-4})`),
  so keep ``size / n_bins`` large.
- Chi-square of homogeneity: :math:`\chi^2_{K-1}` (Pearson 1900), K reference categories.

``n_w`` is the expected number of observed values per window, ``size (1 - missing rate)``.

**4. Family-wise level.** A common per-test level ``a`` gives the thresholds
:math:`t_k = Q_k^{-1}(a)`, and the family alarms when :math:`\min_k p_k < a`; its rate is
:math:`G(a) = P(\min_k p_k < a)` (the min-P of Westfall and Young 1993). Write
:math:`G(a) = 1 - (1 - a)^{M_{eff}(a)}`, the Sidak form with an *effective number of tests*
(Cheverud 2001; Nyholt 2004). Correlated features and tests make
:math:`M_{eff} < M`, the number of tests: that is the saving over Bonferroni. The bootstrap
measures :math:`M_{eff}(a)` where ``G`` is observable (quantiles of the replicates' min-p
with at least 25 replicates beyond them, up to G = 0.25), but :math:`\alpha` is usually far
smaller. Extremes of correlated statistics become independent deep in the tail (Sibuya 1960;
Ledford and Tawn 1996), so :math:`M_{eff}(a)` grows towards M as ``a`` shrinks. It is
extrapolated as a power law, :math:`\log M_{eff} = c_0 + c_1 \log a` fitted by least squares
weighted by the replicates beyond each level, with :math:`-1/2 \le c_1 \le 0`, and kept in
[1, M]; M is the Bonferroni bound, always valid. Then ``a`` solves
:math:`1 - (1 - a)^{M_{eff}(a)} = \alpha`.

Deep in the tail the saving is modest: at the per-test levels of real budgets (1e-5 to 1e-7)
KS and PSI statistics of features correlated 0.5-0.8 are nearly independent, and
:math:`M_{eff}` comes out close to M (Bonferroni), unless features are near-copies; the
thresholds themselves move little, as these tails are steep.

**5. Assumptions and limits.** Rows are exchangeable (no autocorrelation within the
stream) and the missing rate is the reference's. The budget holds *on average over
reference samples*: the reference's own sampling error is fixed for the life of the
profile, so one reference is quieter and another louder than the budget (the "conditional
in-control performance" of control charts with estimated parameters; Jensen et al. 2006).
With a 5,000-row reference and 1,000-row windows of 20 correlated features, twelve reference
draws gave 0.6-1.2 times the budget at alpha = 0.02 and one 3.7 times (its common factor was
off; 1.08 pooled); eight draws at alpha = 0.001 gave 0.3-1.7 (0.78 pooled); with 20,000
reference rows, 0.5-1.4 at alpha = 0.02. A larger reference (``max_rows`` at least ten times the
window) narrows the spread; bootstrapping that spread to guarantee the budget for most
references (Gandy and Kvaloy 2013) is not done here. KS on a feature with ties is
conservative, and PSI's tail is heavier than its chi-square model when bins expect fewer than
about 50 window values (section 3). Thresholds are deterministic for a fixed ``seed``.

References: B. Efron and R. Tibshirani, An Introduction to the Bootstrap, 1993. J.
Praestgaard, Scand. J. Statist. 22 (1995) 305-322. M. A. Stephens, JRSS B 32 (1970) 115-122.
G. E. Noether, Metrika 7 (1963) 115-116. P. H. Westfall and S. S. Young, Resampling-Based
Multiple Testing, 1993. Z. Sidak, JASA 62 (1967) 626-633. J. M. Cheverud, Heredity 87 (2001)
52-58. D. R. Nyholt, Am. J. Hum. Genet. 74 (2004) 765-769. M. Sibuya, Ann. Inst. Stat.
Math. 11 (1960) 195-210. A. W. Ledford and J. A. Tawn, Biometrika 83 (1996) 169-187.
B. Yurdakul, Statistical properties of population stability index, WMU 2018. W. A. Jensen
et al., J. Qual. Technol. 38 (2006) 349-364. A. Gandy and J. T. Kvaloy, Scand. J. Statist.
40 (2013) 647-668.

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
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numba import njit
from scipy import sparse, special
from scipy.stats import chi2

from detectors.buckets import CategoryBuckets
from detectors.detection import FloatArray, IntArray, read_only
from detectors.profile import ReferenceProfile
from detectors.psi import SHARE_FLOOR
from detectors.workers import MAX_THREADS, WorkerPool, usable_cpus

TESTS = ("ks", "psi", "chi2")
"""Test names, as the window tests call themselves; ``psi`` covers both feature kinds."""

_MIN_RESAMPLES = 200
_MIN_EXCEEDANCES = 25  # replicates beyond the lowest fitted level of the min-p
_MAX_LEVEL = 0.25  # highest family level used in the fit
_N_LEVELS = 12
_SLOPE_RANGE = (-0.5, 0.0)
_BLOCK = 250  # replicates drawn and evaluated together, at most _MAX_DRAWS row draws
_MAX_DRAWS = 4_000_000
_WORKERS = WorkerPool(min(usable_cpus(), MAX_THREADS) - 1, "calibrate")


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
    """Thresholds on each test's statistic: a feature drifts where statistic > threshold.

    A test left out of ``tests`` has ``None``. Arrays are read-only; shapes ``(p,)`` numeric
    and ``(c,)`` categorical features, in profile order.
    """

    ks: FloatArray | None  # (p,) on D
    psi: FloatArray | None  # (p,) numeric PSI
    psi_categorical: FloatArray | None  # (c,)
    chi2: FloatArray | None  # (c,) on the chi-square statistic
    per_evaluation_alpha: float  # step / events_between_false_alarms
    per_test_alpha: float  # level of every single test
    effective_tests: float  # M_eff at per_test_alpha
    n_tests: int  # M
    n_resamples: int
    seed: int
    plan: WindowPlan
    budget: FalseAlarmBudget
    profile_id: str


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
        plan: the count windows the tests will run on.
        budget: events between false alarms for the whole model.
        tests: names from `TESTS`; only tests that will run should spend the budget.
        n_resamples: bootstrap replicates; more narrows the effective-tests estimate.
        seed: the thresholds are a deterministic function of the inputs and the seed.
    """
    alpha = _check(profile, plan, budget, tests, n_resamples)
    chosen = frozenset(tests)
    rows = np.where(np.isfinite(profile.numeric_rows), profile.numeric_rows, np.nan)
    n, p = rows.shape
    c = len(profile.categorical_names)
    n_tests = p * (("ks" in chosen) + ("psi" in chosen)) + c * (
        ("chi2" in chosen) + ("psi" in chosen)
    )
    if n_tests == 0:
        raise ValueError(
            f"tests: none of {sorted(chosen)} applies to this profile's {p} numeric and {c} "
            "categorical features (ks: numeric, chi2: categorical, psi: both)"
        )
    numeric = _NumericNulls(profile, rows, plan.size) if p and chosen - {"chi2"} else None
    categorical = _CategoricalNulls(profile, plan.size) if c and chosen - {"ks"} else None
    # Weight of a pseudo-reference draw in shares of all n_rows reference rows (docstring 2).
    shrink = math.sqrt(n / max(profile.n_rows, n))

    rng = np.random.default_rng(seed)
    min_p = np.empty(n_resamples)
    per_block = max(1, min(_BLOCK, _MAX_DRAWS // max(n, plan.size)))
    starts = range(0, n_resamples, per_block)
    blocks = [min(per_block, n_resamples - start) for start in starts]
    # Row draws with replacement, block after block: a pseudo-reference of n rows and a
    # pseudo-window each. The next block's are drawn while workers test this one's.
    draws = [_draw(rng, n, plan.size, blocks[0])]
    for start, block, following in zip(starts, blocks, [*blocks[1:], 0], strict=True):
        drawn_reference, drawn_window = draws.pop()

        def draw_next(following: int = following) -> None:
            if following:
                draws.append(_draw(rng, n, plan.size, following))

        p_values: dict[str, FloatArray] = {}
        if numeric is not None:
            p_values["ks"], p_values["psi"] = numeric.p_values(
                drawn_reference, drawn_window, shrink, meanwhile=draw_next
            )
        else:
            draw_next()
        if categorical is not None:
            # (n, block): one column per replicate, as the indicator product takes them.
            reference = _lane_counts(drawn_reference, n, block, np.int64)
            window = _lane_counts(drawn_window, n, block, np.int64)
            weights = (1.0 - shrink) + shrink * reference.astype(np.float64)
            p_values["chi2"], p_values["psi_categorical"] = categorical.p_values(weights, window)
        family = [v for name, v in p_values.items() if _family(name) in chosen]
        min_p[start : start + block] = np.hstack(family).min(axis=1)

    level, effective = _per_test_level(min_p, n_tests, alpha)

    def thresholds(name: str) -> FloatArray | None:
        if _family(name) not in chosen:
            return None
        nulls = categorical if name in ("chi2", "psi_categorical") else numeric
        return read_only(nulls.threshold(name, level) if nulls is not None else np.zeros(0))

    return Calibration(
        ks=thresholds("ks"),
        psi=thresholds("psi"),
        psi_categorical=thresholds("psi_categorical"),
        chi2=thresholds("chi2"),
        per_evaluation_alpha=alpha,
        per_test_alpha=level,
        effective_tests=effective,
        n_tests=n_tests,
        n_resamples=n_resamples,
        seed=seed,
        plan=plan,
        budget=budget,
        profile_id=profile.profile_id,
    )


def _family(field: str) -> str:
    """The test name (in `TESTS`) a threshold field belongs to."""
    return "psi" if field == "psi_categorical" else field


def _check(
    profile: ReferenceProfile,
    plan: WindowPlan,
    budget: FalseAlarmBudget,
    tests: Collection[str],
    n_resamples: int,
) -> float:
    if isinstance(tests, str) or not set(tests) <= set(TESTS) or not tests:
        raise ValueError(f"tests: pass a non-empty collection of {TESTS}, got {tests!r}")
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


def _draw(rng: np.random.Generator, n: int, window: int, block: int) -> tuple[IntArray, IntArray]:
    """Row indices of ``block`` pseudo-references (``n`` rows) and pseudo-windows."""
    return rng.integers(0, n, size=(block, n)), rng.integers(0, n, size=(block, window))


_INT32_MAX = 2**31 - 1

LANES = 64
"""Replicates the numeric kernel advances together: one row's counts of all of them are
contiguous, so each step of the walk in sorted order is a short vector operation instead
of a gather per replicate."""


@njit(cache=True, nogil=True)
def _lane_counts(drawn: IntArray, n: int, lanes: int, dtype: type) -> IntArray:
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
    counts' dtype: the caller picks one wide enough for N_r N_w).
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


class _NumericNulls:
    """Sorted layout of the row sample and the marginal nulls of KS and PSI."""

    def __init__(self, profile: ReferenceProfile, rows: FloatArray, size: int) -> None:
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
        observed_rate = 1.0 - profile.numeric_missing_rate
        window_n = np.maximum(np.rint(size * observed_rate), 1.0)
        reference_n = np.maximum(self.n_observed, 1).astype(np.float64)
        self.ks_n = reference_n * window_n / (reference_n + window_n)
        self.psi_scale = 1.0 / window_n + 1.0 / np.maximum(profile.n_rows * observed_rate, 1.0)
        self.psi_dof = np.maximum((profile.bin_fractions > 0).sum(axis=1) - 1, 1)

    def p_values(
        self,
        drawn_reference: IntArray,
        drawn_window: IntArray,
        shrink: float,
        meanwhile: Callable[[], None] | None = None,
    ) -> tuple[FloatArray, FloatArray]:
        """KS and PSI p-values of each replicate, from its drawn row indices; the calling
        thread runs ``meanwhile`` first, while the workers start."""
        (block, n_ref), n_win = drawn_reference.shape, drawn_window.shape[1]
        p, n = self.order.shape
        ks, psi = np.empty((block, p)), np.empty((block, p))
        # D compares i N_w with j N_r, at most N_r N_w: 32-bit lanes are twice as many.
        dtype = np.int32 if n_ref * n_win <= _INT32_MAX else np.int64

        def lane_group(group: int) -> None:
            lo, hi = group * LANES, min((group + 1) * LANES, block)
            _numeric_kernel(
                self.order,
                self.n_observed,
                self.group_end,
                self.bin_end,
                _lane_counts(drawn_reference[lo:hi], n, LANES, dtype),
                _lane_counts(drawn_window[lo:hi], n, LANES, dtype),
                shrink,
                SHARE_FLOOR,
                ks[lo:hi],
                psi[lo:hi],
            )

        # Replicates are independent: lane groups shared across CPUs.
        _WORKERS.share(-(-block // LANES), lane_group, meanwhile)
        ks_p = special.kolmogorov(_stephens(self.ks_n) * ks)
        psi_p = chi2.sf(psi / self.psi_scale, self.psi_dof)
        return np.nan_to_num(ks_p, nan=1.0), np.nan_to_num(psi_p, nan=1.0)

    def threshold(self, name: str, level: float) -> FloatArray:
        """``(p,)`` thresholds of test ``name`` ("ks" or "psi") at per-test level ``level``."""
        if name == "ks":
            return np.asarray(special.kolmogi(level) / _stephens(self.ks_n))
        return np.asarray(self.psi_scale * chi2.isf(level, self.psi_dof))


def _stephens(n_effective: FloatArray) -> FloatArray:
    root = np.sqrt(n_effective)
    return np.asarray(root + 0.12 + 0.11 / root)


class _CategoricalNulls:
    """Bucket layout of the categorical sample and the nulls of chi-square and PSI."""

    def __init__(self, profile: ReferenceProfile, size: int) -> None:
        buckets = CategoryBuckets.from_counts(profile.category_counts)
        codes = profile.category_rows
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
        n_categories = np.array([len(c) for c in profile.category_counts], dtype=np.int64)
        self.dof = np.maximum(n_categories - 1, 1)
        window_n = np.maximum(np.rint(size * (1.0 - profile.categorical_missing_rate)), 1.0)
        self.psi_scale = 1.0 / window_n + 1.0 / np.maximum(buckets.reference_totals, 1.0)

    def p_values(self, weights: FloatArray, window: IntArray) -> tuple[FloatArray, FloatArray]:
        """Chi-square and PSI p-values per replicate; ``weights`` and ``window`` are
        ``(n, replicates)``."""
        reference = np.asarray(self.indicator.T @ weights).T * self.scale_to_rows
        reference = np.where(self.known, reference, 0.0)
        counts = np.asarray(self.indicator.T @ window.astype(np.float64)).T
        statistic, psi = _chi2_and_psi(reference, counts, self.buckets)
        chi2_p = chi2.sf(statistic, self.dof)
        psi_p = chi2.sf(psi / self.psi_scale, self.dof)
        return np.nan_to_num(chi2_p, nan=1.0), np.nan_to_num(psi_p, nan=1.0)

    def threshold(self, name: str, level: float) -> FloatArray:
        """``(c,)`` thresholds of "chi2" or "psi_categorical" at per-test level ``level``."""
        scale = 1.0 if name == "chi2" else self.psi_scale
        return np.asarray(scale * chi2.isf(level, self.dof))


def _chi2_and_psi(
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


def _per_test_level(min_p: FloatArray, n_tests: int, alpha: float) -> tuple[float, float]:
    """Per-test level ``a`` with ``1 - (1 - a)^M_eff(a) = alpha`` and ``M_eff(a)``."""
    b = min_p.shape[0]
    levels = np.geomspace(_MAX_LEVEL, _MIN_EXCEEDANCES / b, _N_LEVELS)
    a = np.quantile(min_p, levels, method="inverted_cdf")
    usable = (a > 0) & (a < 1)
    if usable.sum() >= 3:
        effective = np.log1p(-levels[usable]) / np.log1p(-a[usable])
        x, y = np.log(a[usable]), np.log(np.clip(effective, 1.0, n_tests))
        w = np.sqrt(levels[usable] * b)
        slope, intercept = np.polyfit(x, y, 1, w=w)
        slope = float(np.clip(slope, *_SLOPE_RANGE))
        intercept = float(np.average(y - slope * x, weights=w**2))
    else:  # no information on the dependence: Bonferroni-Sidak
        slope, intercept = 0.0, math.log(n_tests)

    def effective_at(log_a: float) -> float:
        return float(np.clip(math.exp(intercept + slope * log_a), 1.0, n_tests))

    def excess(log_a: float) -> float:
        level = math.exp(log_a)
        return -math.expm1(effective_at(log_a) * math.log1p(-level)) - alpha

    # G(a) increases with a (slope > -1), from G <= alpha at a = alpha / M to G >= alpha
    # at a = alpha; bisection in log a.
    low, high = math.log(alpha / n_tests) - 1e-9, math.log(alpha)
    for _ in range(100):
        middle = 0.5 * (low + high)
        if excess(middle) > 0:
            high = middle
        else:
            low = middle
    return math.exp(low), effective_at(low)
