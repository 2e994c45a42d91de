"""Serial dependence: exact 1 for independent rows, the Sheppard/Bartlett inflation of a
Gaussian AR(1), interpolation, widening, pooling and construction errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special, stats
from scipy.signal import lfilter

from detectors.dependence import (
    GATE_LEVEL,
    GRID,
    MIN_EFFECTIVE_ROWS,
    QUARTILES,
    Dependence,
    _complete_columns_gate,
    _dependent,
    estimate_dependence,
)
from detectors.detection import FloatArray, IntArray


def _no_codes(n: int) -> IntArray:
    return np.empty((n, 0), dtype=np.int64)


def _ar1(rng: np.random.Generator, phi: float, rows: int, columns: int = 1) -> FloatArray:
    """``(rows, columns)`` stationary Gaussian AR(1) paths (200 rows of burn-in dropped)."""
    shocks = rng.standard_normal((rows + 200, columns))
    return np.asarray(lfilter([1.0], [1.0, -phi], shocks, axis=0)[200:])


def _indicator_correlation(q: float, rho: FloatArray) -> FloatArray:
    """Correlation of 1{X_0 <= z_q} and 1{X_k <= z_q} for a standard bivariate normal with
    correlation ``rho``: P(both) = Phi(h) - 2 T(h, sqrt((1 - r) / (1 + r))) (Owen's T)."""
    h = special.ndtri(q)
    both = special.ndtr(h) - 2.0 * special.owens_t(h, np.sqrt((1.0 - rho) / (1.0 + rho)))
    return np.asarray((both - q * q) / (q * (1.0 - q)))


def _quartile_tau(phi: float, m: float) -> float:
    """The estimator's target: tau_m (Bartlett form) averaged over the quartile indicators."""
    lags = np.arange(1, min(m, 4000), dtype=np.float64)
    weights = 1.0 - lags / m if math.isfinite(m) else np.ones_like(lags)
    return float(
        np.mean(
            [1.0 + 2.0 * np.sum(weights * _indicator_correlation(q, phi**lags)) for q in QUARTILES]
        )
    )


def test_independent_columns_pass_the_gate_with_exactly_one() -> None:
    # An estimate that only adds noise costs power (module docstring): independent columns
    # must come out at exactly 1, not 1.03. The gate is a test at GATE_LEVEL (two p-values,
    # each at half of it), so about 1 in 12 independent columns is let through.
    rng = np.random.default_rng(0)
    numeric = rng.standard_normal((2000, 200))
    codes = rng.integers(0, 4, size=(2000, 100))
    dependence = estimate_dependence(numeric, codes)
    exact = np.all(dependence.inflation == 1.0, axis=1)
    assert float(exact[:200].mean()) >= 1.0 - 1.5 * GATE_LEVEL
    assert float(exact[200:].mean()) >= 1.0 - 1.5 * GATE_LEVEL
    assert float(dependence.inflation[:, -1].max()) < 1.5  # and lets them through mildly
    # Missing completely at random: the missing indicator is a second gated series.
    numeric[rng.random(numeric.shape) < 0.1] = np.nan
    with_missing = estimate_dependence(numeric, _no_codes(2000))
    assert float(np.all(with_missing.inflation == 1.0, axis=1).mean()) >= 1.0 - 3 * GATE_LEVEL


def test_ar1_matches_the_sheppard_bartlett_inflation() -> None:
    # Indicator correlations of a Gaussian AR(1) are known exactly (Owen's T; at the median
    # Sheppard's (2 / pi) arcsin(phi^k)), so tau_m is known for every m.
    phi = 0.9
    median_long_run = 1.0 + 2.0 * sum((2.0 / math.pi) * math.asin(phi**k) for k in range(1, 4000))
    assert median_long_run == pytest.approx(13.28, abs=0.01)
    sheppard = 2.0 / math.pi * math.asin(phi)
    assert float(_indicator_correlation(0.5, np.array(phi))) == pytest.approx(sheppard, rel=1e-12)

    values = _ar1(np.random.default_rng(0), phi, 5000, 20)
    dependence = estimate_dependence(values, _no_codes(5000))
    curves = dependence.inflation
    assert np.all(curves[:, 0] == 1.0)  # one row is one row
    assert np.all(np.diff(curves, axis=1) >= -1e-12)  # positive correlations only add up
    # Short windows: tau_2 = 1 + rho_1 is estimated to a few percent from 5,000 rows.
    for m in (2, 4, 16):
        assert float(np.mean(dependence.at(m))) == pytest.approx(_quartile_tau(phi, m), rel=0.05)
    # Long run: each estimate is noisy (right-skewed), its median close to the target and
    # to the median indicator's 13.28.
    long_run = float(np.median(curves[:, -1]))
    assert long_run == pytest.approx(_quartile_tau(phi, math.inf), rel=0.2)
    assert 0.75 * median_long_run < long_run < 1.3 * median_long_run


def test_at_interpolates_in_log_rows_and_holds_beyond_the_grid() -> None:
    curve = np.maximum(np.sqrt(GRID.astype(np.float64)), 1.0)[None, :]
    dependence = Dependence(curve, 1000)
    assert GRID[:6].tolist() == [1, 2, 3, 4, 6, 8]
    # 5 rows lie between grid points 4 and 6, at weight (log2 5 - 2) / (log2 6 - 2).
    weight = (math.log2(5) - 2.0) / (math.log2(6) - 2.0)
    expected = (1 - weight) * 2.0 + weight * math.sqrt(6.0)
    assert float(dependence.at(5)[0]) == pytest.approx(expected, rel=1e-12)
    assert 2.0 < float(dependence.at(5)[0]) < math.sqrt(6.0)
    assert float(dependence.at(16)[0]) == pytest.approx(4.0)  # on a grid point
    assert float(dependence.at(0.3)[0]) == 1.0  # fewer than one row reads as one
    assert float(dependence.at(1e12)[0]) == curve[0, -1]


def test_tail_equivalent_widens_by_the_estimate_uncertainty() -> None:
    taus = np.array([1.0, 1.5, 3.0, 13.0])
    curves = np.repeat(taus[:, None], GRID.shape[0], axis=1)
    depth = -math.log(1e-9)
    short = Dependence(curves, 100).tail_equivalent(depth)
    long = Dependence(curves, 100_000).tail_equivalent(depth)
    assert np.all(short.inflation >= curves)
    assert np.all(long.inflation >= curves)
    assert np.all(short.inflation[:, -1] / taus > long.inflation[:, -1] / taus)
    assert np.all(long.inflation[:, -1] / taus < 1.001)  # a long reference knows its tau

    # The defining equation exp(-depth / tau*) = E[exp(-depth / (tau e^{s Z}))], integrated
    # independently of the module's Gauss-Hermite rule.
    tau, n = 3.0, 100
    rho = (tau - 1.0) / (tau + 1.0)
    s = 2.0 / math.sqrt((1.0 - rho**2) * n)
    mean, _ = integrate.quad(
        lambda z: stats.norm.pdf(z) * math.exp(-depth * math.exp(-s * z) / tau), -12, 12
    )
    assert float(short.inflation[2, -1]) == pytest.approx(depth / -math.log(mean), rel=2e-3)
    # Nothing to widen with no rows or no columns.
    assert np.array_equal(Dependence(curves, 1).tail_equivalent(depth).inflation, curves)


def test_pooled_raises_every_column_to_the_lower_median() -> None:
    def pooled(*taus: float) -> list[float]:
        curves = np.repeat(np.array(taus)[:, None], GRID.shape[0], axis=1)
        result = Dependence(curves, 500).pooled()
        assert result.n_rows == 500
        assert np.all(result.inflation[:, 0] == result.inflation[:, -1])  # whole curves
        return [float(tau) for tau in result.inflation[:, -1]]

    assert pooled(1.0, 3.0, 10.0) == [3.0, 3.0, 10.0]
    assert pooled(10.0, 1.0, 4.0, 3.0) == [10.0, 3.0, 4.0, 3.0]  # lower median of four: 3
    # Half the columns independent: nothing is raised (the lower median is 1).
    assert pooled(1.0, 10.0) == [1.0, 10.0]
    assert pooled(1.0, 1.0, 4.0, 9.0) == [1.0, 1.0, 4.0, 9.0]
    assert pooled(7.0) == [7.0]  # a single column keeps its estimate


def test_block_length_follows_the_typical_column() -> None:
    # Twice the (lower) median column's long-run inflation: a persistent minority of columns
    # does not make the whole bootstrap block-wise.
    assert Dependence.independent(3).block_length(limit=100) == 1
    assert Dependence.independent(0).block_length(limit=100) == 1
    one_of_two = np.repeat(np.array([[1.0], [13.28]]), GRID.shape[0], axis=1)
    assert Dependence(one_of_two, 5000).block_length(limit=100) == 1
    two_of_three = np.repeat(np.array([[1.0], [13.28], [13.28]]), GRID.shape[0], axis=1)
    assert Dependence(two_of_three, 5000).block_length(limit=100) == 27  # ceil(2 * 13.28)
    assert Dependence(two_of_three, 5000).block_length(limit=10) == 10


def test_categorical_codes_of_an_ar1_are_dependent() -> None:
    # Three categories from thresholding an AR(1) at 0.8: consecutive rows mostly share one.
    values = _ar1(np.random.default_rng(1), 0.8, 5000)[:, 0]
    codes = np.digitize(values, [-0.5, 0.5]).astype(np.int64)[:, None]
    codes[::50, 0] = -1  # missing, regularly: not itself persistent
    dependence = estimate_dependence(np.empty((5000, 0)), codes)
    assert dependence.n_columns == 1
    assert 3.0 < float(dependence.inflation[0, -1]) < 10.0
    shuffled = np.random.default_rng(2).permutation(codes)
    assert np.all(estimate_dependence(np.empty((5000, 0)), shuffled).inflation == 1.0)


def test_a_persistent_missing_indicator_counts() -> None:
    # Values independent, but missing in long bursts: the missing indicator decides.
    rng = np.random.default_rng(4)
    numeric = rng.standard_normal((4000, 1))
    numeric[np.repeat(rng.random(40) < 0.3, 100), 0] = np.nan
    assert float(estimate_dependence(numeric, _no_codes(4000)).inflation[0, -1]) > 20.0


def test_short_persistent_references_have_few_effective_rows() -> None:
    # A 50-row random walk is as persistent as a series gets; its sample autocorrelations
    # are biased towards 0, which the correction undoes enough to flag the reference.
    taus = np.array(
        [
            estimate_dependence(
                np.cumsum(rng.standard_normal(50))[:, None], _no_codes(50)
            ).inflation[0, -1]
            for rng in (np.random.default_rng(seed) for seed in range(20))
        ]
    )
    assert np.all(taus > 1.0)  # every one passes the gate
    assert float(np.median(50 / taus)) < MIN_EFFECTIVE_ROWS
    # 5,000 rows of i.i.d. values in the same test hold thousands of effective rows.
    iid = estimate_dependence(np.random.default_rng(0).standard_normal((5000, 1)), _no_codes(5000))
    assert 5000 / float(iid.at(5000)[0]) > 4000


def test_bias_correction_recovers_a_short_series_dependence() -> None:
    # 100 rows of an AR(1) at 0.9 hold about 8 effective rows; centred sample autocorrelations
    # lose tau / n each, and uncorrected they show about 60 % of tau (7.8 of 12.6 here).
    values = _ar1(np.random.default_rng(6), 0.9, 100, 200)
    long_run = estimate_dependence(values, _no_codes(100)).inflation[:, -1]
    assert np.all(long_run > 1.0)
    target = _quartile_tau(0.9, math.inf)
    assert 0.7 * target < float(np.median(long_run)) < 1.1 * target


def test_rows_beyond_max_rows_are_not_read() -> None:
    rng = np.random.default_rng(5)
    head = _ar1(rng, 0.5, 3000)[:, 0]
    column = np.concatenate([head, np.cumsum(rng.standard_normal(3000))])[:, None]
    limited = estimate_dependence(column, _no_codes(6000), max_rows=3000)
    assert limited.n_rows == 3000
    # The random walk after row 3,000 is not seen: the estimate is the head's own.
    own = estimate_dependence(head[:, None], _no_codes(3000))
    assert np.array_equal(limited.inflation, own.inflation)
    assert float(estimate_dependence(column, _no_codes(6000)).inflation[0, -1]) > 10 * float(
        own.inflation[0, -1]
    )


@pytest.mark.parametrize(
    ("inflation", "message"),
    [
        (np.ones((2, 5)), r"inflation: expected shape \(k, "),
        (np.ones(GRID.shape[0]), "inflation: expected shape"),
        (np.full((1, GRID.shape[0]), 0.9), "inflation: every value must be finite and at least 1"),
        (np.full((1, GRID.shape[0]), np.nan), "inflation: every value"),
        (np.full((1, GRID.shape[0]), np.inf), "inflation: every value"),
    ],
)
def test_construction_names_inflation(inflation: FloatArray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Dependence(inflation, 100)


def test_the_gate_of_complete_columns_at_once_answers_as_column_by_column() -> None:
    """The profile-wide gate (all complete columns in one pass) is the per-column gate:
    AR(1) and independent columns, ties, a constant column, short and long references."""
    rng = np.random.default_rng(5)
    for n in (8, 9, 30, 200, 999):
        rows = rng.normal(size=(n, 6))
        for t in range(1, n):
            rows[t, :3] += 0.4 * rows[t - 1, :3]
        rows[:, 4] = np.round(rows[:, 4])
        rows[:, 5] = 1.0
        at_once = _complete_columns_gate(rows)
        one_by_one = [_dependent(rows[:, j], np.ones(n, dtype=np.bool_)) for j in range(6)]
        assert at_once == one_by_one
        assert at_once[5] is False
    # A column with a missing value is left to the per-column gate.
    rows[3, 2] = np.nan
    assert _complete_columns_gate(rows)[2] is None
