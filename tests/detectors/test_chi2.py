"""Chi-square homogeneity test against scipy.stats.chi2_contingency (the oracle)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from detectors.chi2 import Chi2Test, chi2_statistic
from detectors.detection import IntArray
from detectors.window import CountWindow, WindowView
from detectors.window_detector import WindowedDetector


def _table(codes: IntArray, reference: IntArray) -> IntArray:
    """The 2 x kept-columns table the module documents, built the obvious way."""
    k = reference.shape[0]
    window = codes[codes >= 0]
    counts = np.bincount(np.minimum(window, k), minlength=k + 1)
    table = np.array([np.append(reference, 0), counts])
    return table[:, table.sum(axis=0) > 0]


def _assert_equal_to_scipy(codes: IntArray, category_counts: Sequence[IntArray]) -> None:
    statistic, dof, p_value = chi2_statistic(codes, category_counts)
    for f, reference in enumerate(category_counts):
        table = _table(codes[:, f], reference)
        if table.size == 0 or (table.sum(axis=1) == 0).any():
            assert np.isnan(statistic[f])
            assert np.isnan(p_value[f])
            continue
        expected = chi2_contingency(table)
        # Bit-equal: same expected counts, same Yates step, same summation order.
        assert statistic[f] == expected.statistic
        assert dof[f] == expected.dof
        assert p_value[f] == expected.pvalue


def test_two_categories_use_yates_correction() -> None:
    counts = (np.array([60, 40]),)
    codes = np.array([[0]] * 10 + [[1]] * 30)
    _assert_equal_to_scipy(codes, counts)
    statistic, dof, _ = chi2_statistic(codes, counts)
    assert dof[0] == 1
    # Without Yates' correction the statistic would be larger.
    uncorrected = chi2_contingency(np.array([[60, 40], [10, 30]]), correction=False).statistic
    assert statistic[0] < uncorrected


def test_yates_never_moves_a_count_past_its_expectation() -> None:
    # Expected and observed differ by less than 0.5 in every cell (scipy gh-13875).
    counts = (np.array([1000, 1000]),)
    codes = np.array([[0]] * 51 + [[1]] * 50)
    _assert_equal_to_scipy(codes, counts)


def test_unseen_and_empty_columns() -> None:
    counts = (
        np.array([30, 10]),  # unseen present in the window: 2 x 3 table
        np.array([30, 10, 0, 5]),  # category 2 is empty on both sides: dropped
        np.array([5]),  # only the unseen bucket differs: 2 x 2 with Yates
        np.array([8, 2]),  # window sees one category only
    )
    codes = np.array(
        [
            [0, 0, 1, 0],
            [0, 1, 1, 0],
            [1, 5, 0, 0],
            [1, 3, -1, 0],
            [1, -1, 0, -1],
            [2, 0, 7, 0],
        ]
    )
    _assert_equal_to_scipy(codes, counts)
    _, dof, _ = chi2_statistic(codes, counts)
    np.testing.assert_array_equal(dof, [2, 3, 1, 1])


def test_single_kept_column_has_zero_dof() -> None:
    counts = (np.array([12]),)
    codes = np.array([[0], [0], [-1]])
    statistic, dof, p_value = chi2_statistic(codes, counts)
    assert (statistic[0], dof[0], p_value[0]) == (0.0, 0, 1.0)
    expected = chi2_contingency(np.array([[12], [2]]))
    assert (expected.statistic, expected.dof, expected.pvalue) == (0.0, 0, 1.0)


def test_random_tables_of_many_sizes() -> None:
    rng = np.random.default_rng(31)
    for _ in range(200):
        n_features = int(rng.integers(1, 5))
        counts = tuple(
            rng.integers(0, int(rng.choice([3, 50, 10_000])), size=int(rng.integers(0, 90)))
            for _ in range(n_features)
        )
        n_rows = int(rng.integers(1, 400))
        codes = np.column_stack([rng.integers(-1, c.shape[0] + 2, size=n_rows) for c in counts])
        _assert_equal_to_scipy(codes, counts)


def test_no_window_values_gives_nan() -> None:
    statistic, _, p_value = chi2_statistic(np.array([[-1], [-1]]), (np.array([3, 4]),))
    assert np.isnan(statistic[0])
    assert np.isnan(p_value[0])


def test_chi2test_thresholds_the_statistic_and_fills_pvalues() -> None:
    counts = (np.array([500, 300, 200]), np.array([50, 50]))
    rng = np.random.default_rng(32)
    stream = np.column_stack(
        [rng.choice(3, size=300, p=[0.5, 0.3, 0.2]), rng.integers(0, 2, size=300)]
    )
    stream[200:, 0] = 3  # every value unseen in the last window
    test = Chi2Test(counts, np.array([20.0, 20.0]))
    detections = WindowedDetector([test], CountWindow(2, 100, dtype=np.int64)).update(stream)
    assert [d.row for d in detections] == [99, 199, 299]
    assert [bool(d.drifted[0]) for d in detections] == [False, False, True]
    assert not any(d.drifted[1] for d in detections)
    for d in detections:
        statistic, _, p_value = chi2_statistic(stream[d.first_row : d.row + 1], counts)
        np.testing.assert_array_equal(d.statistic, statistic)
        assert d.p_value is not None
        np.testing.assert_array_equal(d.p_value, p_value)
        assert d.detector == "chi2"


def test_chi2test_names_the_bad_parameter() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        Chi2Test((np.array([1, 2]),), np.zeros(3))
    with pytest.raises(ValueError, match=r"category_counts\[1\]"):
        Chi2Test((np.array([1, 2]), np.zeros((2, 2), dtype=np.int64)), np.zeros(2))


def test_chi2test_counts_observed_values() -> None:
    test = Chi2Test((np.array([4, 4]),), np.array([1.0]))
    d = test.evaluate(WindowView(10, 13, np.array([[0], [-1], [1], [9]])))
    np.testing.assert_array_equal(d.n_observed, [3])
    assert (d.first_row, d.row) == (10, 13)
