"""KS statistic and p-values against scipy.stats.ks_2samp, and KSTest in a windowed detector."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from detectors.detection import FloatArray
from detectors.ks import EXACT_MAX_N, KSTest, ks_pvalues, ks_statistic
from detectors.window import CountWindow, WindowView
from detectors.window_detector import WindowedDetector


def _scipy(ref: FloatArray, win: FloatArray) -> tuple[float, float]:
    with warnings.catch_warnings():
        # scipy warns when it falls back from the exact to the asymptotic p-value.
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ks_2samp(ref, win, method="auto")
    return float(result.statistic), float(result.pvalue)


def _ours(ref: FloatArray, win: FloatArray) -> tuple[float, float]:
    d = ks_statistic(np.sort(ref)[:, None], win[:, None])
    p = ks_pvalues(d, np.array([ref.size]), np.array([win.size]))
    return float(d[0]), float(p[0])


SIZES = [
    (1, 1),
    (1, 2),
    (2, 1),
    (2, 3),
    (3, 3),
    (5, 5),
    (7, 7),
    (4, 6),
    (10, 10),
    (13, 17),  # coprime
    (17, 13),
    (25, 40),
    (50, 50),
    (64, 96),
    (100, 37),
    (128, 128),
    (300, 200),
    (999, 1000),
    (1000, 1000),
    (2000, 500),
    (3, 10_000),
    (10_000, 10_000),  # the largest exact case
    (10_001, 10_001),  # asymptotic from here
    (10_001, 7),
    (20_000, 15_000),
    (50_000, 123),
]


@pytest.mark.parametrize(("n1", "n2"), SIZES)
@pytest.mark.parametrize("ties", [False, True])
def test_statistic_bit_equal_and_pvalue_close_to_scipy(n1: int, n2: int, ties: bool) -> None:
    rng = np.random.default_rng(n1 * 100_003 + n2)
    for shift in (0.0, 0.1, 0.5, 2.0):
        ref, win = rng.normal(size=n1), rng.normal(shift, size=n2)
        if ties:
            ref, win = np.round(ref, 1), np.round(win, 1)
        d, p = _ours(ref, win)
        expected_d, expected_p = _scipy(ref, win)
        assert d == expected_d
        assert abs(p - expected_p) <= 1e-9


def test_pvalue_at_every_lattice_point_of_small_samples() -> None:
    # Samples built so that D takes every value h / lcm it can: a run of k window values
    # below all reference values.
    for n1 in (1, 2, 3, 5, 6, 9, 12):
        for n2 in (1, 2, 4, 5, 6, 10):
            for k in range(n2 + 1):
                ref = np.arange(n1, dtype=np.float64)
                win = np.concatenate([np.full(k, -1.0), np.linspace(0.5, n1 + 1, n2 - k)])
                d, p = _ours(ref, win)
                expected_d, expected_p = _scipy(ref, win)
                assert d == expected_d
                assert abs(p - expected_p) <= 1e-9


def test_equal_sizes_roundoff_fallback_matches_scipy() -> None:
    # Interleaved samples of 7: D = 1/7, where the exact series rounds to 1 + 2e-16 and
    # scipy (with a warning) takes the asymptotic value instead; we must do the same.
    ref = np.arange(0.0, 14.0, 2.0)
    win = ref + 1.0
    with pytest.warns(RuntimeWarning, match="Exact calculation unsuccessful"):
        expected = stats.ks_2samp(ref, win)
    d, p = _ours(ref, win)
    assert d == expected.statistic
    assert p == pytest.approx(0.9999609537692629, abs=1e-12)
    assert abs(p - expected.pvalue) <= 1e-9


def test_identical_samples_have_statistic_zero_and_pvalue_one() -> None:
    values = np.array([0.0, 1.0, 1.0, 2.0])
    assert _ours(values, values) == (0.0, 1.0)


def test_missing_values_are_excluded_like_scipy_on_the_observed_values() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(400, 3))
    win = rng.normal(0.3, size=(150, 3))
    win[::7, 0] = np.nan
    win[::5, 1] = np.inf
    win[::11, 1] = -np.inf
    win[:, 2] = np.nan  # nothing observed
    ref_sorted = np.sort(ref, axis=0)
    d = ks_statistic(ref_sorted, win)
    win_n = np.isfinite(win).sum(axis=0)
    p = ks_pvalues(d, np.full(3, 400), win_n)
    for f in (0, 1):
        observed = win[np.isfinite(win[:, f]), f]
        expected_d, expected_p = _scipy(ref[:, f], observed)
        assert d[f] == expected_d
        assert abs(p[f] - expected_p) <= 1e-9
    assert np.isnan(d[2])
    assert np.isnan(p[2])


def test_pvalues_are_vectorized_over_mixed_modes() -> None:
    d = np.array([0.2, 0.01, 0.3, np.nan, 0.5])
    ref_n = np.array([50, 20_000, 7, 10, 0])
    win_n = np.array([60, 30_000, 7, 10, 10])
    p = ks_pvalues(d, ref_n, win_n)
    singles = [
        float(ks_pvalues(d[i : i + 1], ref_n[i : i + 1], win_n[i : i + 1])[0]) for i in (0, 1, 2)
    ]
    np.testing.assert_array_equal(p[:3], singles)
    assert np.isnan(p[3:]).all()
    assert EXACT_MAX_N == 10_000


def _window(rows: FloatArray) -> WindowView:
    return WindowView(first_row=0, last_row=rows.shape[0] - 1, rows=rows)


def test_kstest_pvalues_are_opt_in() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(300, 2))
    win = rng.normal([0.0, 0.4], size=(80, 2))
    thresholds = np.array([0.2, 0.2])
    plain = KSTest(np.sort(ref, axis=0), thresholds).evaluate(_window(win))
    assert plain.p_value is None
    with_p = KSTest(np.sort(ref, axis=0), thresholds, p_values=True).evaluate(_window(win))
    assert with_p.p_value is not None
    np.testing.assert_array_equal(with_p.statistic, plain.statistic)
    for f in range(2):
        expected_d, expected_p = _scipy(ref[:, f], win[:, f])
        assert with_p.statistic[f] == expected_d
        assert abs(with_p.p_value[f] - expected_p) <= 1e-9


def test_kstest_in_count_window_detects_at_the_expected_rows() -> None:
    rng = np.random.default_rng(11)
    ref = rng.normal(size=(1000, 2))
    # Feature 0 stays put; feature 1 shifts by 1.5 from row 200 on.
    stream = rng.normal(size=(400, 2))
    stream[200:, 1] += 1.5
    detector = WindowedDetector(
        [KSTest(np.sort(ref, axis=0), np.array([0.3, 0.3]))], CountWindow(2, size=50)
    )
    detections = []
    for start in range(0, 400, 33):  # batches that straddle window ends
        detections += detector.update(stream[start : start + 33])
    assert [d.row for d in detections] == [49, 99, 149, 199, 249, 299, 349, 399]
    assert [d.first_row for d in detections] == [0, 50, 100, 150, 200, 250, 300, 350]
    assert [d.row for d in detections if d.any_drift] == [249, 299, 349, 399]
    assert not any(d.drifted[0] for d in detections)
    for d in detections:
        rows = stream[d.first_row : d.row + 1]
        for f in range(2):
            assert d.statistic[f] == _scipy(ref[:, f], rows[:, f])[0]
        np.testing.assert_array_equal(d.n_observed, [50, 50])
