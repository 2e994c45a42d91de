"""The detector suite of one model version: which tests run, on which columns, at what
thresholds.

Numeric columns (features and a numeric prediction) share one window for their window
tests (KS, PSI, missing and out-of-range rates), categorical columns another (chi-square,
PSI, missing and unseen rates); ADWIN runs per value on the prediction (or every numeric
column). Thresholds come from the false-alarm budget, so the model as a whole, not each
feature, meets it: see `thresholds`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from detectors.adwin import ADWIN
from detectors.chi2 import Chi2Test
from detectors.detection import Detection, FloatArray
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
        enabled = set(settings.detectors)
        p, c = len(profile.numeric_names), len(profile.categorical_names)
        alpha = per_test_alpha(profile, settings)
        n = settings.window_size
        numeric: list[WindowTest] = []
        categorical: list[WindowTest] = []
        if p and "ks" in enabled:
            numeric.append(KSTest(profile.sorted_sample, ks_thresholds(profile, n, alpha)))
        if p and "psi" in enabled:
            numeric.append(
                PSITest(profile.bin_edges, profile.bin_fractions, psi_thresholds(profile, n, alpha))
            )
        if c and "psi" in enabled:
            categorical.append(
                CategoricalPSITest(
                    profile.category_counts, categorical_psi_thresholds(profile, n, alpha)
                )
            )
        if c and "chi2" in enabled:
            categorical.append(Chi2Test(profile.category_counts, chi2_thresholds(profile, alpha)))
        if "quality" in enabled:
            if p:
                numeric.append(
                    MissingRateTest(
                        binomial_rate_thresholds(profile.numeric_missing_rate, n, alpha)
                    )
                )
                numeric.append(
                    OutOfRangeTest(
                        profile.numeric_min,
                        profile.numeric_max,
                        binomial_rate_thresholds(np.full(p, 1.0 / profile.n_rows), n, alpha),
                    )
                )
            if c:
                categorical.append(
                    CategoricalMissingRateTest(
                        binomial_rate_thresholds(profile.categorical_missing_rate, n, alpha)
                    )
                )
                categorical.append(
                    UnseenRateTest(
                        profile.n_categories,
                        binomial_rate_thresholds(np.full(c, 1.0 / profile.n_rows), n, alpha),
                    )
                )
        step = settings.step
        self.numeric = WindowedDetector(numeric, CountWindow(p, n, step)) if numeric else None
        self.categorical = (
            WindowedDetector(categorical, CountWindow(c, n, step, dtype=np.int64))
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
            if self._adwin_columns and "adwin" in enabled
            else None
        )

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


def per_test_alpha(profile: ReferenceProfile, settings: DetectionSettings) -> float:
    """False-alarm probability allowed to one test of one column in one evaluation.

    The budget gives ``step / budget`` expected false alarms per evaluation for the whole
    model; a Bonferroni split over every (test, column) pair keeps the sum within it
    whatever the correlation between columns (conservative where they are correlated).
    """
    p, c = len(profile.numeric_names), len(profile.categorical_names)
    enabled = set(settings.detectors)
    n_tests = p * (("ks" in enabled) + ("psi" in enabled) + 2 * ("quality" in enabled)) + c * (
        ("psi" in enabled) + ("chi2" in enabled) + 2 * ("quality" in enabled)
    )
    return settings.step / settings.false_alarm_budget_events / max(n_tests, 1)


def ks_thresholds(profile: ReferenceProfile, window: int, alpha: float) -> FloatArray:
    """Asymptotic two-sample Kolmogorov quantile at ``alpha`` for each column's sizes."""
    n_ref = profile.sample_sizes.astype(np.float64)
    effective = np.round(n_ref * window / (n_ref + window))
    return np.asarray(stats.kstwo.isf(alpha, np.maximum(effective, 1)), dtype=np.float64)


def psi_thresholds(profile: ReferenceProfile, window: int, alpha: float) -> FloatArray:
    """PSI is asymptotically ``(1/n + 1/m) * chi2(b - 1)`` under no change (symmetric KL)."""
    bins = profile.bin_fractions.shape[1]
    scale = 1.0 / window + 1.0 / np.maximum(profile.sample_sizes, 1)
    return np.asarray(scale * stats.chi2.isf(alpha, bins - 1), dtype=np.float64)


def categorical_psi_thresholds(profile: ReferenceProfile, window: int, alpha: float) -> FloatArray:
    totals = np.array([counts.sum() for counts in profile.category_counts], dtype=np.float64)
    dof = np.maximum(profile.n_categories, 1)  # categories plus unseen, minus one
    return np.asarray((1.0 / window + 1.0 / np.maximum(totals, 1)) * stats.chi2.isf(alpha, dof))


def chi2_thresholds(profile: ReferenceProfile, alpha: float) -> FloatArray:
    return np.asarray(stats.chi2.isf(alpha, np.maximum(profile.n_categories, 1)), dtype=np.float64)
