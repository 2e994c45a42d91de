"""Statistical core of monitord: reference profiles, windows and drift detectors.

numpy/scipy (and numba-compiled kernels) only; no I/O. Every detector updates all features
of an ``(n_rows, n_features)`` batch in one call and shares the surface ``update``,
``snapshot``, ``restore``, ``reset``.
"""

from detectors.adwin import ADWIN
from detectors.buckets import CategoryBuckets
from detectors.chi2 import Chi2Test, chi2_statistic
from detectors.detection import Detection, DetectorInputError, State
from detectors.ks import KSTest, ks_pvalues, ks_statistic
from detectors.profile import ProfileError, ReferenceProfile, build_profile
from detectors.psi import CategoricalPSITest, PSITest, psi_categorical, psi_numeric
from detectors.quality import (
    CategoricalMissingRateTest,
    MissingRateTest,
    OutOfRangeTest,
    UnseenRateTest,
    binomial_rate_thresholds,
)
from detectors.window import CountWindow, EventTimeWindow, WindowView
from detectors.window_detector import WindowedDetector, WindowTest

__all__ = [
    "ADWIN",
    "CategoricalMissingRateTest",
    "CategoricalPSITest",
    "CategoryBuckets",
    "Chi2Test",
    "CountWindow",
    "Detection",
    "DetectorInputError",
    "EventTimeWindow",
    "KSTest",
    "MissingRateTest",
    "OutOfRangeTest",
    "PSITest",
    "ProfileError",
    "ReferenceProfile",
    "State",
    "UnseenRateTest",
    "WindowTest",
    "WindowView",
    "WindowedDetector",
    "binomial_rate_thresholds",
    "build_profile",
    "chi2_statistic",
    "ks_pvalues",
    "ks_statistic",
    "psi_categorical",
    "psi_numeric",
]
