"""Model performance from predictions joined to their labels: scoring, metrics, the null.

Every labelled row becomes a *miss* (1) or not (0), whatever the task:

- **classification**: the predicted class is not the label. A prediction is a class (text,
  integer, boolean) or, for a binary label, the probability of `Scoring.positive` (the
  class is then the positive one at 0.5 or above; a value outside [0, 1] is none);
- **regression**: the absolute error exceeds the reference's 90th percentile of it.

The miss rate is what degradation is tested on: one test per window, a count against the
calibrated beta-binomial law of `detectors.nulls.rate_count_isf` with the reference's
sampling error and serial dependence, so heavy-tailed regression errors cannot set off a
false alarm the way a mean of them would, and the error stream an ADWIN watches holds values
in [0, 1], as its bound assumes. The other metrics (`window_metrics`: accuracy, precision,
recall, F1, log loss and calibration error; MAE, RMSE and bias) are evidence, not tests.

Class texts follow one rule: booleans read as ``"1"``/``"0"``, integral numbers without a
fraction (``1.0`` is ``"1"``), text as written.

>>> scoring = Scoring.infer([0.9, 0.2, 0.7], [1, 0, 0], "1")
>>> scoring.task, scoring.probabilistic
('classification', True)
>>> scoring.misses([0.9, 0.2, 0.7], [True, 0, 0]).tolist()
[0.0, 0.0, 1.0]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from detectors.dependence import GRID, Dependence, inflation_curve, serially_dependent
from detectors.detection import FloatArray
from detectors.nulls import rate_count_isf

Task = Literal["classification", "regression"]

MISS_QUANTILE = 0.9
"""A regression row misses when its absolute error exceeds this quantile of the reference's."""
CALIBRATION_BINS = 10
LOG_LOSS_EPSILON = 1e-15


def class_text(value: object) -> str | None:
    """The class a JSON value names (None: no value).

    >>> class_text(True), class_text(1.0), class_text(2), class_text("cat"), class_text(None)
    ('1', '1', '2', 'cat', None)
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _number(value: object) -> float:
    """A JSON number as a float; NaN for anything else (booleans too)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            return math.nan
        return number if math.isfinite(number) else math.nan
    return math.nan


_NUMBER_TYPES = frozenset({float, int})


def numbers(values: Sequence[Any]) -> FloatArray:
    """JSON numbers as floats, NaN for anything else (booleans, text, null, non-finite)."""
    if set(map(type, values)) <= _NUMBER_TYPES:  # the common case, in C
        try:
            out = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer beyond any float
            return np.fromiter(map(_number, values), np.float64, len(values))
        out[~np.isfinite(out)] = math.nan
        return out
    return np.fromiter(map(_number, values), np.float64, len(values))


@dataclass(frozen=True)
class Scoring:
    """How a (prediction, label) pair is scored: the task, whether predictions are
    probabilities of ``positive``, and (regression) the absolute error that is a miss."""

    task: Task
    positive: str
    probabilistic: bool = False
    miss_above: float = math.inf  # regression: absolute errors above this are misses

    @classmethod
    def infer(
        cls,
        predictions: Sequence[Any],
        labels: Sequence[Any],
        positive: str,
        task: Task | Literal["auto"] = "auto",
    ) -> Scoring:
        """The scoring the rows call for (``task`` forces the task).

        Classification when a prediction or label is text or a boolean, when every
        prediction is a whole number (classes), or when predictions lie in [0, 1] and labels
        are two classes (probabilities); regression otherwise.
        """
        predicted = [p for p in predictions if p is not None]
        if task == "auto":
            task = _infer_task(predicted, [label for label in labels if label is not None])
        if task == "regression":
            return cls("regression", positive)
        values = numbers(predicted)
        fractional = bool(len(values)) and bool(np.any(values != np.floor(values)))
        unit = bool(len(values)) and bool(np.all((values >= 0) & (values <= 1)))
        classes = {class_text(label) for label in labels} - {None}
        probabilistic = fractional and unit and len(classes) <= 2
        return cls("classification", positive, probabilistic)

    def with_reference(
        self, predictions: Sequence[Any], labels: Sequence[Any], quantile: float = MISS_QUANTILE
    ) -> Scoring:
        """This scoring with its miss threshold taken from reference rows (regression): the
        ``quantile`` of their absolute errors."""
        if self.task != "regression":
            return self
        errors = np.abs(_errors(predictions, labels))
        errors = errors[np.isfinite(errors)]
        above = float(np.quantile(errors, quantile)) if errors.size else math.inf
        return Scoring(self.task, self.positive, False, above)

    def predicted_classes(self, predictions: Sequence[Any]) -> list[str | None]:
        if not self.probabilistic:
            return [class_text(p) for p in predictions]
        negative = "0" if self.positive != "0" else "1"
        values = numbers(predictions)
        # A value outside [0, 1] (NaN too) is no probability: no class, the row unscored.
        return [
            (self.positive if v >= 0.5 else negative) if 0.0 <= v <= 1.0 else None for v in values
        ]

    def misses(self, predictions: Sequence[Any], labels: Sequence[Any]) -> FloatArray:
        """``(n,)`` 1.0 where a row misses, 0.0 where not, NaN where it cannot be scored
        (no label, no prediction, or not a number where the task needs one)."""
        if self.task == "regression":
            errors = np.abs(_errors(predictions, labels))
            return np.where(np.isnan(errors), math.nan, (errors > self.miss_above) * 1.0)
        predicted = self.predicted_classes(predictions)
        out = np.empty(len(predicted))
        for i, (p, label) in enumerate(zip(predicted, labels, strict=True)):
            actual = class_text(label)
            out[i] = math.nan if p is None or actual is None else float(p != actual)
        return out


def _errors(predictions: Sequence[Any], labels: Sequence[Any]) -> FloatArray:
    """Prediction - label per row; infinite where it overflows (a row not scored)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return numbers(predictions) - numbers(labels)


def _infer_task(predictions: list[Any], labels: list[Any]) -> Task:
    def textual(value: object) -> bool:
        return isinstance(value, str | bool)

    if any(map(textual, predictions)) or any(map(textual, labels)):
        return "classification"
    values = numbers(predictions)
    values = values[np.isfinite(values)]
    if not values.size or np.all(values == np.floor(values)):
        return "classification"  # whole numbers: classes
    label_values = numbers(labels)
    binary = set(label_values[np.isfinite(label_values)].tolist()) <= {0.0, 1.0}
    if np.all((values >= 0) & (values <= 1)) and binary:
        return "classification"  # probabilities of a binary label
    return "regression"


def window_metrics(
    scoring: Scoring, predictions: Sequence[Any], labels: Sequence[Any]
) -> dict[str, float]:
    """The performance of scored rows, for people: classification accuracy, error rate,
    precision, recall and F1 of the positive class (log loss and expected calibration error
    with probabilities); regression MAE, RMSE and bias (mean of prediction - label).
    Rows that cannot be scored are left out; a metric without rows is NaN."""
    if scoring.task == "regression":
        errors = _errors(predictions, labels)
        errors = errors[np.isfinite(errors)]
        if not errors.size:
            return {"mae": math.nan, "rmse": math.nan, "bias": math.nan}
        # In units of the largest error: a label of 1e200 squares to no infinity, and
        # means of errors near the float limit sum to none.
        scale = float(np.max(np.abs(errors))) or 1.0
        scaled = errors / scale
        return {
            "mae": scale * float(np.mean(np.abs(scaled))),
            "rmse": scale * float(np.sqrt(np.mean(scaled**2))),
            "bias": scale * float(np.mean(scaled)),
        }
    predicted = scoring.predicted_classes(predictions)
    actual = [class_text(label) for label in labels]
    pairs = [(p, a) for p, a in zip(predicted, actual, strict=True) if p is not None and a]
    positive = scoring.positive
    hits = sum(p == a for p, a in pairs)
    true_positive = sum(p == a == positive for p, a in pairs)
    said_positive = sum(p == positive for p, _ in pairs)
    is_positive = sum(a == positive for _, a in pairs)
    precision = true_positive / said_positive if said_positive else math.nan
    recall = true_positive / is_positive if is_positive else math.nan
    both = precision + recall
    metrics = {
        "accuracy": hits / len(pairs) if pairs else math.nan,
        "error_rate": 1.0 - hits / len(pairs) if pairs else math.nan,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / both if both > 0 else math.nan,
    }
    if scoring.probabilistic:
        metrics.update(_probability_metrics(numbers(predictions), actual, positive))
    return metrics


def _probability_metrics(
    probabilities: FloatArray, actual: list[str | None], positive: str
) -> dict[str, float]:
    probability = (probabilities >= 0.0) & (probabilities <= 1.0)  # NaN: not one
    known = probability & np.array([a is not None for a in actual], dtype=bool)
    if not known.any():
        return {"log_loss": math.nan, "calibration_error": math.nan}
    p = np.clip(probabilities[known], LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON)
    y = np.array([a == positive for a, k in zip(actual, known, strict=True) if k], dtype=float)
    log_loss = float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))
    # Expected calibration error over equal-width bins of the predicted probability.
    bins = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    counts = np.bincount(bins, minlength=CALIBRATION_BINS)
    gap = np.bincount(bins, weights=p - y, minlength=CALIBRATION_BINS)
    return {"log_loss": log_loss, "calibration_error": float(np.abs(gap).sum() / counts.sum())}


def miss_dependence(misses: FloatArray) -> Dependence:
    """The serial dependence of a miss series: none unless the gate of
    `detectors.dependence` finds it (the estimator alone reads dependence into independent
    rows), else its inflation curve."""
    if misses.size >= 2 and misses.std() > 0 and serially_dependent(misses):
        curve = inflation_curve(misses)
    else:  # independent, or constant (a perfect model): nothing to estimate
        curve = np.ones(GRID.shape[0])
    return Dependence(curve[None, :], int(misses.size))


@dataclass(frozen=True, eq=False)
class PerformanceReference:
    """The reference performance: its scoring, miss rate and metrics, and the serial
    dependence of its misses (rows of a stream are seldom independent)."""

    scoring: Scoring
    rows: int  # scored reference rows
    miss_rate: float
    metrics: dict[str, float]
    dependence: Dependence  # of the miss series, one column

    @classmethod
    def build(
        cls,
        scoring: Scoring,
        predictions: Sequence[Any],
        labels: Sequence[Any],
        quantile: float = MISS_QUANTILE,
    ) -> PerformanceReference:
        """The reference of scored rows (in stream order: their dependence counts); a
        regression row misses above the ``quantile`` of the reference's absolute errors."""
        scoring = scoring.with_reference(predictions, labels, quantile)
        misses = scoring.misses(predictions, labels)
        misses = misses[np.isfinite(misses)]
        return cls(
            scoring,
            int(misses.size),
            float(misses.mean()) if misses.size else 0.0,
            window_metrics(scoring, predictions, labels),
            miss_dependence(misses),
        )

    def refined(self, misses: FloatArray) -> PerformanceReference:
        """This reference with the dependence of a longer stretch of stationary misses
        (the reference's and the windows' since that were not degraded, in order): a
        thousand rows underestimate persistent misses, and the limits with them."""
        return dataclasses.replace(self, dependence=miss_dependence(misses))

    def miss_limit(self, window_rows: int, level: float) -> int:
        """Most misses a window of ``window_rows`` scored rows may hold without surprise at
        ``level`` (the chance a stationary window exceeds it)."""
        depth = -math.log(max(level, 1e-300))
        dependence = self.dependence.tail_equivalent(depth)
        reference_effective = self.rows / float(dependence.at(max(self.rows, 1))[0])
        limit = rate_count_isf(
            level,
            np.array([self.miss_rate]),
            np.array([reference_effective]),
            np.array([float(window_rows)]),
            dependence.at(window_rows),
        )
        return int(limit[0])


@dataclass(frozen=True, eq=False)
class LabelShare:
    """Label drift, as one share tested both ways: of labels that are the positive class
    (else the reference's most frequent class) for classification, of labels above the
    reference's median for regression; with the reference's sampling error and the
    dependence of its indicator series, as the misses are."""

    scoring: Scoring
    name: str  # what the share is of, for people
    cut: float  # regression: the reference's median
    rows: int
    rate: float
    dependence: Dependence

    @classmethod
    def build(cls, scoring: Scoring, labels: Sequence[Any]) -> LabelShare:
        if scoring.task == "regression":
            values = numbers(labels)
            values = values[np.isfinite(values)]
            cut = float(np.median(values)) if values.size else math.nan
            name = f"labels above {cut:.4g}"
            share = cls(scoring, name, cut, 0, 0.0, Dependence.independent(1))
        else:
            classes = [c for c in (class_text(label) for label in labels) if c is not None]
            top = scoring.positive
            if top not in classes and classes:
                top = max(sorted(set(classes)), key=classes.count)
            share = cls(
                Scoring(scoring.task, top),
                f"class {top}",
                math.nan,
                0,
                0.0,
                Dependence.independent(1),
            )
        indicator = share.indicator(labels)
        indicator = indicator[np.isfinite(indicator)]
        return dataclasses.replace(
            share,
            rows=int(indicator.size),
            rate=float(indicator.mean()) if indicator.size else 0.0,
            dependence=miss_dependence(indicator),
        )

    def indicator(self, labels: Sequence[Any]) -> FloatArray:
        """``(n,)`` 1.0 where a label is counted, 0.0 where not, NaN where unusable."""
        if self.scoring.task == "regression":
            values = numbers(labels)
            return np.where(np.isnan(values), math.nan, (values > self.cut) * 1.0)
        positive = self.scoring.positive
        texts = [class_text(label) for label in labels]
        return np.array([math.nan if t is None else float(t == positive) for t in texts])

    def limits(self, window_rows: int, level: float) -> tuple[int, int]:
        """Fewest and most counted labels a window of ``window_rows`` may hold without
        surprise at ``level`` (split between the two tails)."""
        depth = -math.log(max(level / 2, 1e-300))
        dependence = self.dependence.tail_equivalent(depth)
        effective = np.array([self.rows / float(dependence.at(max(self.rows, 1))[0])])
        window, tau = np.array([float(window_rows)]), dependence.at(window_rows)
        high = rate_count_isf(level / 2, np.array([self.rate]), effective, window, tau)
        low = rate_count_isf(level / 2, np.array([1.0 - self.rate]), effective, window, tau)
        return window_rows - int(low[0]), int(high[0])


__all__ = [
    "CALIBRATION_BINS",
    "MISS_QUANTILE",
    "LabelShare",
    "PerformanceReference",
    "Scoring",
    "Task",
    "class_text",
    "miss_dependence",
    "numbers",
    "window_metrics",
]
