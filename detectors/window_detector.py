"""`WindowedDetector`: one window shared by several stateless window tests.

A window test (KS, PSI, chi-square, data quality) compares one complete window with the
reference and keeps no state of its own, so the detector's whole state is its window. One
window feeds all tests of a column group, so a batch is copied once, not once per test.

A test that can run without the GIL may also offer ``start`` (`BackgroundWindowTest`): it
reads the window at once and finishes on a worker thread while the other tests of the batch
run; results come back in the same order as with ``evaluate``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from detectors.detection import Detection, FloatArray, Limits, State, check_batch, limits_for
from detectors.window import Window, WindowView


def window_detection(
    name: str,
    window: WindowView,
    statistic: FloatArray,
    limits: Limits,
    n_observed: npt.NDArray[np.integer],
    p_value: FloatArray | None = None,
) -> Detection:
    """The result of a window test: a feature drifts where its statistic exceeds its
    threshold for the window's size (a NaN statistic, from a feature with no observed
    value, never does)."""
    thresholds = limits_for(limits, window.rows.shape[0])
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


IN_FLIGHT_WINDOWS = 4
"""Windows whose started tests may be unfinished at once (each holds a copy of its rows)."""


@runtime_checkable
class BackgroundWindowTest(Protocol):
    """A window test whose work can run on another thread."""

    def start(self, window: WindowView) -> Callable[[], Detection]:
        """Read ``window`` now (its rows change once the window moves on) and begin the
        test; the returned callable waits for the result (the `evaluate` result)."""
        ...


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
        self._starts = [t.start if isinstance(t, BackgroundWindowTest) else None for t in tests]
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
        results: list[Detection] = []
        pending: deque[Callable[[], Detection]] = deque()
        in_flight = IN_FLIGHT_WINDOWS * len(self.tests)
        for view in self.window.extend(batch, event_times):
            for test, start in zip(self.tests, self._starts, strict=True):
                pending.append(_done(test.evaluate(view)) if start is None else start(view))
            while len(pending) > in_flight:  # a started test holds a copy of its window
                results.append(pending.popleft()())
        results += [result() for result in pending]
        return results

    def snapshot(self) -> State:
        return self.window.snapshot()

    def restore(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        self.window.restore(state)

    def reset(self) -> None:
        self.window.reset()


def _done(detection: Detection) -> Callable[[], Detection]:
    return lambda: detection


__all__ = [
    "IN_FLIGHT_WINDOWS",
    "BackgroundWindowTest",
    "WindowTest",
    "WindowedDetector",
    "window_detection",
]
