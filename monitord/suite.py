"""The detector suite of one model version: which tests run, on which columns, at what
thresholds.

Numeric columns (features and a numeric prediction) share one window for their window
tests, categorical columns another; ADWIN runs per value on the numeric columns. Thresholds
come from the false-alarm budget (`Detection.false_alarm_budget_events`), so the model as a
whole, not each feature, meets it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats

from detectors.adwin import ADWIN
from detectors.detection import Detection, FloatArray
from detectors.ks import KSTest
from detectors.profile import ReferenceProfile
from detectors.window import CountWindow
from detectors.windowed import WindowedDetector, WindowTest
from monitord.config import Detection as DetectionSettings
from monitord.events import PREDICTION


class DetectorSuite:
    """Every detector of one model version; `update` returns ``(feature names, result)``."""

    def __init__(self, profile: ReferenceProfile, settings: DetectionSettings) -> None:
        self.profile = profile
        self.settings = settings
        enabled = set(settings.detectors)
        numeric_tests: list[WindowTest] = []
        p = len(profile.numeric_names)
        if p and "ks" in enabled:
            numeric_tests.append(KSTest(profile.sorted_sample, _ks_thresholds(profile, settings)))
        self.numeric = (
            WindowedDetector(numeric_tests, CountWindow(p, settings.window_size, settings.step))
            if numeric_tests
            else None
        )
        # ADWIN watches the prediction by default: per-feature mean shifts are the window
        # tests' job, and ADWIN on heavy-tailed features cuts again and again after a drift.
        names = profile.numeric_names
        self._adwin_columns = (
            [j for j, n in enumerate(names) if n == PREDICTION]
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
    ) -> list[tuple[tuple[str, ...], Detection]]:
        """Fold one batch of a model version into every detector; results ordered by row."""
        del categorical  # categorical tests arrive with the chi-square/PSI detectors
        results: list[tuple[tuple[str, ...], Detection]] = []
        names = self.profile.numeric_names
        if self.numeric is not None:
            results += [(names, d) for d in self.numeric.update(numeric, times)]
        if self.adwin is not None:
            columns = tuple(names[j] for j in self._adwin_columns)
            results += [(columns, d) for d in self.adwin.update(numeric[:, self._adwin_columns])]
        results.sort(key=lambda item: item[1].row)
        return results


def _ks_thresholds(profile: ReferenceProfile, settings: DetectionSettings) -> FloatArray:
    # Interim: Bonferroni over features at the per-evaluation level step / budget, using the
    # asymptotic two-sample Kolmogorov distribution; replaced by bootstrap calibration.
    n_ref = profile.sample_sizes.astype(np.float64)
    n_win = float(settings.window_size)
    alpha = settings.step / settings.false_alarm_budget_events / max(len(n_ref), 1)
    effective = np.round(n_ref * n_win / (n_ref + n_win))
    return np.asarray(stats.kstwo.isf(alpha, effective), dtype=np.float64)
