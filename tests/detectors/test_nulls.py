"""Null laws: KS inverse pairs, the exact out-of-range law, generalised Pareto tails, the
AR(1) coefficient for an inflation, simulated counts and beta-binomial rate thresholds."""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from detectors import nulls
from detectors.detection import FloatArray, IntArray
from detectors.nulls import (
    CountLaws,
    TailLaw,
    ar_coefficient,
    ks_isf,
    ks_sf,
    out_of_range_isf,
    rate_count_isf,
    simulate_counts,
)


def _a(*values: float) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
    return np.array(values, dtype=np.float64)


def test_ks_sf_and_isf_are_inverses() -> None:
    reference, window = _a(50.0, 500.0, 5000.0, 1e6), _a(20.0, 100.0, 1000.0, 50.0)
    for level in (0.5, 1e-2, 1e-4, 1e-8):
        statistic = ks_isf(level, reference, window)
        np.testing.assert_allclose(ks_sf(statistic, reference, window), level, rtol=1e-9)
    # A larger effective sample makes the same D more surprising.
    assert np.all(np.diff(ks_sf(np.full(3, 0.1), _a(1e3, 1e4, 1e5), _a(1e3, 1e4, 1e5))) < 0)


def test_ks_with_a_huge_reference_is_the_one_sample_law() -> None:
    # Stephens' modified statistic is accurate to a few percent of scipy's exact law.
    for n, statistic in [(20, 0.2), (20, 0.3), (100, 0.1), (100, 0.2), (1000, 0.05)]:
        ours = float(ks_sf(np.array(statistic), np.array(1e12), np.array(float(n))))
        assert ours == pytest.approx(stats.kstwo.sf(statistic, n), rel=0.05)


def _range_pmf(n: int, w: int) -> list[Fraction]:
    """P(K = k) = (k + 1) C(n - 2 + w - k, n - 2) / C(n + w, n), in exact rationals."""
    total = math.comb(n + w, n)
    return [Fraction((k + 1) * math.comb(n - 2 + w - k, n - 2), total) for k in range(w + 1)]


def _range_threshold(n: int, w: int, level: float) -> int:
    return int(out_of_range_isf(level, _a(float(n)), _a(float(w)), _a(1.0))[0])


@pytest.mark.parametrize(
    ("n", "w", "level"), [(300, 100, 1e-2), (50, 1000, 1e-2), (20, 30, 0.05), (300, 100, 1e-3)]
)
def test_out_of_range_is_the_smallest_count_at_the_level(n: int, w: int, level: float) -> None:
    pmf = _range_pmf(n, w)
    assert sum(pmf) == 1
    # Each window value is outside the range with probability 2 / (n + 1), exactly.
    assert sum(k * p for k, p in enumerate(pmf)) == Fraction(2 * w, n + 1)
    threshold = _range_threshold(n, w, level)
    assert float(sum(pmf[threshold + 1 :])) <= level < float(sum(pmf[threshold:]))


def test_out_of_range_law_matches_simulation() -> None:
    # 20,000 references of n uniform values and windows of w: the count outside the range.
    rng = np.random.default_rng(0)
    for n, w, level in [(300, 100, 1e-2), (50, 1000, 1e-2)]:
        reference = rng.random((20_000, n))
        window = rng.random((20_000, w))
        low, high = reference.min(axis=1, keepdims=True), reference.max(axis=1, keepdims=True)
        outside = ((window < low) | (window > high)).sum(axis=1)
        threshold = _range_threshold(n, w, level)
        error = 3.0 * math.sqrt(level / 20_000)
        assert float((outside > threshold).mean()) <= level + error
        pmf = np.array([float(p) for p in _range_pmf(n, w)])
        frequencies = np.bincount(outside, minlength=w + 1) / 20_000.0
        # Binomial(w, 2 / (n + 1)) is 0.05 to 0.06 off somewhere; the exact law is not.
        assert np.abs(frequencies - pmf).max() < 0.01
        assert float(outside.mean()) == pytest.approx(2 * w / (n + 1), rel=0.03)
    # (300, 100): 4 allowed, as the exact law says; Binomial(100, 2/300) would allow 3.
    assert _range_threshold(300, 100, 1e-2) == 4
    assert stats.binom.isf(1e-2, 100, 2 / 300) == 3


def test_out_of_range_scales_by_the_inflation() -> None:
    base = _range_threshold(300, 100, 1e-3)
    scaled = out_of_range_isf(1e-3, _a(300.0, 300.0), _a(100.0, 100.0), _a(2.5, 0.5))
    assert scaled.tolist() == [math.ceil(base * 2.5), base]  # inflation below 1 reads as 1


def test_tail_law_of_chi_square_draws() -> None:
    draws = np.random.default_rng(0).chisquare(9, 16_384)
    law = TailLaw.from_draws(draws)
    assert law.shape >= 0.0  # never lighter than exponential
    for p in (1e-2, 1e-3, 1e-4, 1e-6):
        assert law.isf(p) == pytest.approx(stats.chi2.isf(p, 9), rel=0.1)
    for p in (0.3, 0.1, 0.05, 1e-2, 1e-3, 1e-5):
        assert float(law.sf(np.array(law.isf(p)))) == pytest.approx(p, rel=0.02, abs=1.0 / 16_384)
    assert float(law.sf(np.array(np.nan))) == 1.0  # a NaN statistic never drifts


def test_tail_law_shape_is_clamped() -> None:
    rng = np.random.default_rng(1)
    # Student t(3) has tail index 3: shape about 1/3.
    assert TailLaw.from_draws(rng.standard_t(3, 16_384)).shape == pytest.approx(1 / 3, abs=0.1)
    # Cauchy (shape 1) exceeds what the method of moments can fit: capped.
    assert TailLaw.from_draws(rng.standard_cauchy(16_384)).shape == pytest.approx(0.45)
    # A bounded law (shape < 0) is fitted as exponential: beyond every draw, still possible.
    bounded = TailLaw.from_draws(rng.random(16_384))
    assert bounded.shape == 0.0
    assert float(bounded.sf(np.array(1.01))) > 0.0
    with pytest.raises(ValueError, match="draws"):
        TailLaw.from_draws(np.full(200, np.nan))


def _arcsin_tau(rho: float, rows: int) -> float:
    lags = np.arange(1, rows, dtype=np.float64)
    return float(1.0 + 2.0 * np.sum((1.0 - lags / rows) * (2.0 / math.pi) * np.arcsin(rho**lags)))


def test_ar_coefficient_inverts_the_arcsin_inflation() -> None:
    for rho, rows in [(0.9, 10_000), (0.5, 100), (0.3, 10_000), (0.99, 5000)]:
        assert ar_coefficient(_arcsin_tau(rho, rows), rows) == pytest.approx(rho, abs=1e-6)
    assert ar_coefficient(1.0, 100) == 0.0
    assert ar_coefficient(0.5, 100) == 0.0
    assert ar_coefficient(5.0, 1) == 0.0  # one row has no lag
    assert ar_coefficient(1e9, 100) == pytest.approx(0.9999)  # beyond reach: the largest


def test_independent_counts_have_dirichlet_multinomial_variance() -> None:
    shares, window, reference = _a(0.1, 0.15, 0.25, 0.3, 0.2), 200, 400.0
    counts = simulate_counts(np.random.default_rng(0), shares, reference, window, 1.0, 20_000)
    assert counts.shape == (20_000, 5)
    assert np.all(counts.sum(axis=1) == window)
    np.testing.assert_allclose(counts.mean(axis=0), window * shares, rtol=0.02)
    # Multinomial variance times the reference's own error, (n_e + W) / (n_e + 1) ~ 1 + W / n_e.
    expected = window * shares * (1 - shares) * (reference + window) / (reference + 1)
    np.testing.assert_allclose(counts.var(axis=0), expected, rtol=0.08)
    assert np.all(counts.var(axis=0) > 1.3 * window * shares * (1 - shares))


def test_inflated_counts_multiply_the_median_indicator_variance() -> None:
    # The first three buckets hold half the mass: their count is the median indicator's sum,
    # whose variance the window's inflation multiplies (huge reference: no error of its own).
    shares, window = _a(0.1, 0.15, 0.25, 0.3, 0.2), 200
    variances = {}
    for tau in (1.0, 4.0, 10.0):
        counts = simulate_counts(np.random.default_rng(2), shares, 1e9, window, tau)
        assert np.all(counts.sum(axis=1) == window)
        # A stationary path: each bucket still holds its share on average.
        np.testing.assert_allclose(counts.mean(axis=0), window * shares, rtol=0.05)
        variances[tau] = float(counts[:, :3].sum(axis=1).var())
    assert variances[1.0] == pytest.approx(window * 0.25, rel=0.1)
    assert variances[4.0] / variances[1.0] == pytest.approx(4.0, rel=0.25)
    assert variances[10.0] / variances[1.0] == pytest.approx(10.0, rel=0.25)


def test_rate_thresholds_are_monotone() -> None:
    def isf(level: float, rate: float, reference: float = 5000.0, tau: float = 1.5) -> float:
        return float(rate_count_isf(level, _a(rate), _a(reference), _a(500.0), _a(tau))[0])

    by_level = [isf(level, 0.02) for level in np.logspace(-1, -10, 37)]
    assert by_level == sorted(by_level)
    assert by_level[-1] > by_level[0]
    by_rate = [isf(1e-4, rate) for rate in np.linspace(0.0, 0.5, 51)]
    assert by_rate == sorted(by_rate)
    # Less certainty about the reference rate, or more inflation: more events tolerated.
    by_reference = [isf(1e-4, 0.02, reference) for reference in (1e6, 1e4, 1e3, 1e2)]
    assert by_reference == sorted(by_reference)
    by_tau = [isf(1e-4, 0.02, tau=tau) for tau in (1.0, 2.0, 4.0, 8.0)]
    assert by_tau == sorted(by_tau)
    assert by_tau[-1] > by_tau[0]
    # A reference without any event still admits a few (half an event of prior).
    assert isf(1e-4, 0.0) >= 1.0


def test_rate_threshold_is_binomial_for_a_huge_independent_reference() -> None:
    for level in (1e-2, 1e-4, 1e-6):
        for rate in (0.01, 0.05, 0.1):
            ours = float(rate_count_isf(level, _a(rate), _a(1e6), _a(1000.0), _a(1.0))[0])
            binomial = float(stats.binom.isf(level, 1000, rate))
            assert binomial <= ours <= binomial + 1
    assert rate_count_isf(1e-4, _a(0.5), _a(1e6), _a(1.0), _a(1.0)).tolist() == [1.0]


def _total(counts: IntArray) -> tuple[FloatArray, ...]:
    return (counts[:, 0].astype(np.float64),)


def test_count_laws_are_shared_between_profiles_and_the_same_whoever_asks_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A law is shared by every profile in the process, and seeded by its inputs alone: a
    restarted process that meets the profiles in another order gets the same thresholds."""
    first, second = np.array([0.25, 0.25, 0.5]), np.array([0.1, 0.2, 0.7])

    def laws_in_order(order: list[FloatArray]) -> dict[float, FloatArray]:
        monkeypatch.setattr(nulls, "SHARED_COUNT_LAWS", nulls.SharedCountLaws(capacity=8))
        found = {}
        for shares in order:
            (law,) = CountLaws(seed=0).laws(("t",), shares, 400.0, 100, 1.0, _total)
            found[float(shares[0])] = law.draws
        return found

    forward, backward = laws_in_order([first, second]), laws_in_order([second, first])
    assert set(forward) == set(backward) == {0.25, 0.1}
    for key, draws in forward.items():
        np.testing.assert_array_equal(draws, backward[key])
    # Another profile asking the same inputs gets the very same law, not a new simulation.
    one = CountLaws(seed=0).laws(("t",), first, 400.0, 100, 1.0, _total)
    other = CountLaws(seed=0).laws(("t",), first, 400.0, 100, 1.0, _total)
    assert one[0] is other[0]
    assert len(nulls.SHARED_COUNT_LAWS) == 2  # both found in the cache
    # A different seed is a different law.
    reseeded = CountLaws(seed=1).laws(("t",), first, 400.0, 100, 1.0, _total)
    assert not np.array_equal(reseeded[0].draws, one[0].draws)
    assert len(nulls.SHARED_COUNT_LAWS) == 3


def test_the_shared_count_laws_keep_the_most_recently_used() -> None:
    cache = nulls.SharedCountLaws(capacity=2)
    made: list[str] = []

    def make(name: str) -> Callable[[np.random.Generator], tuple[TailLaw, ...]]:
        def law(rng: np.random.Generator) -> tuple[TailLaw, ...]:
            made.append(name)
            return (TailLaw.from_draws(rng.standard_normal(200)),)

        return law

    a = cache.get(("a",), make("a"))
    cache.get(("b",), make("b"))
    assert cache.get(("a",), make("a")) is a  # a used again: b is now the oldest
    cache.get(("c",), make("c"))
    cache.get(("a",), make("a"))
    cache.get(("b",), make("b"))
    assert made == ["a", "b", "c", "b"]
    assert len(cache) == 2
