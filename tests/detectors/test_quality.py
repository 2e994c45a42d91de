"""Data-quality window tests: known answers and binomial thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from detectors.quality import (
    RATE_FLOOR,
    CategoricalMissingRateTest,
    MissingRateTest,
    OutOfRangeTest,
    UnseenRateTest,
    binomial_rate_thresholds,
)
from detectors.window import CountWindow, WindowView
from detectors.window_detector import WindowedDetector

NUMERIC = np.array(
    [
        [0.0, 5.0, np.nan],
        [np.nan, 11.0, np.nan],
        [np.inf, -1.0, np.nan],
        [2.0, 10.0, np.nan],
        [-np.inf, 0.0, np.nan],
    ]
)
CODES = np.array(
    [
        [0, -1, 1],
        [1, -1, 2],
        [2, 0, 3],
        [-1, -1, 9],
        [0, -1, -1],
    ]
)


def test_missing_rate_counts_nan_and_inf() -> None:
    d = MissingRateTest(np.array([0.5, 0.0, 0.5])).evaluate(WindowView(0, 4, NUMERIC))
    np.testing.assert_array_equal(d.statistic, [0.6, 0.0, 1.0])
    np.testing.assert_array_equal(d.n_observed, [2, 5, 0])
    np.testing.assert_array_equal(d.drifted, [True, False, True])
    assert d.detector == "missing"
    assert d.p_value is None


def test_out_of_range_share_of_observed_values() -> None:
    test = OutOfRangeTest(np.array([0.0, 0.0, 0.0]), np.array([1.0, 10.0, 1.0]), np.zeros(3))
    d = test.evaluate(WindowView(0, 4, NUMERIC))
    # Feature 0: 0.0 in range, 2.0 above; inf is missing, not out of range.
    # Feature 1: 11.0 above and -1.0 below; the bounds themselves are in range.
    np.testing.assert_array_equal(d.statistic[:2], [0.5, 0.4])
    assert np.isnan(d.statistic[2])
    np.testing.assert_array_equal(d.drifted, [True, True, False])
    np.testing.assert_array_equal(d.n_observed, [2, 5, 0])
    assert d.detector == "out_of_range"


def test_categorical_missing_rate() -> None:
    d = CategoricalMissingRateTest(np.array([0.1, 0.9, 0.1])).evaluate(WindowView(0, 4, CODES))
    np.testing.assert_array_equal(d.statistic, [0.2, 0.8, 0.2])
    np.testing.assert_array_equal(d.drifted, [True, False, True])
    np.testing.assert_array_equal(d.n_observed, [4, 1, 4])
    assert d.detector == "missing"


def test_unseen_rate_is_a_share_of_observed_codes() -> None:
    test = UnseenRateTest(np.array([2, 1, 3]), np.array([0.2, 0.5, 0.2]))
    d = test.evaluate(WindowView(0, 4, CODES))
    # Feature 0: code 2 unseen among 4 observed; feature 2: codes 3 and 9 unseen among 4.
    np.testing.assert_array_equal(d.statistic, [0.25, 0.0, 0.5])
    np.testing.assert_array_equal(d.drifted, [True, False, True])
    assert d.detector == "unseen"


def test_unseen_rate_without_observed_codes_is_nan() -> None:
    d = UnseenRateTest(np.array([2]), np.array([0.0])).evaluate(WindowView(0, 1, CODES[:2, 1:2]))
    assert np.isnan(d.statistic[0])
    assert not d.drifted[0]


def test_binomial_thresholds_follow_the_definition() -> None:
    rates = np.array([0.0, 1e-4, 0.01, 0.05, 0.3, 0.5, 0.99, 1.0])
    for n in (1, 10, 100, 1000):
        for alpha in (0.05, 1e-3, 1e-6):
            thresholds = binomial_rate_thresholds(rates, n, alpha)
            for rate, threshold in zip(np.maximum(rates, RATE_FLOOR), thresholds, strict=True):
                k = round(threshold * n)
                assert threshold == k / n
                # k is the smallest count whose exceedance is at most alpha.
                assert binom.sf(k, n, rate) <= alpha
                assert k == 0 or binom.sf(k - 1, n, rate) > alpha


def test_zero_reference_rate_still_allows_a_few_events() -> None:
    threshold = binomial_rate_thresholds(np.array([0.0]), 1000, 1e-3)[0]
    assert threshold == 0.005
    unfloored = binomial_rate_thresholds(np.array([0.0]), 1000, 1e-3, rate_floor=0.0)[0]
    assert unfloored == 0.0


@pytest.mark.parametrize(
    ("rates", "window_size", "alpha", "message"),
    [
        (np.array([1.5]), 10, 0.01, "reference_rate"),
        (np.array([0.1]), 0, 0.01, "window_size"),
        (np.array([0.1]), 10, 1.0, "alpha"),
    ],
)
def test_binomial_thresholds_name_the_bad_parameter(
    rates: np.typing.NDArray[np.float64], window_size: int, alpha: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        binomial_rate_thresholds(rates, window_size, alpha)


def test_constructors_name_the_bad_parameter() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        MissingRateTest(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_categories"):
        UnseenRateTest(np.array([1, 2]), np.zeros(3))
    with pytest.raises(ValueError, match="numeric_max"):
        OutOfRangeTest(np.zeros(2), np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="numeric_min"):
        OutOfRangeTest(np.ones(2), np.zeros(2), np.zeros(2))


def test_quality_tests_share_one_window() -> None:
    rng = np.random.default_rng(41)
    stream = rng.normal(size=(200, 2))
    stream[120:, 0] = np.nan  # feature 0 goes missing in the second window
    stream[100:, 1] *= 10.0  # feature 1 leaves its range in the second window
    missing = MissingRateTest(np.array([0.05, 0.05]))
    out_of_range = OutOfRangeTest(np.full(2, -4.0), np.full(2, 4.0), np.array([0.05, 0.05]))
    detector = WindowedDetector([missing, out_of_range], CountWindow(2, 100))
    detections = detector.update(stream)
    assert detector.name == "missing+out_of_range"
    assert [(d.detector, d.row, d.drifted.tolist()) for d in detections] == [
        ("missing", 99, [False, False]),
        ("out_of_range", 99, [False, False]),
        ("missing", 199, [True, False]),
        ("out_of_range", 199, [False, True]),
    ]


def test_a_window_of_another_width_is_refused() -> None:
    window = WindowView(0, 9, np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        MissingRateTest(np.full(2, 0.1)).evaluate(window)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        OutOfRangeTest(np.zeros(2), np.ones(2), np.full(2, 0.1)).evaluate(window)
