"""Change detection: is something new happening, while drift from the reference persists?

*Drift* compares live traffic with the version's reference (training data or warm-up) and
stays firing while the traffic is far from it. That says nothing about a second or third
change: the reference never moves. So, per model version, a `RegimeTracker` keeps a second
reference, the *recent regime*:

- **idle** while the reference's windows are clean;
- at the first window in which any reference test alarmed (any column), it **captures**
  the rows that follow, through the end of the first reference window by which it holds
  ``change_reference_events`` of them, as the regime's reference (so the regime's windows
  start where the reference's do);
- then it **tests** every window against that regime with KS (numeric columns) and
  chi-square (categorical), calibrated for the regime with the same budget
  (`monitord.suite.DetectorSuite`); a window that alarms is a
  *change* (its results are published as evaluations of regime ``number``), and the regime
  is captured again from the rows after it, so a k-th change is seen with about the delay of
  the first plus one capture;
- after ``change_clear_windows`` clean reference windows in a row (traffic is back to the
  reference) it drops the regime and is idle again.

Every step is a function of the row stream, so restarts and replays make the same
decisions; the state is part of the version's checkpoint. Whether a change pages, and how
it resolves, is `monitord.policy`'s.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import NonNegativeInt, model_validator

from detectors.detection import Detection, FloatArray, State, sub_state
from detectors.profile import ProfileError, ReferenceProfile, build_profile
from monitord.config import DetectionSettings
from monitord.state import StateModel
from monitord.suite import DetectorSuite, Result

log = logging.getLogger(__name__)

Phase = Literal["idle", "capturing", "testing"]
ADWIN = "adwin"
CHANGE_TESTS = ("ks", "chi2")
RegimeResult = tuple[int, str, tuple[str, ...], Detection]
"""(regime number, its reference's profile id, column names, result)."""


class RegimeState(StateModel):
    """A `RegimeTracker`'s stored state (its captured rows and suite are arrays)."""

    phase: Phase
    number: NonNegativeInt
    start_row: NonNegativeInt
    clean_windows: NonNegativeInt
    suite_start: NonNegativeInt = 0  # absent before regimes counted their suite's rows
    captured_rows: NonNegativeInt
    profile_id: str | None  # the regime's reference while testing

    @model_validator(mode="after")
    def _testing_has_reference(self) -> Self:
        if self.phase == "testing" and not self.profile_id:
            raise ValueError("a regime under test needs its reference (profile_id)")
        return self


class Capture:
    """Rows kept for a reference: ``size`` of them (`take`), or at least ``size`` when the
    caller decides where it ends (`extend`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows = 0
        self._numeric: list[FloatArray] = []
        self._categorical: list[npt.NDArray[np.object_]] = []

    @property
    def complete(self) -> bool:
        return self.rows >= self.size

    def take(self, numeric: FloatArray, categorical: npt.NDArray[np.object_]) -> int:
        """Keep rows until ``size``; return how many of these were kept."""
        taken = min(int(numeric.shape[0]), self.size - self.rows)
        self.extend(numeric[:taken], categorical[:taken])
        return taken

    def extend(self, numeric: FloatArray, categorical: npt.NDArray[np.object_]) -> None:
        """Keep all these rows."""
        if numeric.shape[0]:
            self._numeric.append(numeric)
            self._categorical.append(categorical)
            self.rows += int(numeric.shape[0])

    def profile(
        self,
        model: str,
        version: str,
        names: tuple[tuple[str, ...], tuple[str, ...]],
        n_bins: int,
        max_categories: int = 1000,
    ) -> ReferenceProfile:
        """The captured rows as a reference profile (the capture is emptied)."""
        numeric, categorical = self._arrays()
        self._numeric.clear()
        self._categorical.clear()
        return build_profile(
            model,
            version,
            names[0],
            numeric,
            names[1],
            categorical,
            n_bins,
            max_categories=max_categories,
        )

    def _arrays(self) -> tuple[FloatArray, npt.NDArray[np.object_]]:
        return np.concatenate(self._numeric), np.concatenate(self._categorical)

    def snapshot(self, prefix: str) -> State:
        if not self._numeric:
            return {}
        numeric, categorical = self._arrays()
        missing = categorical == None  # noqa: E711 (elementwise test for None)
        # Object arrays would need pickle: categories are stored as text plus a missing mask.
        return {
            f"{prefix}numeric": numeric,
            f"{prefix}categorical/text": np.where(missing, "", categorical).astype(str),
            f"{prefix}categorical/missing": np.asarray(missing, dtype=np.bool_),
        }

    def restore(self, rows: int, arrays: State, prefix: str) -> None:
        self._numeric.clear()
        self._categorical.clear()
        self.rows = rows
        if f"{prefix}numeric" in arrays:
            categorical = np.asarray(arrays[f"{prefix}categorical/text"]).astype(object)
            categorical[np.asarray(arrays[f"{prefix}categorical/missing"], dtype=np.bool_)] = None
            self._numeric.append(np.asarray(arrays[f"{prefix}numeric"], dtype=np.float64))
            self._categorical.append(categorical)


class RegimeTracker:
    """The recent regime of one model version (see the module docstring)."""

    def __init__(
        self,
        model: str,
        version: str,
        names: tuple[tuple[str, ...], tuple[str, ...]],
        settings: DetectionSettings,
        max_categories: int = 1000,
    ) -> None:
        self.model, self.version, self.names, self.settings = model, version, names, settings
        self.max_categories = max_categories  # per column of a regime's reference
        self.phase: Phase = "idle"
        self.number = 0  # regimes captured so far; results belong to regime `number`
        self.start_row = 0  # version stream row of the regime's first captured row
        self.clean_windows = 0  # reference windows clean in a row
        self.suite_start = 0  # version stream row of the regime suite's row 0
        self.capture = Capture(settings.change_reference_events)
        self.profile: ReferenceProfile | None = None
        self.suite: DetectorSuite | None = None
        # Against the recent regime, the omnibus tests only: KS on numeric columns and
        # chi-square on categorical ones see any change of distribution (PSI on the same
        # columns would double the cost for little); a missing, unseen or out-of-range rate
        # that moves also moves against the reference, and ADWIN keeps no reference at all
        # (its cuts there are already change points).
        self._tests = settings.model_copy(
            update={"detectors": tuple(d for d in settings.detectors if d in CHANGE_TESTS)}
        )

    @property
    def profile_id(self) -> str:
        return "" if self.profile is None else self.profile.profile_id

    def update(
        self,
        numeric: FloatArray,
        categorical: npt.NDArray[np.object_],
        times: FloatArray,
        first_row: int,
        reference: list[Result],
    ) -> list[RegimeResult]:
        """Fold a batch (version stream rows ``first_row`` on) given the reference suite's
        results for it; return the regime's results, rows in the version's stream.

        The regime's suite gets whole stretches of the batch in one call (a call per window
        would cost as much as the tests); the reference's windows are walked in row order
        only where they can change the phase.
        """
        outcomes = _window_outcomes(reference)
        out: list[RegimeResult] = []
        n, position, k = numeric.shape[0], 0, 0
        while position < n or k < len(outcomes):
            if self.phase == "testing":
                # One call up to the window that would end the regime (or the batch's end).
                stop_k = self._clear_index(outcomes, k)
                stop = n if stop_k is None else outcomes[stop_k][0] - first_row + 1
                results, changed = self._test(numeric, categorical, times, position, stop)
                out += results
                if changed is None:
                    stop_k = len(outcomes) - 1 if stop_k is None else stop_k
                    position = stop
                else:  # a change: outcomes up to it count, the next regime starts after it
                    position = changed - first_row + 1
                    stop_k = (
                        next(
                            (i for i in range(k, len(outcomes)) if outcomes[i][0] > changed),
                            len(outcomes),
                        )
                        - 1
                    )
                for i in range(k, stop_k + 1):
                    self._reference_window(*outcomes[i])
                k = stop_k + 1
                continue
            if k < len(outcomes):  # rows up to the next reference window, then that window
                end = outcomes[k][0] - first_row + 1
                self._keep(numeric, categorical, position, end)
                position = end
                self._reference_window(*outcomes[k])
                k += 1
            else:
                self._keep(numeric, categorical, position, n)
                position = n
        return out

    def _keep(
        self, numeric: FloatArray, categorical: npt.NDArray[np.object_], lo: int, hi: int
    ) -> None:
        if self.phase == "capturing" and lo < hi:
            self.capture.extend(numeric[lo:hi], categorical[lo:hi])

    def _reference_window(self, row: int, alarmed: bool) -> None:
        """A reference window closed at ``row``: start, complete, keep or drop the regime.

        A capture completes at the end of the first reference window by which it holds
        ``change_reference_events`` rows, so the regime's windows start where the
        reference's do."""
        self.clean_windows = 0 if alarmed else self.clean_windows + 1
        if self.phase == "idle":
            if alarmed:
                self._recapture(row + 1)
        elif self.clean_windows >= self.settings.change_clear_windows:
            self.phase, self.suite, self.profile = "idle", None, None
            self.capture = Capture(self.settings.change_reference_events)
        elif self.phase == "capturing" and self.capture.complete:
            try:
                self.profile = self.capture.profile(
                    self.model,
                    self.version,
                    self.names,
                    self.settings.psi_bins,
                    self.max_categories,
                )
            except ProfileError as exc:  # e.g. a column without a value in the whole capture
                log.warning(
                    "%s/%s: no recent regime after row %d (%s); the next alarm tries again",
                    self.model,
                    self.version,
                    row,
                    exc,
                )
                self.phase, self.capture = "idle", Capture(self.settings.change_reference_events)
                return
            self.suite = DetectorSuite(self.profile, self._tests)
            self.suite_start = row + 1
            self.phase = "testing"

    def _clear_index(self, outcomes: list[tuple[int, bool]], k: int) -> int | None:
        """Index of the outcome from ``k`` on at which the clean run would end the regime."""
        clean = self.clean_windows
        for i in range(k, len(outcomes)):
            clean = 0 if outcomes[i][1] else clean + 1
            if clean >= self.settings.change_clear_windows:
                return i
        return None

    def _recapture(self, start_row: int) -> None:
        self.phase, self.suite, self.profile, self.start_row = "capturing", None, None, start_row
        self.capture = Capture(self.settings.change_reference_events)
        self.number += 1

    def _test(
        self,
        numeric: FloatArray,
        categorical: npt.NDArray[np.object_],
        times: FloatArray,
        lo: int,
        hi: int,
    ) -> tuple[list[RegimeResult], int | None]:
        """Rows ``lo:hi`` against the regime, up to and with its first change (then the
        next capture starts): the results, and the change's row if there was one."""
        if lo >= hi:
            return [], None
        assert self.suite is not None
        # The regime's suite counts rows from the first one after its capture.
        offset, tag = self.suite_start, (self.number, self.profile_id)
        results: list[RegimeResult] = [
            (*tag, names, _shifted(result, offset))
            for names, result in self.suite.update(numeric[lo:hi], categorical[lo:hi], times[lo:hi])
        ]
        changed = next((r.row for *_, r in results if r.any_drift), None)
        if changed is None:
            return results, None
        self._recapture(changed + 1)
        return [item for item in results if item[3].row <= changed], changed

    def snapshot(self) -> tuple[RegimeState, State]:
        state = RegimeState(
            phase=self.phase,
            number=self.number,
            start_row=self.start_row,
            clean_windows=self.clean_windows,
            suite_start=self.suite_start,
            captured_rows=self.capture.rows,
            profile_id=self.profile_id or None,
        )
        arrays = self.capture.snapshot("capture/")
        if self.suite is not None:
            arrays.update({f"suite/{k}": v for k, v in self.suite.snapshot().items()})
        return state, arrays

    def restore(self, state: RegimeState, arrays: State, profile: ReferenceProfile | None) -> None:
        """Load a `snapshot`; ``profile`` is the regime reference it names (if testing)."""
        self.phase = state.phase
        self.number = state.number
        self.start_row = state.start_row
        self.clean_windows = state.clean_windows
        self.suite_start = state.suite_start
        self.capture = Capture(self.settings.change_reference_events)
        self.capture.restore(state.captured_rows, arrays, "capture/")
        self.profile, self.suite = profile, None
        if self.phase == "testing":
            if profile is None:
                raise ValueError("regime state: testing without its reference")
            self.suite = DetectorSuite(profile, self._tests)
            self.suite.restore(sub_state(arrays, "suite/"))


def changes_testable(profile: ReferenceProfile, settings: DetectionSettings) -> bool:
    """Whether the settings test a column of the profile against a recent regime: KS on a
    numeric column, or chi-square on a categorical one."""
    return ("ks" in settings.detectors and bool(profile.numeric_names)) or (
        "chi2" in settings.detectors and bool(profile.categorical_names)
    )


def _shifted(result: Detection, offset: int) -> Detection:
    return dataclasses.replace(result, first_row=result.first_row + offset, row=result.row + offset)


def _window_outcomes(results: list[Result]) -> list[tuple[int, bool]]:
    """``(row, alarmed)`` of every reference window in row order: alarmed when any window
    test on any column of it drifted (ADWIN cuts fall between windows: they page through
    the policy, but a regime starts and ends on windows)."""
    outcomes: dict[int, bool] = {}
    for _, result in results:
        if result.detector != ADWIN:
            outcomes[result.row] = outcomes.get(result.row, False) or result.any_drift
    return sorted(outcomes.items())


__all__ = [
    "ADWIN",
    "CHANGE_TESTS",
    "Capture",
    "Phase",
    "RegimeResult",
    "RegimeState",
    "RegimeTracker",
    "changes_testable",
]
