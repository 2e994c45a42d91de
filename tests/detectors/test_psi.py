"""PSI against a plain per-feature, per-value reference implementation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from detectors.buckets import CategoryBuckets
from detectors.detection import FloatArray, IntArray
from detectors.profile import build_profile
from detectors.psi import (
    SHARE_FLOOR,
    CategoricalPSITest,
    PSITest,
    psi_categorical,
    psi_numeric,
)
from detectors.window import CountWindow, WindowView
from detectors.window_detector import WindowedDetector


def _psi_terms(reference: Sequence[float], window: Sequence[float]) -> float:
    total = 0.0
    for reference_share, window_share in zip(reference, window, strict=True):
        p, q = max(reference_share, SHARE_FLOOR), max(window_share, SHARE_FLOOR)
        total += (q - p) * math.log(q / p)
    return total


def _loop_psi_numeric(window: FloatArray, edges: FloatArray, fractions: FloatArray) -> list[float]:
    out = []
    for f in range(window.shape[1]):
        counts = [0] * fractions.shape[1]
        n = 0
        for v in window[:, f]:
            if not math.isfinite(v):
                continue
            k = 0
            for edge in edges[f, 1:-1]:
                if v > edge:
                    k += 1
            counts[k] += 1
            n += 1
        out.append(_psi_terms(fractions[f], [c / n for c in counts]) if n else math.nan)
    return out


def _loop_psi_categorical(codes: IntArray, category_counts: Sequence[IntArray]) -> list[float]:
    out = []
    for f, reference in enumerate(category_counts):
        k = len(reference)
        counts = [0] * (k + 1)
        n = 0
        for code in codes[:, f]:
            if code < 0:
                continue
            counts[min(int(code), k)] += 1
            n += 1
        ref_total = sum(int(c) for c in reference)
        ref_shares = [int(c) / ref_total for c in reference] + [0.0]
        out.append(_psi_terms(ref_shares, [c / n for c in counts]) if n else math.nan)
    return out


@pytest.fixture
def profile_arrays() -> tuple[FloatArray, FloatArray, FloatArray]:
    rng = np.random.default_rng(21)
    reference = np.column_stack(
        [
            rng.normal(size=2000),
            rng.exponential(size=2000),
            rng.integers(0, 4, size=2000).astype(np.float64),  # ties: repeated edges
        ]
    )
    profile = build_profile("m", "1", ["a", "b", "c"], reference, n_bins=10)
    return reference, profile.bin_edges, profile.bin_fractions


def test_numeric_psi_equals_loop_reference(
    profile_arrays: tuple[FloatArray, FloatArray, FloatArray],
) -> None:
    _, edges, fractions = profile_arrays
    rng = np.random.default_rng(22)
    for shift in (0.0, 0.3, 3.0):  # 3.0 empties most bins of the window
        window = rng.normal(shift, size=(200, 3))
        window[::9, 0] = np.nan
        window[::13, 1] = np.inf
        window[::17, 2] = -np.inf
        np.testing.assert_allclose(
            psi_numeric(window, edges, fractions),
            _loop_psi_numeric(window, edges, fractions),
            rtol=1e-12,
            atol=1e-15,
        )


def test_reference_against_itself_is_exactly_zero(
    profile_arrays: tuple[FloatArray, FloatArray, FloatArray],
) -> None:
    reference, edges, fractions = profile_arrays
    np.testing.assert_array_equal(psi_numeric(reference, edges, fractions), [0.0, 0.0, 0.0])


def test_numeric_known_answer_with_empty_bin() -> None:
    edges = np.array([[-np.inf, 0.0, 1.0, np.inf]])
    fractions = np.array([[0.25, 0.5, 0.25]])
    window = np.array([[-1.0], [0.5], [0.5], [0.0], [np.nan]])  # 0.0 is not above edge 0.0
    # Window shares: 0.5, 0.5, 0 -> floored to 1e-4 in the last bin.
    expected = (0.5 - 0.25) * math.log(0.5 / 0.25) + 0.0 + (1e-4 - 0.25) * math.log(1e-4 / 0.25)
    assert psi_numeric(window, edges, fractions)[0] == pytest.approx(expected, rel=1e-14)


def test_numeric_feature_without_observed_values_is_nan() -> None:
    edges = np.array([[-np.inf, 0.0, np.inf], [-np.inf, 0.0, np.inf]])
    fractions = np.array([[0.5, 0.5], [0.5, 0.5]])
    window = np.array([[np.nan, 1.0], [np.inf, -1.0]])
    psi = psi_numeric(window, edges, fractions)
    assert np.isnan(psi[0])
    assert psi[1] == 0.0


def test_categorical_psi_equals_loop_reference() -> None:
    rng = np.random.default_rng(23)
    counts: tuple[IntArray, ...] = (
        np.array([500, 300, 200]),
        np.array([10]),
        np.array([], dtype=np.int64),  # all-missing reference: every value is unseen
        np.array([7, 0, 3, 90]),  # a reference category with count 0: an empty bin
    )
    codes = np.column_stack(
        [
            rng.integers(-1, 5, size=300),  # 3 unseen, 4 out of vocabulary: also unseen
            rng.integers(-1, 2, size=300),
            rng.integers(-1, 1, size=300),
            rng.integers(-1, 4, size=300),
        ]
    )
    ours = psi_categorical(codes, counts)
    expected = _loop_psi_categorical(codes, counts)
    np.testing.assert_allclose(ours[[0, 1, 3]], np.array(expected)[[0, 1, 3]], rtol=1e-12)
    assert np.isnan(ours[2])  # no reference share to compare with


def test_categorical_known_answer_with_unseen_bucket() -> None:
    counts = (np.array([50, 50]),)
    codes = np.array([[0], [0], [1], [2], [-1]])
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.25 - 1e-4) * math.log(0.25 / 1e-4)
    expected += (0.5 - 0.5) * 0.0
    assert psi_categorical(codes, counts)[0] == pytest.approx(expected, rel=1e-14)


def test_categorical_prebuilt_buckets_give_the_same_answer() -> None:
    counts = (np.array([5, 1]), np.array([2, 2, 2]))
    codes = np.array([[0, 2], [1, 3], [2, -1], [-1, 0]])
    np.testing.assert_array_equal(
        psi_categorical(codes, counts), psi_categorical(codes, CategoryBuckets.from_counts(counts))
    )


def test_categorical_window_without_values_is_nan() -> None:
    psi = psi_categorical(np.array([[-1, 0], [-1, 1]]), (np.array([1, 1]), np.array([1, 1])))
    assert np.isnan(psi[0])
    assert psi[1] == 0.0


def test_psitest_in_windowed_detector_matches_pure_function(
    profile_arrays: tuple[FloatArray, FloatArray, FloatArray],
) -> None:
    _, edges, fractions = profile_arrays
    rng = np.random.default_rng(24)
    stream = rng.normal(size=(300, 3))
    stream[150:, 0] += 2.0
    thresholds = np.array([0.25, 0.25, 10.0])
    detector = WindowedDetector([PSITest(edges, fractions, thresholds)], CountWindow(3, 100))
    detections = detector.update(stream)
    assert [d.row for d in detections] == [99, 199, 299]
    for d in detections:
        rows = stream[d.first_row : d.row + 1]
        np.testing.assert_array_equal(d.statistic, psi_numeric(rows, edges, fractions))
        np.testing.assert_array_equal(d.drifted, d.statistic > thresholds)
    assert [bool(d.drifted[0]) for d in detections] == [False, True, True]


def test_categorical_psitest_reports_observed_counts() -> None:
    test = CategoricalPSITest((np.array([3, 1]),), np.array([0.1]))
    d = test.evaluate(WindowView(0, 3, np.array([[0], [-1], [5], [1]])))
    np.testing.assert_array_equal(d.n_observed, [3])
    assert d.statistic[0] == pytest.approx(
        _loop_psi_categorical(np.array([[0], [5], [1]]), (np.array([3, 1]),))[0]
    )
    assert d.detector == "psi"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bin_edges": np.zeros((2, 2))}, "bin_edges"),
        ({"bin_fractions": np.zeros((2, 2))}, "bin_fractions"),
        ({"thresholds": np.zeros(3)}, "thresholds"),
    ],
)
def test_psitest_names_the_bad_parameter(
    kwargs: dict[str, npt.NDArray[np.float64]], message: str
) -> None:
    args = {
        "bin_edges": np.tile([-np.inf, 0.0, 1.0, np.inf], (2, 1)),
        "bin_fractions": np.full((2, 3), 1 / 3),
        "thresholds": np.zeros(2),
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        PSITest(**args)


def test_categorical_psitest_names_the_bad_parameter() -> None:
    with pytest.raises(ValueError, match="thresholds"):
        CategoricalPSITest((np.array([1, 2]),), np.zeros(2))
    with pytest.raises(ValueError, match=r"category_counts\[0\]"):
        CategoricalPSITest((np.array([-1, 2]),), np.zeros(1))


def test_categorical_codes_of_any_integer_dtype() -> None:
    counts = (np.array([4, 3, 2]), np.array([1, 1]))
    codes = np.array([[0, 1], [2, 0], [3, 1], [1, 7]])
    expected = psi_categorical(codes, counts)
    for dtype in (np.uint8, np.int32, np.uint64):
        np.testing.assert_array_equal(psi_categorical(codes.astype(dtype), counts), expected)
