"""Statistical core of monitord: reference profiles, windows and drift detectors.

numpy/scipy (and numba-compiled kernels) only; no I/O. Every detector updates all features
of an ``(n_rows, n_features)`` batch in one call and shares the surface ``update``,
``snapshot``, ``restore``, ``reset``.
"""

from detectors.detection import Detection, DetectorInputError, State
from detectors.ks import KSTest, ks_statistic
from detectors.profile import ProfileError, ReferenceProfile, build_profile
from detectors.window import CountWindow, EventTimeWindow, WindowView
from detectors.windowed import WindowedDetector, WindowTest

__all__ = [
    "CountWindow",
    "Detection",
    "DetectorInputError",
    "EventTimeWindow",
    "KSTest",
    "ProfileError",
    "ReferenceProfile",
    "State",
    "WindowTest",
    "WindowView",
    "WindowedDetector",
    "build_profile",
    "ks_statistic",
]
