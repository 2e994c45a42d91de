"""`WindowedDetector`: one window shared by several stateless window tests.

A window test (KS, PSI, chi-square, data quality) compares one complete window with the
reference and keeps no state of its own, so the detector's whole state is its window. One
window feeds all tests of a column group, so a batch is copied once, not once per test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from detectors.detection import Detection, FloatArray, State, check_batch
from detectors.window import Window, WindowView


def window_detection(
    name: str,
    window: WindowView,
    statistic: FloatArray,
    thresholds: FloatArray,
    n_observed: npt.NDArray[np.integer],
    p_value: FloatArray | None = None,
) -> Detection:
    """The result of a window test: a feature drifts where its statistic exceeds its
    threshold (a NaN statistic, from a feature with no observed value, never does)."""
    return Detection(
        detector=name,
        first_row=window.first_row,
        row=window.last_row,
        statistic=statistic,
        threshold=thresholds,
        drifted=statistic > thresholds,
        p_value=p_value,
        n_observed=np.asarray(n_observed, dtype=np.int64),
    )


class WindowTest(Protocol):
    """A stateless test of one window against a reference."""

    name: str
    n_features: int
    dtype_kind: str  # "f" numeric float64 rows, "i" integer category codes

    def evaluate(self, window: WindowView) -> Detection: ...


class WindowedDetector:
    """Feeds batches into ``window`` and runs every test on each window it completes."""

    def __init__(self, tests: Sequence[WindowTest], window: Window) -> None:
        if not tests:
            raise ValueError("tests: pass at least one window test")
        kinds = {t.dtype_kind for t in tests}
        widths = {t.n_features for t in tests}
        if len(kinds) != 1 or len(widths) != 1:
            raise ValueError("tests: all tests of one detector must share dtype and features")
        self.tests = tuple(tests)
        self.name = "+".join(t.name for t in tests)
        self._kind = kinds.pop()
        self._n_features = widths.pop()
        self.window = window

    @property
    def n_features(self) -> int:
        return self._n_features

    @property
    def rows_seen(self) -> int:
        return self.window.rows_seen

    def update(
        self, batch: npt.NDArray[np.generic], event_times: FloatArray | None = None
    ) -> list[Detection]:
        check_batch(batch, self._n_features, self._kind)
        return [
            test.evaluate(view)
            for view in self.window.extend(batch, event_times)
            for test in self.tests
        ]

    def snapshot(self) -> State:
        return self.window.snapshot()

    def restore(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        self.window.restore(state)

    def reset(self) -> None:
        self.window.reset()
