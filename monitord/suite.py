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

import numpy as np
import numpy.typing as npt

from detectors.adwin import ADWIN
from detectors.calibration import Calibration, FalseAlarmBudget, WindowPlan, calibrate
from detectors.chi2 import Chi2Test
from detectors.detection import Detection, FloatArray, State, sub_state
from detectors.ks import KSTest
from detectors.profile import ReferenceProfile
from detectors.psi import CategoricalPSITest, PSITest
from detectors.quality import (
    CategoricalMissingRateTest,
    MissingRateTest,
    OutOfRangeTest,
    UnseenRateTest,
    binomial_rate_thresholds,
)
from detectors.window import CountWindow
from detectors.windowed import WindowedDetector, WindowTest
from monitord.config import Detection as DetectionSettings
from monitord.events import PREDICTION

Result = tuple[tuple[str, ...], Detection]


class DetectorSuite:
    """Every detector of one model version; `update` returns ``(column names, result)``."""

    def __init__(self, profile: ReferenceProfile, settings: DetectionSettings) -> None:
        self.profile = profile
        self.settings = settings
        self.calibration, quality_alpha = calibrate_suite(profile, settings)
        numeric, categorical = self._window_tests(quality_alpha)
        p, c = len(profile.numeric_names), len(profile.categorical_names)
        size, step = settings.window_size, settings.step
        self.numeric = WindowedDetector(numeric, CountWindow(p, size, step)) if numeric else None
        self.categorical = (
            WindowedDetector(categorical, CountWindow(c, size, step, dtype=np.int64))
            if categorical
            else None
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
            ADWIN(len(self._adwin_columns), delta=settings.adwin_delta)
            if self._adwin_columns and "adwin" in settings.detectors
            else None
        )

    def _window_tests(self, quality_alpha: float) -> tuple[list[WindowTest], list[WindowTest]]:
        profile, cal, size = self.profile, self.calibration, self.settings.window_size
        p, c = len(profile.numeric_names), len(profile.categorical_names)
        numeric: list[WindowTest] = []
        categorical: list[WindowTest] = []
        if cal is not None and cal.ks is not None and p:
            numeric.append(KSTest(profile.sorted_sample, cal.ks))
        if cal is not None and cal.psi is not None and p:
            numeric.append(PSITest(profile.bin_edges, profile.bin_fractions, cal.psi))
        if cal is not None and cal.chi2 is not None and c:
            categorical.append(Chi2Test(profile.category_counts, cal.chi2))
        if cal is not None and cal.psi_categorical is not None and c:
            categorical.append(CategoricalPSITest(profile.category_counts, cal.psi_categorical))
        if "quality" in self.settings.detectors:

            def rate(reference: FloatArray) -> FloatArray:
                return binomial_rate_thresholds(reference, size, quality_alpha)

            # A value outside the reference range is, by construction, about a 1/n event.
            unlikely = 1.0 / profile.n_rows
            if p:
                numeric.append(MissingRateTest(rate(profile.numeric_missing_rate)))
                numeric.append(
                    OutOfRangeTest(
                        profile.numeric_min, profile.numeric_max, rate(np.full(p, unlikely))
                    )
                )
            if c:
                categorical.append(
                    CategoricalMissingRateTest(rate(profile.categorical_missing_rate))
                )
                categorical.append(UnseenRateTest(profile.n_categories, rate(np.full(c, unlikely))))
        return numeric, categorical

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
        results.sort(key=lambda item: item[1].row)  # stable: window tests keep their order
        return results

    def _parts(self) -> dict[str, WindowedDetector | ADWIN | None]:
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


DISTRIBUTION_TESTS = ("ks", "psi", "chi2")


def calibrate_suite(
    profile: ReferenceProfile, settings: DetectionSettings
) -> tuple[Calibration | None, float]:
    """Calibrated distribution tests, and the per-test level of each quality rate."""
    p, c = len(profile.numeric_names), len(profile.categorical_names)
    columns = {"ks": p, "psi": p + c, "chi2": c}
    chosen = [t for t in DISTRIBUTION_TESTS if t in settings.detectors and columns[t]]
    distribution = sum(columns[t] for t in chosen)
    quality = 2 * (p + c) if "quality" in settings.detectors else 0
    total = max(distribution + quality, 1)
    quality_alpha = settings.step / settings.false_alarm_budget_events / total
    if not distribution:
        return None, quality_alpha
    calibration = calibrate(
        profile,
        WindowPlan(settings.window_size, settings.step),
        # The distribution tests' share of the budget, as a budget of their own.
        FalseAlarmBudget(settings.false_alarm_budget_events * total / distribution),
        tests=chosen,
    )
    return calibration, quality_alpha
