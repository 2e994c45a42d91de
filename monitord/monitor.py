"""Monitoring: for every model version, a reference and the detectors over its columns.

`Monitor.update(group)` turns one decoded `EventGroup` into columnar arrays (numeric
features, categorical features and the prediction as one more column), feeds the model
version's detectors and returns one `Evaluation` per test result, each tied back to the
records (topic, partition, offset) and event times that its window covers.

A version without a profile file is *warming up*: its first ``warmup_events`` rows become
the reference, then detection starts; its columns are learned from all of those rows
(`monitord.learning`). A new version gets its own reference. How many models and versions
are monitored at once is capped (``[limits]``): past a cap, events are refused with a
reason the daemon dead-letters, unless a version idle long enough can be retired. While drift
persists, `monitord.regime` tests the same rows against the recent regime; its results are
evaluations too, marked with the regime's number and reference.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, NonNegativeInt, model_validator

from connectors.stream import Record, TopicPartition
from detectors.detection import Detection, FloatArray, State, sub_state
from detectors.profile import ReferenceProfile, build_profile
from monitord.calibrations import Calibrated, Calibrations, PendingCalibration
from monitord.clock import now
from monitord.config import Config, DetectionSettings
from monitord.events import BadRecord, Columns, EventGroup
from monitord.learning import (
    MAX_REPORTED,
    ColumnLearner,
    LearnerState,
    Unmonitored,
    UnmonitoredState,
    encode_texts,
)
from monitord.provenance import Provenance
from monitord.regime import RegimeResult, RegimeState, RegimeTracker, changes_testable
from monitord.row_log import OffsetRange, Places, RowLog, RowLogState
from monitord.state import Document
from monitord.suite import DetectorSuite

log = logging.getLogger(__name__)

Calibrate = Callable[[ReferenceProfile, DetectionSettings], PendingCalibration]
"""Starts a new reference's calibration (`Monitor`'s, on the loop or in a worker)."""
_Held = tuple[FloatArray, npt.NDArray[np.object_], Places, FloatArray]
"""Rows held while their version is calibrated: `_VersionMonitor._detect`'s arguments,
their records' places for the records."""


@dataclass(frozen=True)
class Evaluation:
    """One test result of one model version, with the data range it covers."""

    model: str
    version: str
    profile_id: str
    features: tuple[str, ...]  # aligned with the arrays of `result`
    result: Detection
    offsets: tuple[OffsetRange, ...]
    last_record: Record  # the record whose arrival completed the evaluation
    start_time: float  # event-time range of the window (seconds)
    end_time: float
    regime: int = 0  # 0: against the version's reference; k: against the k-th recent regime
    regime_profile_id: str | None = None  # the recent regime's reference (regime > 0)
    # Performance windows: the window's metrics, the reference's and the label delay.
    evidence: tuple[tuple[str, float], ...] = ()
    registry: Provenance | None = None  # the reference came from a model registry

    def own_evidence(self) -> Iterator[tuple[str, float]]:
        """The evidence a gauge shows: the window's own values (not the reference's), finite."""
        for name, value in self.evidence:
            if not name.startswith("reference_") and math.isfinite(value):
                yield name, value


@dataclass
class MonitorUpdate:
    evaluations: list[Evaluation]
    bad: list[BadRecord]
    newest_time: float = float("nan")  # event time of the newest good event (NaN: none)
    late: int = 0  # events out of order by more than a window's time (windows closing by time)
    untimed: int = 0  # events whose own time was unusable: their record's time was used
    refused: bool = False  # the version is not monitored (a limit): every event is in bad
    not_monitored: int = 0  # names of the version's events that no monitored column holds
    # Versions retired to make room for this one, with the partitions their state was with.
    retired: dict[tuple[str, str], TopicPartition] = field(default_factory=dict)


def _absent(value: object) -> bool:
    return value is None


class MonitorState(Document):
    """A model version's monitor state in a checkpoint, beside its arrays (warm-up rows,
    detector state, row log, recent regime).

    Format 2 adds what a warm-up learned (``learner``), the columns not monitored, those
    never seen and the newest event time; a format-1 document has none of them, and its
    ``columns`` during a warm-up were fixed by the first batch (restored as learned)."""

    FORMAT: ClassVar[int] = 2
    format_version: int = 2
    model: str
    version: str
    warmup_rows: NonNegativeInt
    columns: tuple[tuple[str, ...], tuple[str, ...]] | None  # (numeric, categorical)
    profile_id: str | None  # the reference; None while warming up
    profile_from_file: bool
    # Stored only when present, as format 1 did.
    log: RowLogState | None = Field(None, exclude_if=_absent)  # with the reference
    regime: RegimeState | None = Field(None, exclude_if=_absent)  # change detection is on
    learner: LearnerState | None = Field(None, exclude_if=_absent)  # while warming up
    unmonitored: UnmonitoredState = UnmonitoredState()
    never_seen: tuple[str, ...] = ()
    newest_time: float | None = None  # event time of the newest event (None: none yet)

    @model_validator(mode="before")
    @classmethod
    def _from_format_1(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("format_version", 1) == 1:
            return {**data, "format_version": 2}  # every format-2 field has a default
        return data

    @property
    def profile_ids(self) -> tuple[str, ...]:
        """The references this state names: the version's and its recent regime's."""
        named = (self.profile_id, None if self.regime is None else self.regime.profile_id)
        return tuple(profile_id for profile_id in named if profile_id)

    @model_validator(mode="after")
    def _detecting_has_a_log(self) -> Self:
        if (self.profile_id is None) != (self.log is None):
            raise ValueError("a version has a row log exactly when it has a reference (profile_id)")
        if self.regime is not None and self.profile_id is None:
            raise ValueError("a version warming up has no recent regime")
        return self


class _VersionMonitor:
    """Reference, columns and detectors of one model version (or its warm-up capture)."""

    def __init__(
        self,
        model: str,
        version: str,
        config: Config,
        profile: ReferenceProfile | None,
        owner: TopicPartition,
        calibrate: Calibrate | None = None,
    ):
        """``calibrate``: how the warm-up's reference is calibrated (None: on the loop)."""
        self.model, self.version, self._config = model, version, config
        self.owner = owner  # the partition whose checkpoint holds this version's state
        self.profile_from_file = profile is not None
        self.provenance: Provenance | None = None  # the profile is a model registry's
        self.detection = config.detection_for(model)
        self.unmonitored = Unmonitored(model, version)
        self._learner = ColumnLearner(
            self.detection.warmup_events,
            self.detection.monitor_prediction,
            config.limits,
            self.unmonitored,
        )
        self.newest_time = -math.inf  # event time of the newest event seen (retiring idle ones)
        self._never_seen: set[str] | None = None  # monitored columns without a value yet
        self.profile: ReferenceProfile | None = None
        self.detectors: DetectorSuite | None = None
        self.regime: RegimeTracker | None = None
        self.columns: Columns | None = None
        self._log = RowLog(self.detection.window_size + self.detection.step)
        self._calibrate = calibrate
        self._pending: PendingCalibration | None = None  # the warm-up reference's calibration
        self._held: list[_Held] = []  # rows that came while it was under way
        self.held_bytes = 0
        if profile is not None:
            self._start(profile)

    @property
    def warming_up(self) -> bool:
        """Learning a reference, or calibrating it: not detecting yet."""
        return self.detectors is None

    @property
    def calibrating(self) -> bool:
        """Its reference is calibrated elsewhere; its rows are held until `settle`."""
        return self._pending is not None

    @property
    def calibrated(self) -> bool:
        """Not waiting for a calibration, or the calibration it waits for is done."""
        return self._pending is None or self._pending.done()

    def adopt(self, profile: ReferenceProfile, provenance: Provenance | None) -> None:
        """Detect against ``profile`` from the next row on, in place of the warm-up or the
        reference so far (a registry's profile that came late, or changed)."""
        self._log = RowLog(self.detection.window_size + self.detection.step)
        self.regime = None
        self._start(profile)
        self.profile_from_file, self.provenance = True, provenance

    def _start(self, profile: ReferenceProfile, pending: PendingCalibration | None = None) -> None:
        """Detect against ``profile`` once its calibration (``pending``, else made now) is
        done; meanwhile rows are held (`_monitor`)."""
        self.profile = profile
        self.columns = Columns(profile.numeric_names, profile.categorical_names)
        self._never_seen = {*profile.numeric_names, *profile.categorical_names}
        self._pending = pending
        if pending is None:
            self._detect_with(None)
        elif pending.done():  # calibrated on the loop
            self._detect_with(pending.result())

    def _detect_with(self, calibrated: Calibrated | None) -> None:
        """Detectors for the profile at the thresholds ``calibrated`` (None: made here)."""
        assert self.profile is not None
        profile, self._pending = self.profile, None
        self.detectors = DetectorSuite(profile, self.detection, calibrated)
        if self.detection.change_detection and changes_testable(profile, self.detection):
            names = (profile.numeric_names, profile.categorical_names)
            self.regime = RegimeTracker(
                self.model,
                self.version,
                names,
                self.detection,
                self._config.limits.max_categories_per_column,
            )

    def update(self, group: EventGroup) -> MonitorUpdate:
        times, untimed = group.event_times()
        bad: list[BadRecord] = []
        if self.columns is None:  # learning columns and reference from the warm-up
            consumed, wrong = self._learner.take(group)
            bad = [BadRecord(group.records[i], "wrong_type", d) for i, d in sorted(wrong.items())]
            good = np.ones(consumed, dtype=bool)
            good[list(wrong)] = False
            newest = float(times[:consumed][good].max()) if good.any() else math.nan
            self._seen(newest)
            if not self._learner.complete:
                return MonitorUpdate([], bad, newest, untimed=untimed)
            self._learned()
            if consumed == len(group):
                return MonitorUpdate([], bad, newest, untimed=untimed)
            group, times = group.rows_from(consumed), times[consumed:]
        update = self._monitor(group, times)
        update.bad[:0] = bad
        update.untimed = untimed
        return update

    def _learned(self) -> None:
        """The warm-up is complete: fix the columns and start detecting against it."""
        self.columns = self._learner.columns()
        numeric, categorical, set_aside = self._learner.arrays(self.columns)
        if set_aside:
            log.warning(
                "%s/%s: %d warm-up values were strings in numeric columns: missing in the "
                "reference (after the warm-up such an event is dead-lettered as wrong_type)",
                self.model,
                self.version,
                set_aside,
            )
        names = (self.columns.numeric, self.columns.categorical)
        most = self._config.limits.max_categories_per_column
        for j, name in enumerate(names[1]):
            distinct = len(set(categorical[:, j].tolist()) - {None})
            if distinct > most:
                log.warning(
                    "%s/%s: column %r has %d distinct categories in the warm-up; the %d most "
                    "frequent are kept, the rest count as unseen "
                    "(limits.max_categories_per_column)",
                    self.model,
                    self.version,
                    name,
                    distinct,
                    most,
                )
        profile = build_profile(
            self.model,
            self.version,
            names[0],
            numeric,
            names[1],
            categorical,
            self.detection.psi_bins,
            max_categories=most,
        )
        calibrate = self._calibrate
        self._start(profile, None if calibrate is None else calibrate(profile, self.detection))
        self._never_seen = set()  # every learned column had values in the warm-up

    def _monitor(self, group: EventGroup, times: FloatArray) -> MonitorUpdate:
        """Detection over ``group`` (columns known), whose event times are ``times``; held
        while the reference is calibrated elsewhere."""
        assert self.columns is not None
        numeric, categorical, wrong = self.columns.arrays(group)
        self._note_columns(group, numeric, categorical)
        bad = [
            BadRecord(group.records[i], "wrong_type", detail) for i, detail in sorted(wrong.items())
        ]
        records = group.records
        if bad:
            keep = np.ones(len(records), dtype=bool)
            keep[list(wrong)] = False
            records = [r for r, ok in zip(records, keep, strict=True) if ok]
            times, numeric, categorical = times[keep], numeric[keep], categorical[keep]
        if not records:
            return MonitorUpdate([], bad)
        newest = float(times.max())
        self._seen(newest)
        if not self.calibrated:
            places = Places(records)
            self._held.append((numeric, categorical, places, times))
            self.held_bytes += _held_bytes(numeric, categorical, places, times)
            return MonitorUpdate([], bad, newest)
        held, late = self.settle() if self._pending is not None else ([], 0)
        assert self.detectors is not None
        before = self.detectors.late_rows
        evaluations = held + self._detect(numeric, categorical, records, times)
        return MonitorUpdate(evaluations, bad, newest, late + self.detectors.late_rows - before)

    def settle(self) -> tuple[list[Evaluation], int]:
        """Once the reference is calibrated (waiting for it), detect over the rows held
        meanwhile, in order: their evaluations, and how many were late."""
        assert self._pending is not None
        self._detect_with(self._pending.result())
        assert self.detectors is not None
        held, self._held, self.held_bytes = self._held, [], 0
        before = self.detectors.late_rows
        evaluations = [
            evaluation
            for numeric, categorical, places, times in held
            for evaluation in self._detect(numeric, categorical, places.records(), times)
        ]
        return evaluations, self.detectors.late_rows - before

    def cancel(self) -> None:
        """Stop a calibration under way (the version is dropped with its held rows)."""
        if self._pending is not None:
            self._pending.cancel()

    def _seen(self, newest: float) -> None:
        # No later than the wall clock allows: a producer's clock must not make this
        # version look live for ever, nor (see Monitor._believable) others idle.
        newest = min(newest, now() + self._config.events.max_time_ahead_s)
        self.newest_time = max(self.newest_time, newest)  # NaN (no time) leaves it

    def _note_columns(
        self, group: EventGroup, numeric: FloatArray, categorical: npt.NDArray[np.object_]
    ) -> None:
        """Report names the columns do not hold, and columns that get their first value."""
        assert self.columns is not None
        for name in group.unknown_names(self.columns):
            self.unmonitored.add(name, "not_in_reference")
        if self._never_seen:
            for j in np.flatnonzero(~np.isnan(numeric).all(axis=0)):
                self._never_seen.discard(self.columns.numeric[j])
            for j in np.flatnonzero((categorical != None).any(axis=0)):  # noqa: E711
                self._never_seen.discard(self.columns.categorical[j])

    @property
    def never_seen(self) -> list[str]:
        """Monitored columns without a value since detection started."""
        return sorted(self._never_seen or ())

    def _detect(
        self,
        numeric: FloatArray,
        categorical: npt.NDArray[np.object_],
        records: list[Record],
        times: FloatArray,
    ) -> list[Evaluation]:
        assert self.detectors is not None
        assert self.profile is not None
        first_row = self._log.first_row + len(self._log)
        self._log.extend(records, times)
        evaluations = []
        spans: dict[tuple[int, int], tuple[tuple[OffsetRange, ...], Record, float, float]] = {}
        reference = self.detectors.update(numeric, categorical, times)
        results: list[RegimeResult] = [(0, "", names, result) for names, result in reference]
        if self.regime is not None:
            results += self.regime.update(numeric, categorical, times, first_row, reference)
            # In row order, the reference's results before the regime's at the same row: the
            # policy folds them in the order they happened, whatever the batch boundaries.
            results.sort(key=lambda item: (item[3].row, item[0] > 0))
        for regime, regime_profile_id, names, result in results:
            window = (result.first_row, result.row)
            if window not in spans:  # every test of a window shares its data range
                ranges, last_record, window_times = self._log.span(*window)
                if 0 <= result.row - first_row < len(records):  # closed by this batch's row
                    last_record = records[result.row - first_row]
                spans[window] = (
                    ranges,
                    last_record,
                    float(np.min(window_times)),
                    float(np.max(window_times)),
                )
            offsets, last_record, start_time, end_time = spans[window]
            evaluations.append(
                Evaluation(
                    model=self.model,
                    version=self.version,
                    profile_id=self.profile.profile_id,
                    features=names,
                    result=result,
                    offsets=offsets,
                    last_record=last_record,
                    start_time=start_time,
                    end_time=end_time,
                    regime=regime,
                    regime_profile_id=regime_profile_id or None,
                    registry=self.provenance,
                )
            )
        self._log.trim()
        return evaluations

    def snapshot(self) -> tuple[MonitorState, State]:
        """This version's state: typed metadata and named arrays (no pickle). Not while
        calibrating: its held rows are not state (`Monitor.settle` first)."""
        assert self._pending is None, f"{self.model}/{self.version}: settle before a snapshot"
        arrays: State = {}
        log = regime = learner = None
        if self.columns is None:
            learner, arrays = self._learner.snapshot("learner/")
        if self.detectors is not None:
            arrays.update({f"suite/{k}": v for k, v in self.detectors.snapshot().items()})
            log, log_arrays = self._log.snapshot()
            arrays.update(log_arrays)
        if self.regime is not None:
            regime, regime_arrays = self.regime.snapshot()
            arrays.update({f"regime/{k}": v for k, v in regime_arrays.items()})
        state = MonitorState(
            model=self.model,
            version=self.version,
            warmup_rows=self._learner.rows,
            columns=None
            if self.columns is None
            else (self.columns.numeric, self.columns.categorical),
            profile_id=None if self.profile is None else self.profile.profile_id,
            profile_from_file=self.profile_from_file,
            log=log,
            regime=regime,
            learner=learner,
            unmonitored=self.unmonitored.snapshot(),
            never_seen=tuple(self.never_seen),
            newest_time=self.newest_time if math.isfinite(self.newest_time) else None,
        )
        return state, arrays

    def columns_status(self) -> dict[str, object]:
        """Monitored columns and the ones that are not, with why (for /status)."""
        # Counts, and at most MAX_REPORTED names: /status stays small at every limit.
        columns = self.columns
        return {
            "numeric": 0 if columns is None else len(columns.numeric),
            "categorical": 0 if columns is None else len(columns.categorical),
            "learning": columns is None,
            "calibrating": self.calibrating,
            "not_monitored": dict(self.unmonitored.reasons),
            "not_monitored_more": self.unmonitored.overflow,
            "never_seen": self.never_seen[:MAX_REPORTED],
        }

    def change_status(self) -> dict[str, object] | None:
        """The recent regime for /status: phase, number and reference (None: off)."""
        if self.regime is None:
            return None
        return {
            "phase": self.regime.phase,
            "regime": self.regime.number,
            "reference_id": self.regime.profile_id or None,
        }

    def captured(self) -> list[ReferenceProfile]:
        """The references this version captured itself (warm-up, recent regime): a
        checkpoint stores them beside its state."""
        found = [] if self.profile_from_file or self.profile is None else [self.profile]
        if self.regime is not None and self.regime.profile is not None:
            found.append(self.regime.profile)
        return found

    def restore(
        self,
        state: MonitorState,
        arrays: State,
        profile: ReferenceProfile | None,
        captured: Callable[[str], ReferenceProfile],
    ) -> None:
        """Load a `snapshot`; ``profile`` is the reference it names (None while warming up),
        ``captured`` finds a recent regime's reference by id."""
        self.unmonitored.restore(state.unmonitored)
        if state.newest_time is not None:
            self.newest_time = state.newest_time
        if state.learner is not None:
            self._learner.restore(state.warmup_rows, state.learner, arrays, "learner/")
        elif profile is None and state.columns is not None:
            # Format 1: columns fixed by the first batch and rows captured for them.
            self._learner.restore(state.warmup_rows, *_learner_state(state.columns, arrays))
        self.profile_from_file = state.profile_from_file
        if profile is None or state.log is None:  # warming up (the state has both or neither)
            return
        self._start(profile)
        self._never_seen = set(state.never_seen)
        assert self.detectors is not None
        self.detectors.restore(sub_state(arrays, "suite/"))
        self._log.restore(state.log, arrays)
        regime = state.regime
        if self.regime is not None and regime is not None:
            regime_profile = None if regime.profile_id is None else captured(regime.profile_id)
            self.regime.restore(regime, sub_state(arrays, "regime/"), regime_profile)


def _learner_state(
    columns: tuple[tuple[str, ...], tuple[str, ...]], arrays: State
) -> tuple[LearnerState, State, str]:
    """A format-1 warm-up capture (fixed columns, numeric and categorical arrays) as the
    state of a `ColumnLearner` that learned those columns."""
    numeric_names, categorical_names = columns
    numbers = np.asarray(arrays.get("warmup/numeric", np.empty((0, len(numeric_names)))))
    rows = numbers.shape[0]
    texts = np.asarray(arrays.get("warmup/categorical/text", np.empty((rows, 0), dtype=str)))
    missing = np.asarray(
        arrays.get("warmup/categorical/missing", np.empty((rows, 0), dtype=bool)), dtype=bool
    )
    meta = LearnerState(
        names=(*numeric_names, *categorical_names),
        numbers=(rows,) * len(numeric_names) + (0,) * len(categorical_names),
        texts=(0,) * len(numeric_names) + (rows,) * len(categorical_names),
    )
    # Numbers' texts only matter to a column that turns categorical: these never do.
    numeric_texts = np.full((rows, len(numeric_names)), None, dtype=object)
    category_texts = texts.astype(object)
    category_texts[missing] = None
    state: State = {
        "learner/numbers": np.hstack([numbers, np.full((rows, len(categorical_names)), np.nan)]),
        **encode_texts(np.hstack([numeric_texts, category_texts]), "learner/"),
    }
    return meta, state, "learner/"


ProfileLoader = Callable[[str, str], ReferenceProfile | None]


class LateReferences(Protocol):
    """References known after a version's first sight, and where they came from: a model
    registry (`monitord.registry.RegistryReferences`)."""

    def arrived(self, model: str, version: str) -> ReferenceProfile | None:
        """A profile that replaces the version's reference now (asked once per batch)."""
        ...

    def provenance(self, profile_id: str) -> Provenance | None: ...

    def close(self) -> None: ...


def _held_bytes(
    numeric: FloatArray, categorical: npt.NDArray[np.object_], places: Places, times: FloatArray
) -> int:
    """What held rows take: their arrays, and each category text (the stream's to size)."""
    texts = sum(map(sys.getsizeof, filter(None, categorical.ravel().tolist())))
    return numeric.nbytes + 8 * categorical.size + texts + places.nbytes + times.nbytes


LOOP_CALIBRATION_S = 0.1
"""Time a batch spends calibrating new references on the loop before it hands the rest to
the calibration workers: two or three new models a batch (15 ms each at 50 features) never
start a worker; a fleet's release does, after a tenth of a second."""
MAX_LOGGED_REFUSALS = 1_000
"""Refused model versions logged by name; past it refusals are only counted (dead letters)."""


@dataclass
class Settled:
    """A version's first detections, over the rows held while its reference was calibrated."""

    model: str
    version: str
    evaluations: list[Evaluation]
    late: int


class Monitor:
    """All model versions seen in the stream; creates a version's monitor on first sight.

    With ``calibrations`` (the daemon's), a batch's new references are calibrated on the
    loop for `LOOP_CALIBRATION_S` and the rest in its workers, their versions' rows held
    until `settle` (or their next events) finds them calibrated; without, all on the loop.
    """

    def __init__(
        self,
        config: Config,
        load_profile: ProfileLoader,
        late: LateReferences | None = None,
        calibrations: Calibrations | None = None,
    ) -> None:
        self._config = config
        self._load_profile = load_profile
        self._late = late
        self._calibrations = calibrations
        self._on_loop_s = 0.0  # spent calibrating on the loop in this batch
        self._calibrated_before = False
        self.calibrating: dict[tuple[str, str], _VersionMonitor] = {}  # in the order begun
        self.versions: dict[tuple[str, str], _VersionMonitor] = {}
        self._by_model: dict[str, list[str]] = {}  # the versions of each model
        self._refusals_logged: set[tuple[str, str]] = set()

    def columns_for(self, model: str, version: str) -> Columns | None:
        """The known columns of a model version, for decoding (None before first sight)."""
        monitor = self.versions.get((model, version))
        return None if monitor is None else monitor.columns

    def update(self, group: EventGroup) -> MonitorUpdate:
        key = (group.model, group.version)
        monitor = self.versions.get(key)
        retired: dict[tuple[str, str], TopicPartition] = {}
        refused: list[BadRecord] = []
        held = self._settle_others(key)
        if monitor is None:
            refusal, first = self._admit(group, retired)
            if refusal is not None:
                reason, detail = refusal
                refused = [BadRecord(record, reason, detail) for record in group.records[:first]]
            if first == len(group):
                return MonitorUpdate([], refused, refused=True)
            if first:
                group = group.rows_from(first)
            profile = self._load_profile(group.model, group.version)
            owner = group.records[0].topic_partition
            calibrate = None if self._calibrations is None else self._calibrate
            monitor = _VersionMonitor(*key, self._config, profile, owner, calibrate)
            monitor.provenance = self._provenance(profile)
            if profile is None:
                log.info(
                    "%s/%s: no reference profile%s: warming up on its first %d events",
                    *key,
                    " (file or registry)" if self._late is not None else " file",
                    monitor.detection.warmup_events,
                )
            self._add(monitor)
        elif self._late is not None:
            held += self._adopt_late(monitor)
        update = monitor.update(group)
        if monitor.calibrating:
            self.calibrating[key] = monitor
        else:  # settled by this update, if it was being calibrated
            self.calibrating.pop(key, None)
        update.bad[:0] = refused
        update.retired = retired
        update.not_monitored = monitor.unmonitored.count
        if held:
            update.evaluations[:0] = [e for settled in held for e in settled.evaluations]
            update.late += sum(settled.late for settled in held)
        return update

    def _settle_others(self, key: tuple[str, str]) -> list[Settled]:
        """Versions of ``key``'s model being calibrated, other than ``key`` (waiting for
        them), before its rows are judged (a new version may retire an idle one) and
        detected: the policy takes the version whose first window came last as its model's
        current one, so a model's versions detect in the order they came. A version goes to
        a worker only while it is its model's one: this waits for one followed soon by
        another."""
        model, version = key
        versions = self._by_model.get(model)
        if not versions or (len(versions) == 1 and versions[0] == version):
            return []
        settled = []
        for other in versions:
            calibrating = self.calibrating.get((model, other))
            if calibrating is not None and other != version:
                settled.append(Settled(model, other, *calibrating.settle()))
                del self.calibrating[model, other]
        return settled

    def new_batch(self) -> None:
        """A batch begins: its new references are calibrated on the loop again."""
        self._on_loop_s = 0.0

    def _calibrate(
        self, profile: ReferenceProfile, settings: DetectionSettings
    ) -> PendingCalibration:
        """On the loop until the batch's calibrations there took `LOOP_CALIBRATION_S`;
        the rest in the workers, but for a version whose model has others: the policy takes
        the version with the newest first window as its model's current one, so versions
        of a model must detect in the order they came (see `_settle_others`)."""
        assert self._calibrations is not None
        alone = len(self._by_model[profile.model]) == 1
        on_loop = self._on_loop_s < LOOP_CALIBRATION_S or not alone
        started = time.perf_counter()
        pending = self._calibrations.start(profile, settings, inline=on_loop)
        if on_loop and self._calibrated_before:  # the first also loads compiled kernels
            self._on_loop_s += time.perf_counter() - started
        self._calibrated_before = True
        return pending

    @property
    def held_bytes(self) -> int:
        """What the rows held for versions being calibrated take."""
        return sum(monitor.held_bytes for monitor in self.calibrating.values())

    def settle(self, keep_bytes: float = 0.0) -> list[Settled]:
        """Detect over the held rows of the versions whose calibration is done, and (waiting
        for the oldest first) of more until the rest hold at most ``keep_bytes`` (0: every
        version is settled)."""
        if self._calibrations is not None:
            self._calibrations.tidy()
        settled: list[Settled] = []
        held = self.held_bytes
        for key, monitor in list(self.calibrating.items()):
            if monitor.calibrated or held > keep_bytes or keep_bytes <= 0:
                held -= monitor.held_bytes
                settled.append(Settled(*key, *monitor.settle()))
                del self.calibrating[key]
        return settled

    def close(self) -> None:
        """Stop the calibration workers (if any)."""
        if self._calibrations is not None:
            self._calibrations.close()

    def _provenance(self, profile: ReferenceProfile | None) -> Provenance | None:
        if profile is None or self._late is None:
            return None
        return self._late.provenance(profile.profile_id)

    def _adopt_late(self, monitor: _VersionMonitor) -> list[Settled]:
        """A registry's profile for ``monitor`` that came since; a calibration under way
        is settled first, its held rows detected against the reference they came under."""
        assert self._late is not None
        profile = self._late.arrived(monitor.model, monitor.version)
        if profile is None:
            return []
        key = (monitor.model, monitor.version)
        held = [Settled(*key, *monitor.settle())] if self.calibrating.pop(key, None) else []
        monitor.adopt(profile, self._provenance(profile))
        return held

    def _admit(
        self, group: EventGroup, retired: dict[tuple[str, str], TopicPartition]
    ) -> tuple[tuple[str, str] | None, int]:
        """Whether a new version may be monitored: ``(None, 0)`` when it may; else the
        refusal's reason and detail, and the first row (if any) from which it may, because
        an idle version of its model was retired then (into ``retired``). Rows are judged in
        order, so where batches are cut does not matter."""
        limits = self._config.limits
        model, version = group.model, group.version
        versions = self._by_model.get(model)
        if max(len(model), len(version)) > limits.max_name_chars:
            # Not logged: the name would be the attacker's to write into the log.
            which = "model" if len(model) > limits.max_name_chars else "version"
            detail = f"{which} name longer than {limits.max_name_chars} characters"
            return ("name_too_long", detail), len(group)
        if versions is None:
            if len(self._by_model) < limits.max_models:
                return None, 0
            refusal = "model_limit", f"{limits.max_models} models are monitored (limits.max_models)"
            first = len(group)
        elif len(versions) < limits.max_versions_per_model:
            return None, 0
        else:
            refusal = (
                "version_limit",
                (
                    f"{limits.max_versions_per_model} versions of {model!r} are monitored and "
                    f"none has been idle for {limits.retire_idle_s:.0f} s "
                    "(limits.max_versions_per_model)"
                ),
            )
            first = self._retire_idle(group, versions, retired)
        if (
            first
            and len(self._refusals_logged) < MAX_LOGGED_REFUSALS
            and ((model, version) not in self._refusals_logged)
        ):
            self._refusals_logged.add((model, version))
            log.warning("events of %s/%s refused: %s", model, version, refusal[1])
        return (refusal if first else None), first

    def _retire_idle(
        self,
        group: EventGroup,
        versions: list[str],
        retired: dict[tuple[str, str], TopicPartition],
    ) -> int:
        """The first row of ``group`` (a new version of a model at its cap) from which its
        model's longest idle version has been idle for ``limits.retire_idle_s``, which is
        then retired (into ``retired``); ``len(group)`` if none is."""
        limits, model = self._config.limits, group.model
        idle = min((self.versions[model, v] for v in versions), key=lambda m: m.newest_time)
        arriving = np.maximum.accumulate(self._believable(group.event_times()[0]))
        room = np.flatnonzero(idle.newest_time <= arriving - limits.retire_idle_s)
        if not room.size:
            return len(group)
        first = int(room[0])
        log.warning(
            "%s/%s retired after %.0f s without events, to monitor %s/%s "
            "(limits.max_versions_per_model = %d)",
            model,
            idle.version,
            arriving[first] - idle.newest_time,
            model,
            group.version,
            limits.max_versions_per_model,
        )
        retired[model, idle.version] = idle.owner
        self.drop([(model, idle.version)])
        return first

    def _believable(self, times: FloatArray) -> FloatArray:
        """Event times no later than the wall clock allows (``events.max_time_ahead_s``): a
        producer's clock must not make live versions look idle."""
        return np.minimum(times, now() + self._config.events.max_time_ahead_s)

    def _add(self, monitor: _VersionMonitor) -> None:
        self.versions[monitor.model, monitor.version] = monitor
        self._by_model.setdefault(monitor.model, []).append(monitor.version)

    def owned_by(self, partition: TopicPartition) -> list[tuple[str, str]]:
        """The model versions whose state lives with ``partition``."""
        return [key for key, monitor in self.versions.items() if monitor.owner == partition]

    def snapshot(self, key: tuple[str, str]) -> tuple[MonitorState, State, list[ReferenceProfile]]:
        """A version's state, plus the references it captured itself (not from a file)."""
        monitor = self.versions[key]
        state, arrays = monitor.snapshot()
        return state, arrays, monitor.captured()

    def restore(
        self,
        owner: TopicPartition,
        state: MonitorState,
        arrays: State,
        captured: Callable[[str], ReferenceProfile],
    ) -> tuple[str, str]:
        """Recreate a version from a `snapshot`; ``captured`` looks up a captured reference."""
        model, version = state.model, state.version
        profile = None
        if state.profile_id is not None:
            if state.profile_from_file:
                profile = self._load_profile(model, version)
                if profile is None or profile.profile_id != state.profile_id:
                    found = None if profile is None else profile.profile_id
                    raise ValueError(
                        f"checkpoint of {model}/{version} was taken against reference "
                        f"{state.profile_id}, but its profile file now holds {found}"
                    )
            else:
                profile = captured(state.profile_id)
        calibrate = None if self._calibrations is None else self._calibrate
        monitor = _VersionMonitor(model, version, self._config, None, owner, calibrate)
        monitor.restore(state, arrays, profile, captured)
        if state.profile_from_file:
            monitor.provenance = self._provenance(profile)
        self._add(monitor)
        return model, version

    def drop(self, keys: list[tuple[str, str]]) -> None:
        """Forget versions (their partitions went to another member, or retired); one
        being calibrated is forgotten with the rows it held, which its partition's next
        owner reads again from the last checkpoint."""
        for model, version in keys:
            self.versions[model, version].cancel()
            self.calibrating.pop((model, version), None)
            del self.versions[model, version]
            versions = self._by_model[model]
            versions.remove(version)
            if not versions:
                del self._by_model[model]


__all__ = [
    "Evaluation",
    "LateReferences",
    "Monitor",
    "MonitorState",
    "MonitorUpdate",
    "OffsetRange",
    "RowLogState",
]
