"""The detector suite of one model version: which tests run, on which columns, at what
thresholds.

Numeric columns (features and a numeric prediction) share one window for their window
tests (KS, PSI, missing and out-of-range rates), categorical columns another (chi-square,
PSI, missing and unseen rates); ADWIN runs per value on the prediction (or every numeric
column).

Thresholds come from the false-alarm budget, so the model as a whole, not each feature,
meets it: per evaluation ``step / budget`` expected false alarms, shared by every (test,
column) pair in proportion to their number. The distribution tests (KS, PSI, chi-square)
take their share through `detectors.calibration` (bootstrap of whole reference rows,
correlation-aware); each quality rate takes ``1 / M`` of it with a binomial threshold.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from detectors.block_means import BlockMeanADWIN
from detectors.calibration import Calibration, FalseAlarmBudget, WindowPlan, calibrate
from detectors.chi2 import Chi2Test
from detectors.dependence import Dependence
from detectors.detection import (
    Detection,
    FloatArray,
    Limits,
    SizedThresholds,
    State,
    sub_state,
)
from detectors.ks import KSTest
from detectors.nulls import INDEPENDENT
from detectors.profile import ReferenceProfile
from detectors.psi import CategoricalPSITest, PSITest
from detectors.quality import (
    CategoricalMissingRateTest,
    MissingRateTest,
    OutOfRangeTest,
    UnseenRateTest,
)
from detectors.window import CountWindow, HybridWindow, Window
from detectors.window_detector import WindowedDetector, WindowTest
from monitord.config import DetectionSettings
from monitord.events import PREDICTION

Result = tuple[tuple[str, ...], Detection]
ADWIN_NAME = "adwin"


class DetectorSuite:
    """Every detector of one model version; `update` returns ``(column names, result)``."""

    def __init__(
        self,
        profile: ReferenceProfile,
        settings: DetectionSettings,
        calibrated: tuple[Calibration | None] | None = None,
    ) -> None:
        """``calibrated``: `calibrate_suite`'s result for ``profile`` and ``settings`` if
        it was made elsewhere (a worker process), in a one-tuple; else it is made here."""
        self.profile = profile
        self.settings = settings
        if calibrated is None:
            calibrated = (calibrate_suite(profile, settings),)
        self.calibration = calibrated[0]
        numeric, categorical = self._window_tests()
        p, c = len(profile.numeric_names), len(profile.categorical_names)
        self.numeric = WindowedDetector(numeric, window(p, settings)) if numeric else None
        self.categorical = (
            WindowedDetector(categorical, window(c, settings, np.int64)) if categorical else None
        )
        # ADWIN watches the prediction by default: per-feature mean shifts are the window
        # tests' job, and ADWIN on heavy-tailed features cuts again and again after a drift.
        names = profile.numeric_names
        self._adwin_columns = (
            [j for j, name in enumerate(names) if name == PREDICTION]
            if settings.adwin_columns == "prediction"
            else list(range(p))
        )
        self.adwin = (
            BlockMeanADWIN(
                len(self._adwin_columns),
                block=adwin_block(self.dependence, self._adwin_columns),
                delta=settings.adwin_delta,
            )
            if self._adwin_columns and "adwin" in settings.detectors
            else None
        )

    @property
    def dependence(self) -> Dependence:
        """The serial dependence the thresholds assumed (the profile's, without window tests)."""
        if self.calibration is None:
            return self.profile.dependence
        return self.calibration.dependence

    @property
    def has_window_tests(self) -> bool:
        return self.numeric is not None or self.categorical is not None

    def _window_tests(self) -> tuple[list[WindowTest], list[WindowTest]]:
        profile = self.profile
        p, c = len(profile.numeric_names), len(profile.categorical_names)
        limits = self._limits
        numeric: list[WindowTest] = []
        categorical: list[WindowTest] = []
        if (ks := limits("ks", p)) is not None:
            numeric.append(KSTest(profile.sorted_sample, ks))
        if (psi := limits("psi", p)) is not None:
            numeric.append(PSITest(profile.bin_edges, profile.bin_fractions, psi))
        if (chi2 := limits("chi2", c)) is not None:
            categorical.append(Chi2Test(profile.category_counts, chi2))
        if (psi_categorical := limits("psi_categorical", c)) is not None:
            categorical.append(CategoricalPSITest(profile.category_counts, psi_categorical))
        if (missing := limits("missing", p)) is not None:
            numeric.append(MissingRateTest(missing))
        if (outside := limits("out_of_range", p)) is not None:
            numeric.append(OutOfRangeTest(profile.numeric_min, profile.numeric_max, outside))
        if (missing_categorical := limits("missing_categorical", c)) is not None:
            categorical.append(CategoricalMissingRateTest(missing_categorical))
        if (unseen := limits("unseen", c)) is not None:
            categorical.append(UnseenRateTest(profile.n_categories, unseen))
        return numeric, categorical

    def _limits(self, test: str, columns: int) -> Limits | None:
        """A test's thresholds: fixed for count windows, per window size for windows that
        close by event time; None where the test is off or has no column."""
        if self.calibration is None:
            return None
        fixed: FloatArray | None = getattr(self.calibration.thresholds, test)
        if fixed is None or not columns:
            return None
        if self.settings.closing_seconds is None:
            return fixed
        calibration = self.calibration

        def at(rows: int) -> FloatArray:  # the calibration exists: `fixed` came from it
            sized: FloatArray | None = getattr(calibration.at(rows), test)
            assert sized is not None  # the same tests at every size
            return sized

        return SizedThresholds(columns, at)

    def update(
        self, numeric: FloatArray, categorical: npt.NDArray[np.object_], times: FloatArray
    ) -> list[Result]:
        """Fold one batch of a model version into every detector; results ordered by row."""
        results: list[Result] = []
        if self.numeric is not None:
            names = self.profile.numeric_names
            results += [(names, d) for d in self.numeric.update(numeric, times)]
        if self.categorical is not None:
            codes = self.profile.encode_categories(categorical)
            names = self.profile.categorical_names
            results += [(names, d) for d in self.categorical.update(codes, times)]
        if self.adwin is not None:
            columns = tuple(self.profile.numeric_names[j] for j in self._adwin_columns)
            batch = np.ascontiguousarray(numeric[:, self._adwin_columns])
            results += [(columns, d) for d in self.adwin.update(batch)]
        # By row, an ADWIN cut before the windows closing at its row: a window that closes by
        # event time is only emitted with a later row, never before the cut (whatever the
        # batches), so this order is the stream's. Stable: window tests keep their order.
        results.sort(key=lambda item: (item[1].row, item[1].detector != ADWIN_NAME))
        return results

    @property
    def late_rows(self) -> int:
        """Rows out of order by more than ``window_seconds`` so far (windows closing by time)."""
        detector = self.numeric or self.categorical
        window = None if detector is None else detector.window
        return window.late_rows if isinstance(window, HybridWindow) else 0

    def _parts(self) -> dict[str, WindowedDetector | BlockMeanADWIN | None]:
        return {"numeric": self.numeric, "categorical": self.categorical, "adwin": self.adwin}

    def snapshot(self) -> State:
        """Every detector's state, names prefixed by the detector (``numeric/rows``, ...)."""
        return {
            f"{name}/{key}": value
            for name, part in self._parts().items()
            if part is not None
            for key, value in part.snapshot().items()
        }

    def restore(self, state: State) -> None:
        """Load a `snapshot` taken from a suite built with the same profile and settings."""
        for name, part in self._parts().items():
            if part is not None:
                part.restore(sub_state(state, f"{name}/"))


QUALITY_TESTS = ("missing", "out_of_range", "unseen")


def window(columns: int, settings: DetectionSettings, dtype: type = np.float64) -> Window:
    """The window of the settings: count windows, or hybrid ones when windows also close
    after ``window_seconds`` of event time."""
    if settings.closing_seconds is None:
        return CountWindow(columns, settings.window_size, settings.step, dtype=dtype)
    return HybridWindow(
        columns, settings.window_size, settings.closing_seconds, settings.min_rows, dtype
    )


def adwin_block(dependence: Dependence, columns: list[int]) -> int:
    """Rows per ADWIN block: twice the largest long-run inflation of ``columns`` (as the
    calibration assumed it, widened by its uncertainty), or 1 for columns without serial
    dependence (`detectors.block_means`)."""
    inflation = float(dependence.inflation[columns, -1].max()) if columns else 1.0
    return 1 if inflation <= INDEPENDENT else math.ceil(2.0 * inflation)


def calibrate_suite(profile: ReferenceProfile, settings: DetectionSettings) -> Calibration | None:
    """Thresholds of every window test the settings turn on that applies to the profile's
    columns, from one false-alarm budget (None: no window test applies, e.g. only chi-square
    on a model without categorical columns)."""
    numeric, categorical = bool(profile.numeric_names), bool(profile.categorical_names)
    applies = {
        "ks": numeric,
        "psi": numeric or categorical,
        "chi2": categorical,
        "missing": numeric or categorical,
        "out_of_range": numeric,
        "unseen": categorical,
    }
    tests: list[str] = [t for t in ("ks", "psi", "chi2") if t in settings.detectors]
    if "quality" in settings.detectors:
        tests += QUALITY_TESTS
    tests = [t for t in tests if applies[t]]
    if not tests:
        return None
    return calibrate(
        profile,
        WindowPlan(settings.window_size, settings.step),
        FalseAlarmBudget(settings.false_alarm_budget_events),
        tests=tests,
    )


__all__ = [
    "ADWIN_NAME",
    "QUALITY_TESTS",
    "DetectorSuite",
    "Result",
    "adwin_block",
    "calibrate_suite",
    "window",
]
