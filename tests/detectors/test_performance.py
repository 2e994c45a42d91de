"""Scoring, metrics and the degradation null of `detectors.performance`."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
from river import drift

from detectors.block_means import BlockMeanADWIN
from detectors.performance import PerformanceReference, Scoring, window_metrics

RiverADWIN: Any = drift.ADWIN  # river ships no type hints


@pytest.mark.parametrize(
    ("predictions", "labels", "task", "probabilistic"),
    [
        (["cat", "dog"], ["cat", "cat"], "classification", False),
        ([1, 0, 2], [1, 1, 2], "classification", False),  # whole numbers: classes
        ([0.9, 0.1], [True, False], "classification", True),  # probabilities of a binary label
        ([0.9, 0.1], [1.0, 0.0], "classification", True),
        ([2.5, 7.1, 0.3], [2.0, 9.0, 1.0], "regression", False),
        ([0.2, 0.7], [0.25, 0.5], "regression", False),  # fractional labels: no classes
    ],
)
def test_the_task_is_inferred_from_the_rows(
    predictions: list[object], labels: list[object], task: str, probabilistic: bool
) -> None:
    scoring = Scoring.infer(predictions, labels, "1")
    assert (scoring.task, scoring.probabilistic) == (task, probabilistic)


def test_classification_metrics_are_the_known_answers() -> None:
    scoring = Scoring.infer([0.9, 0.8, 0.3, 0.6, 0.2], [1, 0, 0, 1, 1], "1")
    metrics = window_metrics(scoring, [0.9, 0.8, 0.3, 0.6, 0.2], [1, 0, 0, 1, 1])
    # Predicted classes 1 1 0 1 0 against 1 0 0 1 1: TP 2, FP 1, FN 1, TN 1.
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    p, y = np.array([0.9, 0.8, 0.3, 0.6, 0.2]), np.array([1, 0, 0, 1, 1])
    log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert metrics["log_loss"] == pytest.approx(log_loss)
    # Bins [0.2, 0.3) [0.3, 0.4) [0.6, 0.7) [0.8, 0.9) [0.9, 1]: |p - y| summed per bin / n.
    assert metrics["calibration_error"] == pytest.approx((0.8 + 0.3 + 0.4 + 0.8 + 0.1) / 5)


def test_regression_metrics_and_misses() -> None:
    reference = PerformanceReference.build(
        Scoring("regression", "1"), list(np.arange(10.0)), [0.0] * 10
    )
    # Absolute errors 0..9: the 90th percentile is 8.1, so 9 misses.
    assert reference.scoring.miss_above == pytest.approx(8.1)
    assert reference.miss_rate == pytest.approx(0.1)
    metrics = window_metrics(reference.scoring, [1.0, 3.0, None], [2.0, 1.0, 1.0])
    assert metrics == pytest.approx({"mae": 1.5, "rmse": math.sqrt(2.5), "bias": 0.5})
    misses = reference.scoring.misses([9.0, 1.0, None, "x"], [0.0, 0.0, 0.0, 0.0])
    assert misses[:2].tolist() == [1.0, 0.0]
    assert np.isnan(misses[2:]).all()


def test_regression_metrics_of_huge_errors_are_finite_without_warnings() -> None:
    scoring = Scoring("regression", "1", miss_above=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow in a square or a sum warns
        metrics = window_metrics(scoring, [0.0, 0.0, 1e308], [1e200, -1e200, -1e308])
    # The third error overflows the float range: a miss, but left out of the means.
    assert metrics == pytest.approx({"mae": 1e200, "rmse": 1e200, "bias": 0.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        misses = scoring.misses([0.0, 0.0, 1e308], [1e200, -1e200, -1e308])
    assert misses.tolist() == [1.0, 1.0, 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = window_metrics(scoring, [1.5e308, -1.5e308], [0.0, 0.0])
    assert metrics == pytest.approx({"mae": 1.5e308, "rmse": 1.5e308, "bias": 0.0})


def test_class_texts_make_booleans_and_whole_floats_the_same_class() -> None:
    scoring = Scoring.infer([True, 1.0, "1", 0], [1, True, 1.0, False], "1")
    assert scoring.misses([True, 1.0, "1", 0], [1, True, 1.0, False]).tolist() == [0, 0, 0, 0]


def test_the_miss_limit_grows_with_dependence_and_falls_with_the_level() -> None:
    rng = np.random.default_rng(1)
    independent = (rng.random(2000) < 0.1).astype(int)
    persistent = np.repeat((rng.random(200) < 0.1).astype(int), 10)  # runs of ten
    scoring = Scoring("classification", "1")
    loose = PerformanceReference.build(scoring, list(1 - independent), [1] * 2000)
    runs = PerformanceReference.build(scoring, list(1 - persistent), [1] * 2000)
    assert loose.miss_limit(200, 1e-4) < runs.miss_limit(200, 1e-4)
    assert loose.miss_limit(200, 1e-2) < loose.miss_limit(200, 1e-4) < 200


def test_the_error_stream_adwin_is_rivers_on_the_same_misses() -> None:
    rng = np.random.default_rng(7)
    misses = np.concatenate([rng.random(3000) < 0.1, rng.random(3000) < 0.3]).astype(float)
    ours = BlockMeanADWIN(1, 1, 0.002)
    rows = [d.row for d in ours.update(misses[:, None])]
    river = RiverADWIN(delta=0.002)
    expected = []
    for i, value in enumerate(misses):
        river.update(value)
        if river.drift_detected:
            expected.append(i)
    assert rows == expected
    assert rows
