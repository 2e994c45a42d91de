"""False-alarm budget calibration: measured false-alarm rates on fresh stationary data.

The data: 17 Gaussian features with pairwise correlation 0.5-0.8, plus a binary, a small
integer and a rounded feature derived from them (ties), 5,000 reference rows. Fresh windows
are drawn from the same distribution and run through the real KS and PSI window tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from scipy import special
from scipy.stats import chi2, ks_2samp

from detectors import calibration, resampling
from detectors.buckets import CategoryBuckets
from detectors.calibration import Calibration, FalseAlarmBudget, WindowPlan, calibrate
from detectors.chi2 import Chi2Test, chi2_statistic
from detectors.column_laws import ColumnLaws
from detectors.detection import FloatArray, IntArray
from detectors.ks import KSTest, ks_statistic
from detectors.profile import ReferenceProfile, build_profile
from detectors.psi import (
    SHARE_FLOOR,
    CategoricalPSITest,
    PSITest,
    psi_categorical,
    psi_numeric,
)
from detectors.resampling import LANES, lane_counts
from detectors.window import CountWindow, WindowView
from detectors.window_detector import WindowedDetector, WindowTest
from detectors.workers import WorkerPool

N_GAUSSIAN = 17
N_FEATURES = N_GAUSSIAN + 3
REFERENCE_ROWS = 5000


def _correlation(rng: np.random.Generator, k: int) -> FloatArray:
    c = rng.uniform(0.5, 0.8, size=(k, k))
    c = (c + c.T) / 2
    np.fill_diagonal(c, 1.0)
    values, vectors = np.linalg.eigh(c)
    c = vectors @ np.diag(np.maximum(values, 1e-3)) @ vectors.T
    scale = np.sqrt(np.diag(c))
    return np.asarray(c / np.outer(scale, scale))


_CHOLESKY = np.linalg.cholesky(_correlation(np.random.default_rng(123), N_GAUSSIAN))


def _rows(rng: np.random.Generator, n: int) -> FloatArray:
    z = rng.standard_normal((n, N_GAUSSIAN)) @ _CHOLESKY.T
    binary = (z[:, 0] + 0.75 * rng.standard_normal(n) > 1.2).astype(np.float64)  # ~16 % ones
    small = np.clip(np.round(2.0 * z[:, 1] + 3.0), 0.0, 8.0)  # 9 values
    rounded = np.round(z[:, 2], 1)  # ~60 values
    return np.column_stack([z, binary, small, rounded])


def _profile(seed: int, rows: int = REFERENCE_ROWS) -> ReferenceProfile:
    names = [f"f{i}" for i in range(N_FEATURES)]
    return build_profile("model", "1", names, _rows(np.random.default_rng(seed), rows))


def _numeric_detector(
    profile: ReferenceProfile, cal: Calibration, plan: WindowPlan
) -> WindowedDetector:
    assert cal.ks is not None
    assert cal.psi is not None
    tests: list[WindowTest] = [
        KSTest(profile.sorted_sample, np.array(cal.ks)),
        PSITest(profile.bin_edges, profile.bin_fractions, np.array(cal.psi)),
    ]
    return WindowedDetector(tests, CountWindow(N_FEATURES, plan.size, plan.step))


def _alarming_evaluations(detector: WindowedDetector, stream: FloatArray) -> tuple[int, int]:
    """(evaluations with any test on any feature drifted, evaluations)."""
    alarms: dict[int, bool] = {}
    for detection in detector.update(stream):
        alarms[detection.row] = alarms.get(detection.row, False) or detection.any_drift
    return sum(alarms.values()), len(alarms)


def _within_factor_two(count: int, expected: float, overdispersion: float) -> bool:
    """``count`` is consistent with a rate between expected / 2 and 2 expected.

    Poisson tolerance of 3 standard deviations at either end of the band, with the variance
    multiplied by ``overdispersion``: overlapping windows alarm in clusters of up to
    size / step evaluations, which inflates the variance of the count by at most that factor.
    """
    low, high = expected / 2, 2 * expected
    return (
        low - 3 * math.sqrt(low * overdispersion)
        <= count
        <= high + 3 * math.sqrt(high * overdispersion)
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("size", "step", "budget"),
    [(1000, 1000, 50_000), (1000, 250, 12_500)],
    ids=["tumbling", "sliding"],
)
def test_false_alarm_rate_on_fresh_correlated_data_meets_the_budget(
    size: int, step: int, budget: float
) -> None:
    # One false alarm per 50 evaluations: 2,000 evaluations expect 40 per reference draw.
    plan = WindowPlan(size=size, step=step)
    n_evaluations = 2000
    total_alarms, total_expected = 0, 0.0
    ratios = []
    for seed in range(4):  # four independent reference draws
        profile = _profile(seed)
        cal = calibrate(profile, plan, FalseAlarmBudget(budget), tests=("ks", "psi"), seed=seed)
        assert cal.per_evaluation_alpha == pytest.approx(step / budget)
        stream = _rows(np.random.default_rng(10_000 + seed), size - step + n_evaluations * step)
        alarms, evaluations = _alarming_evaluations(_numeric_detector(profile, cal, plan), stream)
        assert evaluations == n_evaluations
        expected = evaluations * cal.per_evaluation_alpha
        ratios.append(alarms / expected)
        assert _within_factor_two(alarms, expected, size / step), (seed, alarms, expected)
        total_alarms += alarms
        total_expected += expected
    print(f"false-alarm ratios per reference {np.round(ratios, 2)}")
    # 160 expected alarms: a 3-sigma Poisson band is +-25 % of the count, well inside x2.
    assert 0.5 <= total_alarms / total_expected <= 2.0, (total_alarms, total_expected)


def test_thresholds_are_far_above_naive_per_feature_ones() -> None:
    profile = _profile(0)
    cal = calibrate(profile, WindowPlan(1000, 1000), FalseAlarmBudget(1_000_000), seed=0)
    assert cal.ks is not None
    assert cal.psi is not None
    # Naive: each test on its own at p < 0.05 (asymptotic critical values).
    n_e = REFERENCE_ROWS * 1000 / (REFERENCE_ROWS + 1000)
    naive_ks = special.kolmogi(0.05) / math.sqrt(n_e)
    naive_psi = (1 / 1000 + 1 / REFERENCE_ROWS) * chi2.isf(0.05, 9)
    continuous = slice(0, N_GAUSSIAN)
    assert (cal.ks[continuous] > 1.6 * naive_ks).all()
    assert (cal.psi[continuous] > 2.0 * naive_psi).all()
    # 1e-3 per evaluation over 40 tests: each test runs near 1e-3 / 40, not at 0.05.
    assert cal.n_tests == 2 * N_FEATURES
    assert 1e-3 / cal.n_tests <= cal.per_test_alpha <= 1e-3 / 10
    assert 10 <= cal.effective_tests <= cal.n_tests


def test_a_real_shift_is_detected() -> None:
    profile = _profile(0)
    plan = WindowPlan(1000, 1000)
    cal = calibrate(profile, plan, FalseAlarmBudget(1_000_000), tests=("ks", "psi"), seed=0)
    stream = _rows(np.random.default_rng(30_000), 50 * plan.size)
    shifted = [3, 8, 13]
    stream[:, shifted] += 0.2  # a fifth of a standard deviation
    drifted = np.zeros(N_FEATURES, dtype=np.int64)
    alarms: dict[int, bool] = {}
    for detection in _numeric_detector(profile, cal, plan).update(stream):
        alarms[detection.row] = alarms.get(detection.row, False) or detection.any_drift
        drifted += detection.drifted
    assert sum(alarms.values()) >= 40  # of 50 windows
    others = np.delete(drifted, shifted)
    assert drifted[shifted].min() >= 20
    assert others.sum() <= 2


@pytest.mark.slow
def test_two_hundred_features_calibrate_deterministically() -> None:
    rng = np.random.default_rng(5)
    latent = rng.standard_normal((REFERENCE_ROWS, 20))
    # 20 groups of 10 near-copies (correlation 0.9975), 1 % missing values.
    rows = np.repeat(latent, 10, axis=1) + 0.05 * rng.standard_normal((REFERENCE_ROWS, 200))
    rows[rng.random(rows.shape) < 0.01] = np.nan
    profile = build_profile("wide", "1", [f"f{i}" for i in range(200)], rows)
    plan, budget = WindowPlan(1000, 500), FalseAlarmBudget(500_000)
    first = calibrate(profile, plan, budget, n_resamples=1000, seed=11)
    second = calibrate(profile, plan, budget, n_resamples=1000, seed=11)
    other = calibrate(profile, plan, budget, n_resamples=1000, seed=12)
    assert first.ks is not None
    assert second.ks is not None
    assert other.ks is not None
    assert first.psi is not None
    assert second.psi is not None
    assert first.ks.shape == first.psi.shape == (200,)
    np.testing.assert_array_equal(first.ks, second.ks)
    np.testing.assert_array_equal(first.psi, second.psi)
    assert first.per_test_alpha == second.per_test_alpha
    assert other.per_test_alpha != first.per_test_alpha
    assert other.per_test_alpha == pytest.approx(first.per_test_alpha, rel=0.5)
    # Near-copies share their false alarms: fewer effective tests than Bonferroni's 400.
    assert first.effective_tests < 0.9 * first.n_tests
    assert first.n_tests == 400
    assert not first.ks.flags.writeable


@pytest.mark.parametrize("workers", [0, 2, 6])
def test_thresholds_do_not_depend_on_the_number_of_threads(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Replicates are split across threads; each writes its own rows of the statistics.
    profile, plan, budget = _profile(3), WindowPlan(1000, 500), FalseAlarmBudget(500_000)
    alone = WorkerPool(0, "calibrate-alone")
    monkeypatch.setattr(resampling, "WORKERS", alone)
    expected = calibrate(profile, plan, budget, n_resamples=600, seed=4)
    monkeypatch.setattr(resampling, "WORKERS", WorkerPool(workers, "calibrate-n"))
    split = calibrate(profile, plan, budget, n_resamples=600, seed=4)
    for field in ("ks", "psi"):
        np.testing.assert_array_equal(getattr(split, field), getattr(expected, field))
    assert split.per_test_alpha == expected.per_test_alpha
    assert split.effective_tests == expected.effective_tests


def test_thresholds_do_not_depend_on_the_count_width(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small draws count in 32-bit lanes; 64-bit ones (forced here) must agree exactly.
    profile, plan, budget = _profile(5), WindowPlan(1000, 500), FalseAlarmBudget(500_000)
    narrow = calibrate(profile, plan, budget, n_resamples=300, seed=2)
    monkeypatch.setattr(resampling, "INT32_MAX", 0)
    wide = calibrate(profile, plan, budget, n_resamples=300, seed=2)
    for field in ("ks", "psi"):
        np.testing.assert_array_equal(getattr(wide, field), getattr(narrow, field))
    assert wide.per_test_alpha == narrow.per_test_alpha


def test_unsorted_bin_edges_are_refused() -> None:
    # A damaged profile (edges out of order): the kernel walks bin ends in sorted order.
    profile = _profile(6, rows=500)
    edges = profile.bin_edges.copy()
    edges[0, 1:-1] = edges[0, 1:-1][::-1]
    damaged = dataclasses.replace(profile, bin_edges=edges)
    with pytest.raises(ValueError, match="bin_edges"):
        calibrate(damaged, WindowPlan(100, 100), FalseAlarmBudget(500_000), n_resamples=200)


def test_categorical_features_get_chi2_and_psi_thresholds() -> None:
    rng = np.random.default_rng(2)
    numeric = _rows(rng, REFERENCE_ROWS)
    levels = np.array(["a", "b", "c", "d"])
    codes = np.searchsorted([-0.5, 0.3, 1.0], numeric[:, 3] + 0.5 * rng.standard_normal(5000))
    categorical = np.column_stack([levels[codes], np.where(numeric[:, 4] > 0, "x", "y")])
    profile = build_profile(
        "model",
        "1",
        [f"f{i}" for i in range(N_FEATURES)],
        numeric,
        ["c0", "c1"],
        categorical.astype(object),
    )
    plan, budget = WindowPlan(1000, 1000), FalseAlarmBudget(1_000_000)
    cal = calibrate(profile, plan, budget, seed=0)
    assert cal.chi2 is not None
    assert cal.psi_categorical is not None
    assert cal.n_tests == 2 * N_FEATURES + 2 * 2
    dof = np.array([3, 1])
    # Simulated from the reference's counts: at these counts (>= 90 expected per category
    # and window) Pearson's asymptotic law is close, deep in the tail too.
    np.testing.assert_allclose(cal.chi2, chi2.isf(cal.per_test_alpha, dof), rtol=0.1)
    assert (cal.chi2 > 2 * chi2.isf(0.05, dof)).all()

    only_chi2 = calibrate(profile, plan, budget, tests=("chi2",), seed=0)
    assert only_chi2.ks is None
    assert only_chi2.psi is None
    assert only_chi2.psi_categorical is None
    assert only_chi2.n_tests == 2
    # Two tests share the whole budget: each may run at a far higher level than among 48.
    assert only_chi2.per_test_alpha > 10 * cal.per_test_alpha
    # The reference's own rows are no drift.
    window = _view(profile.category_rows[:1000])
    chi2_test = Chi2Test(profile.category_counts, np.array(only_chi2.chi2))
    psi_test = CategoricalPSITest(profile.category_counts, np.array(cal.psi_categorical))
    assert not chi2_test.evaluate(window).any_drift
    assert not psi_test.evaluate(window).any_drift


def _view(rows: IntArray) -> WindowView:
    return WindowView(first_row=0, last_row=rows.shape[0] - 1, rows=rows)


def test_resampled_statistics_equal_the_live_ones() -> None:
    """The bootstrap kernel computes exactly what the window tests compute."""
    profile = _profile(3, rows=800)
    rows = profile.numeric_rows.copy()
    rows[::7, 2] = np.nan  # missing values are left out on both sides
    profile = build_profile("model", "1", list(profile.numeric_names), rows)
    nulls = resampling.NumericResampler(profile, profile.numeric_rows)
    rng = np.random.default_rng(0)
    picked = rng.integers(0, 800, size=300)
    window = np.bincount(picked, minlength=800)[:, None]  # one replicate: one lane
    reference = np.ones((800, 1), dtype=np.int64)  # the sample itself
    window_rows = profile.numeric_rows[picked]
    expected_psi = psi_numeric(window_rows, profile.bin_edges, profile.bin_fractions)
    # PSI term by term, and looked up in the table of the draws' sizes (the columns
    # without missing values): the same bits.
    computed = []
    for terms in (np.empty((0, 0)), resampling.psi_terms(800, 300, SHARE_FLOOR)):
        ks, psi = np.empty((1, N_FEATURES)), np.empty((1, N_FEATURES))
        resampling._numeric_kernel(
            nulls.order,
            nulls.n_observed,
            nulls.group_end,
            nulls.bin_end,
            reference,
            window,
            1.0,
            SHARE_FLOOR,
            terms,
            ks,
            psi,
        )
        np.testing.assert_allclose(
            ks[0], ks_statistic(profile.sorted_sample, window_rows), rtol=1e-12
        )
        np.testing.assert_allclose(psi[0], expected_psi, rtol=1e-9)
        computed.append(psi[0])
    assert np.array_equal(computed[0], computed[1])

    counts = (np.array([400, 250, 100, 5]), np.array([30, 10]))
    buckets = CategoryBuckets.from_counts(counts)
    codes = np.column_stack([rng.integers(0, 5, 200), rng.integers(-1, 3, 200)])
    window_counts, _ = buckets.window_counts(codes)
    statistic, psi_cat = resampling.chi2_and_psi(
        buckets.reference_counts[None, :], window_counts[None, :].astype(np.float64), buckets
    )
    np.testing.assert_allclose(statistic[0], chi2_statistic(codes, counts)[0], rtol=1e-12)
    np.testing.assert_allclose(psi_cat[0], psi_categorical(codes, counts), rtol=1e-12)


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda: FalseAlarmBudget(0), "events_between_false_alarms"),
        (lambda: FalseAlarmBudget(-5.0), "events_between_false_alarms"),
        (lambda: FalseAlarmBudget(math.nan), "events_between_false_alarms"),
        (lambda: FalseAlarmBudget(math.inf), "events_between_false_alarms"),
        (lambda: FalseAlarmBudget.per_period(0, 10), "seconds"),
        (lambda: FalseAlarmBudget.per_period(3600, -1), "events_per_second"),
        (lambda: WindowPlan(size=1, step=1), "size"),
        (lambda: WindowPlan(size=100, step=0), "step"),
        (lambda: WindowPlan(size=100, step=101), "step"),
        (lambda: WindowPlan(size=100.0, step=100), "size"),  # type: ignore[arg-type]
    ],
)
def test_bad_budgets_and_plans_name_the_parameter(
    make: Callable[[], object], parameter: str
) -> None:
    with pytest.raises(ValueError, match=parameter):
        make()


def test_bad_calibration_arguments_name_the_parameter() -> None:
    profile = _profile(0, rows=300)
    plan = WindowPlan(100, 100)
    with pytest.raises(ValueError, match="events_between_false_alarms"):
        calibrate(profile, plan, FalseAlarmBudget(100))  # an alarm at every evaluation
    with pytest.raises(ValueError, match="n_resamples"):
        calibrate(profile, plan, FalseAlarmBudget(1e6), n_resamples=50)
    with pytest.raises(ValueError, match="tests"):
        calibrate(profile, plan, FalseAlarmBudget(1e6), tests=("ks", "adwin"))
    with pytest.raises(ValueError, match="tests"):
        calibrate(profile, plan, FalseAlarmBudget(1e6), tests="ks")
    with pytest.raises(ValueError, match="tests: none of"):  # no categorical features
        calibrate(profile, plan, FalseAlarmBudget(1e6), tests=("chi2",))


def test_per_period_budget() -> None:
    budget = FalseAlarmBudget.per_period(30 * 86_400, 50.0)
    assert budget.events_between_false_alarms == 30 * 86_400 * 50


def test_the_ks_law_of_a_subsampled_reference_holds_its_level() -> None:
    # 20,000 reference rows keep a 5,000-row random sample, which KS compares windows with:
    # the law must count the sample's own error, not only the reference's (at windows of
    # 2,000, an effective size of 1,818 where the comparison has 1,429). The level holds on
    # average over references (one reference's error stays with it), so many are drawn.
    rng = np.random.default_rng(20)
    level, window, alarms = 0.01, 2000, 0
    for _ in range(60):
        profile = build_profile("big", "1", ["x"], rng.normal(size=(20_000, 1)))
        laws = ColumnLaws(profile, frozenset({"ks"}), 0.01, seed=1)
        thresholds = laws.thresholds(window, 0.01, level, 0.0).ks
        assert thresholds is not None
        sample = profile.numeric_rows[:, 0]
        assert sample.shape == (5000,)
        for _ in range(100):
            alarms += ks_2samp(rng.normal(size=window), sample).statistic > thresholds[0]
    # 60 expected at the nominal level; the law that ignored the subsample alarmed about
    # three times as often.
    assert 30 <= alarms <= 90, alarms


def _min_p_by_lexsort(
    statistics: FloatArray, columns: npt.NDArray[np.bool_], rng: np.random.Generator
) -> FloatArray:
    """The copula's min-p as first written: one lexsort down the columns."""
    b = statistics.shape[0]
    kept = np.where(np.isnan(statistics[:, columns]), -np.inf, statistics[:, columns])
    key = np.broadcast_to(rng.random((b, 1)), kept.shape)
    order = np.lexsort((key, kept), axis=0)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(b)[:, None], axis=0)
    return np.asarray(((b - ranks - rng.random((b, 1))) / b).min(axis=1))


def test_the_copula_min_p_is_the_lexsort_one() -> None:
    """Each column sorted along a contiguous row (a quicksort, its runs of ties ranked in
    replicate order) gives exactly the min-p of one lexsort down the columns: ties (lattice
    values), NaN, a column of one value, columns left out."""
    rng = np.random.default_rng(11)
    statistics = rng.normal(size=(997, 9))
    statistics[:, :4] = np.round(statistics[:, :4], 1)
    statistics[rng.random(statistics.shape) < 0.02] = np.nan
    statistics[:, 5] = 0.5  # every replicate tied
    columns = np.ones(9, dtype=np.bool_)
    columns[7] = False
    np.testing.assert_array_equal(
        calibration._copula_min_p(statistics, columns, np.random.default_rng(3)),
        _min_p_by_lexsort(statistics, columns, np.random.default_rng(3)),
    )


def test_shared_bootstrap_rows_calibrate_as_rows_drawn_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A calibration reusing another's drawn rows (and the generator state after them)
    gets exactly the thresholds it gets drawing them itself."""
    plan, budget = WindowPlan(500, 500), FalseAlarmBudget(500_000)
    first, second = _profile(3), _profile(4)
    monkeypatch.setattr(calibration, "REPLICATE_ROWS", calibration.ReplicateRows(64 << 20))
    afresh = calibrate(second, plan, budget, n_resamples=600, seed=4)
    monkeypatch.setattr(calibration, "REPLICATE_ROWS", calibration.ReplicateRows(64 << 20))
    calibrate(first, plan, budget, n_resamples=600, seed=4)  # draws the rows
    shared = calibrate(second, plan, budget, n_resamples=600, seed=4)  # finds them
    for field in ("ks", "psi"):
        np.testing.assert_array_equal(getattr(shared, field), getattr(afresh, field))
    assert shared.per_test_alpha == afresh.per_test_alpha
    assert shared.effective_tests == afresh.effective_tests


def test_shared_bootstrap_rows_stay_within_their_bytes() -> None:
    rows = calibration.ReplicateRows(max_bytes=200_000)
    drawn, _ = rows.get(0, 100, 50, (100, 100), 1)  # 2 x 100 x (100 + 50) int64: 240 kB
    assert len(drawn) == 2
    assert not drawn[0].reference.flags.writeable
    again, _ = rows.get(0, 100, 50, (100, 100), 1)
    assert again is not drawn  # over a quarter of the budget: not kept
    small, _ = rows.get(0, 10, 5, (100,), 1)  # 12 kB each, 22 kB with lane counts
    assert rows.get(0, 10, 5, (100,), 1)[0] is small
    for seed in range(1, 20):
        rows.get(seed, 10, 5, (100,), 1)
    assert rows.get(0, 10, 5, (100,), 1)[0] is not small  # the oldest went first
    continued, _ = rows.get(7, 10, 5, (100,), 1)
    generator = np.random.default_rng(7)
    np.testing.assert_array_equal(continued[0].reference, generator.integers(0, 10, size=(100, 10)))
    # Lane counts are counted once, then shared.
    lanes = continued[0].lanes(1, 10, np.int32)
    assert continued[0].lanes(1, 10, np.int32) is lanes
    np.testing.assert_array_equal(
        lanes[0], lane_counts(continued[0].reference[64:], 10, LANES, np.int32)
    )
    np.testing.assert_array_equal(rows.get(7, 10, 5, (100,), 1)[1].random(3), _after_draws(7))


def _after_draws(seed: int) -> FloatArray:
    generator = np.random.default_rng(seed)
    generator.integers(0, 10, size=(100, 10))
    generator.integers(0, 10, size=(100, 5))
    return np.asarray(generator.random(3))
