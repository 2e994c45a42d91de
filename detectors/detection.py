"""What every detector returns and how its state is carried: `Detection`, `State`, `Detector`.

Rows are counted per detector stream: the first row a detector ever sees (since construction
or `reset()`) is row 0, so `Detection.row` is a stable position that a caller maps back to a
Kafka offset or a file row. State is a flat mapping of names to numpy arrays so it can be
written with `numpy.savez` (no pickle) and read back from an untrusted place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

State = dict[str, npt.NDArray[np.generic]]
"""A detector snapshot: array name -> array (scalars as 0-d arrays). Never pickled."""


def sub_state(state: Mapping[str, npt.NDArray[np.generic]], prefix: str) -> State:
    """The entries of ``state`` under ``prefix`` (e.g. ``"adwin/"``), with it stripped."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@dataclass(frozen=True, eq=False)
class Detection:
    """One evaluation of a test over all features of a detector.

    Windowed tests (KS, PSI, chi-square, quality) produce one per completed window; ADWIN
    produces one per row at which at least one feature's window was cut.

    Attributes:
        detector: short name of the test, e.g. ``"ks"``.
        first_row: first stream row the evaluation covers (inclusive).
        row: stream row whose arrival produced this evaluation (inclusive end).
        statistic: ``(n_features,)`` value of the test statistic.
        threshold: ``(n_features,)`` value above which a feature counts as drifted
            (NaN where the test decides without a threshold, e.g. ADWIN).
        drifted: ``(n_features,)`` True where the feature drifted.
        p_value: ``(n_features,)`` p-values where the test defines one, else None.
        n_observed: ``(n_features,)`` non-missing values the evaluation used per feature.
    """

    detector: str
    first_row: int
    row: int
    statistic: FloatArray
    threshold: FloatArray
    drifted: BoolArray
    p_value: FloatArray | None
    n_observed: IntArray

    @property
    def any_drift(self) -> bool:
        return bool(self.drifted.any())


class Detector(Protocol):
    """The surface every detector shares (see the contract tests in tests/detectors)."""

    name: str

    @property
    def n_features(self) -> int: ...

    @property
    def rows_seen(self) -> int: ...

    def update(self, batch: npt.NDArray[np.generic]) -> list[Detection]:
        """Fold a ``(n_rows, n_features)`` batch into state; return evaluations it completed."""
        ...

    def snapshot(self) -> State: ...

    def restore(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None: ...

    def reset(self) -> None: ...


class DetectorInputError(ValueError):
    """A batch of the wrong shape, dtype or size was passed to `update`."""


def check_batch(batch: npt.NDArray[np.generic], n_features: int, kind: str) -> None:
    """Raise `DetectorInputError` unless ``batch`` is a non-empty 2-D array of the right kind.

    ``kind`` is ``"f"`` for float64 numeric batches and ``"i"`` for integer category codes.
    """
    if not isinstance(batch, np.ndarray):
        raise DetectorInputError(f"expected a numpy array, got {type(batch).__name__}")
    if batch.ndim != 2 or batch.shape[1] != n_features:
        raise DetectorInputError(
            f"expected a batch of shape (n_rows, {n_features}), got {batch.shape}"
        )
    if batch.shape[0] == 0:
        raise DetectorInputError("empty batch: pass at least one row")
    if kind == "f" and batch.dtype != np.float64:
        raise DetectorInputError(f"expected float64 values, got {batch.dtype}; use astype")
    if kind == "i" and batch.dtype.kind not in "iu":
        raise DetectorInputError(f"expected integer category codes, got {batch.dtype}")


def read_only(array: FloatArray) -> FloatArray:
    # Every Detection shares these arrays: freeze them so no consumer can edit the next one.
    frozen = np.array(array, dtype=np.float64)
    frozen.setflags(write=False)
    return frozen


@dataclass(frozen=True, eq=False)
class SizedThresholds:
    """Per-feature thresholds that depend on how many rows a window holds (windows that
    close by event time): ``at(rows)`` returns the ``(n_features,)`` array for that size."""

    n_features: int
    at: Callable[[int], FloatArray]

    @property
    def shape(self) -> tuple[int]:
        return (self.n_features,)


Limits = FloatArray | SizedThresholds
"""A window test's thresholds: one array for every window, or one per window size."""


def limits_for(limits: Limits, rows: int) -> FloatArray:
    """The ``(n_features,)`` thresholds that apply to a window of ``rows`` rows."""
    return limits.at(rows) if isinstance(limits, SizedThresholds) else limits


def check_thresholds(thresholds: npt.ArrayLike | SizedThresholds, n_features: int) -> Limits:
    """Validate ``(n_features,)`` per-feature thresholds; return a read-only float64 copy
    (a `SizedThresholds` of the right width is returned as it is)."""
    if isinstance(thresholds, SizedThresholds):
        if thresholds.n_features != n_features:
            raise ValueError(
                f"thresholds: expected {n_features} features, got {thresholds.n_features}"
            )
        return thresholds
    values = np.asarray(thresholds, dtype=np.float64)
    if values.shape != (n_features,):
        raise ValueError(
            f"thresholds: expected shape ({n_features},), one per feature, got {values.shape}"
        )
    return read_only(values)


__all__ = [
    "BoolArray",
    "Detection",
    "Detector",
    "DetectorInputError",
    "FloatArray",
    "IntArray",
    "Limits",
    "SizedThresholds",
    "State",
    "check_batch",
    "check_thresholds",
    "limits_for",
    "read_only",
    "sub_state",
]
