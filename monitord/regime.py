"""Change detection: is something new happening, while drift from the reference persists?

*Drift* compares live traffic with the version's reference (training data or warm-up) and
stays firing while the traffic is far from it. That says nothing about a second or third
change: the reference never moves. So, per model version, a `RegimeTracker` keeps a second
reference, the *recent regime*:

- **idle** while the reference's windows are clean;
- at the first window in which any reference test alarmed (any column; an ADWIN cut counts),
  it **captures** the next ``change_reference_events`` rows as the regime's reference;
- then it **tests** every window against that regime with the same calibrated suite and
  budget as the reference (`monitord.suite.DetectorSuite`); a window that alarms is a
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
from collections.abc import Iterator
from typing import Literal

import numpy as np
import numpy.typing as npt

from detectors.detection import Detection, FloatArray, State, sub_state
from detectors.profile import ReferenceProfile, build_profile
from monitord.config import Detection as DetectionSettings
from monitord.suite import DetectorSuite, Result

Phase = Literal["idle", "capturing", "testing"]
RegimeResult = tuple[int, str, tuple[str, ...], Detection]
"""(regime number, its reference's profile id, column names, result)."""


class Capture:
    """Rows kept until a reference of ``size`` rows is complete (warm-up and regimes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows = 0
        self._numeric: list[FloatArray] = []
        self._categorical: list[npt.NDArray[np.object_]] = []

    @property
    def complete(self) -> bool:
        return self.rows == self.size

    def take(self, numeric: FloatArray, categorical: npt.NDArray[np.object_]) -> int:
        """Keep rows until complete; return how many of these were kept."""
        taken = min(int(numeric.shape[0]), self.size - self.rows)
        if taken:
            self._numeric.append(numeric[:taken])
            self._categorical.append(categorical[:taken])
            self.rows += taken
        return taken

    def profile(
        self,
        model: str,
        version: str,
        names: tuple[tuple[str, ...], tuple[str, ...]],
        n_bins: int,
    ) -> ReferenceProfile:
        """The captured rows as a reference profile (the capture is emptied)."""
        numeric, categorical = self._arrays()
        self._numeric.clear()
        self._categorical.clear()
        return build_profile(model, version, names[0], numeric, names[1], categorical, n_bins)

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
    ) -> None:
        self.model, self.version, self.names, self.settings = model, version, names, settings
        self.phase: Phase = "idle"
        self.number = 0  # regimes captured so far; results belong to regime `number`
        self.start_row = 0  # version stream row of the regime's first captured row
        self.clean_windows = 0  # reference windows clean in a row
        self.capture = Capture(settings.change_reference_events)
        self.profile: ReferenceProfile | None = None
        self.suite: DetectorSuite | None = None

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
        results for it; return the regime's results, rows in the version's stream."""
        out: list[RegimeResult] = []
        position = 0
        for row, alarmed in _window_outcomes(reference):
            end = row - first_row + 1
            out += self._rows(numeric, categorical, times, first_row, position, end)
            position = end
            self._reference_window(row, alarmed)
        out += self._rows(numeric, categorical, times, first_row, position, numeric.shape[0])
        return out

    def _reference_window(self, row: int, alarmed: bool) -> None:
        """A reference window closed at ``row``: start, keep or drop the regime."""
        self.clean_windows = 0 if alarmed else self.clean_windows + 1
        if self.phase == "idle" and alarmed:
            self._recapture(row + 1)
        elif self.phase != "idle" and self.clean_windows >= self.settings.change_clear_windows:
            self.phase, self.suite, self.profile = "idle", None, None
            self.capture = Capture(self.settings.change_reference_events)

    def _recapture(self, start_row: int) -> None:
        self.phase, self.suite, self.start_row = "capturing", None, start_row
        self.capture = Capture(self.settings.change_reference_events)
        self.number += 1

    def _rows(
        self,
        numeric: FloatArray,
        categorical: npt.NDArray[np.object_],
        times: FloatArray,
        first_row: int,
        lo: int,
        hi: int,
    ) -> list[RegimeResult]:
        """Rows ``lo:hi`` of the batch, in the current phase (which they may change)."""
        out: list[RegimeResult] = []
        while lo < hi and self.phase != "idle":
            if self.phase == "capturing":
                lo += self.capture.take(numeric[lo:hi], categorical[lo:hi])
                if self.capture.complete:
                    self.profile = self.capture.profile(
                        self.model, self.version, self.names, self.settings.psi_bins
                    )
                    self.suite = DetectorSuite(self.profile, self.settings)
                    self.phase = "testing"
                continue
            assert self.suite is not None
            assert self.profile is not None
            # The regime's suite counts rows from the first one after its capture.
            offset, tag = self.start_row + self.capture.size, (self.number, self.profile_id)
            results: list[RegimeResult] = [
                (*tag, names, _shifted(result, offset))
                for names, result in self.suite.update(
                    numeric[lo:hi], categorical[lo:hi], times[lo:hi]
                )
            ]
            changed = next((r.row for *_, r in results if r.any_drift), None)
            if changed is None:
                return out + results
            out += [item for item in results if item[3].row <= changed]
            self._recapture(changed + 1)  # a change: the next regime starts after it
            lo = changed + 1 - first_row
        return out

    def snapshot(self) -> tuple[dict[str, object], State]:
        meta: dict[str, object] = {
            "phase": self.phase,
            "number": self.number,
            "start_row": self.start_row,
            "clean_windows": self.clean_windows,
            "captured_rows": self.capture.rows,
            "profile_id": self.profile_id or None,
        }
        arrays = self.capture.snapshot("capture/")
        if self.suite is not None:
            arrays.update({f"suite/{k}": v for k, v in self.suite.snapshot().items()})
        return meta, arrays

    def restore(
        self, meta: dict[str, object], arrays: State, profile: ReferenceProfile | None
    ) -> None:
        """Load a `snapshot`; ``profile`` is the regime reference it names (if testing)."""
        phase = str(meta["phase"])
        if phase not in ("idle", "capturing", "testing"):
            raise ValueError(f"regime state: unknown phase {phase!r}")
        self.phase = phase  # type: ignore[assignment]
        self.number = int(str(meta["number"]))
        self.start_row = int(str(meta["start_row"]))
        self.clean_windows = int(str(meta["clean_windows"]))
        self.capture = Capture(self.settings.change_reference_events)
        self.capture.restore(int(str(meta["captured_rows"])), arrays, "capture/")
        self.profile, self.suite = profile, None
        if self.phase == "testing":
            if profile is None:
                raise ValueError("regime state: testing without its reference")
            self.suite = DetectorSuite(profile, self.settings)
            self.suite.restore(sub_state(arrays, "suite/"))


def _shifted(result: Detection, offset: int) -> Detection:
    return dataclasses.replace(result, first_row=result.first_row + offset, row=result.row + offset)


def _window_outcomes(results: list[Result]) -> Iterator[tuple[int, bool]]:
    """``(row, alarmed)`` of every reference window (and ADWIN cut) in row order: alarmed
    when any test on any column of it drifted."""
    outcomes: dict[int, bool] = {}
    for _, result in results:
        outcomes[result.row] = outcomes.get(result.row, False) or result.any_drift
    yield from sorted(outcomes.items())
