"""Monitoring: for every model version, a reference and the detectors over its columns.

`Monitor.update(group)` turns one decoded `EventGroup` into columnar arrays (numeric
features, categorical features and the prediction as one more column), feeds the model
version's detectors and returns one `Evaluation` per test result, each tied back to the
records (topic, partition, offset) and event times that its window covers.

A version without a profile file is *warming up*: its first ``warmup_events`` rows become
the reference, then detection starts. A new version gets its own reference. While drift
persists, `monitord.regime` tests the same rows against the recent regime; its results are
evaluations too, marked with the regime's number and reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, NonNegativeInt, model_validator

from connectors.stream import Record, TopicPartition, one_partition
from detectors.detection import Detection, FloatArray, State, sub_state
from detectors.profile import ReferenceProfile
from monitord.config import Config
from monitord.events import BadRecord, Columns, EventGroup
from monitord.regime import Capture, RegimeResult, RegimeState, RegimeTracker, changes_testable
from monitord.state import Document, StateModel
from monitord.suite import DetectorSuite


@dataclass(frozen=True)
class OffsetRange:
    topic: str
    partition: int
    first_offset: int
    last_offset: int


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


@dataclass
class MonitorUpdate:
    evaluations: list[Evaluation]
    bad: list[BadRecord]
    newest_time: float = float("nan")  # event time of the newest good event (NaN: none)
    late: int = 0  # events out of order by more than a window's time (windows closing by time)
    untimed: int = 0  # events whose own time was unusable: their record's time was used


class RowLogState(StateModel):
    """A row log's stored state: where its first row is, and the topics its rows came from
    (the rows themselves are arrays)."""

    first_row: NonNegativeInt
    topics: tuple[str, ...]  # the row arrays hold indexes into this


def _absent(value: object) -> bool:
    return value is None


class MonitorState(Document):
    """A model version's monitor state in a checkpoint, beside its arrays (warm-up rows,
    detector state, row log, recent regime)."""

    model: str
    version: str
    warmup_rows: NonNegativeInt
    columns: tuple[tuple[str, ...], tuple[str, ...]] | None  # (numeric, categorical)
    profile_id: str | None  # the reference; None while warming up
    profile_from_file: bool
    # Stored only when present, as format 1 did.
    log: RowLogState | None = Field(None, exclude_if=_absent)  # with the reference
    regime: RegimeState | None = Field(None, exclude_if=_absent)  # change detection is on

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


class _RowLog:
    """Partition, offset and event time of recent stream rows, to map windows to data."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self.first_row = 0
        self.records: list[Record] = []
        self.times = np.empty(0)

    def extend(self, records: list[Record], times: FloatArray) -> None:
        self.trim()
        self.records = self.records + records
        self.times = np.concatenate([self.times, times])

    def trim(self) -> None:
        """Forget all but the last ``keep`` rows, the most a later window reaches back:
        a batch's records are then freed with the batch."""
        drop = max(0, len(self.records) - self._keep)
        if drop:
            self.first_row += drop
            self.records = self.records[drop:]
            self.times = self.times[drop:]

    def span(self, first_row: int, last_row: int) -> tuple[list[Record], FloatArray]:
        lo = max(first_row - self.first_row, 0)
        hi = last_row - self.first_row + 1
        return self.records[lo:hi], self.times[lo:hi]

    def snapshot(self) -> tuple[RowLogState, State]:
        # Only where each row came from is kept: a window's evidence is its offsets.
        topics = sorted({r.topic for r in self.records})
        index = {topic: i for i, topic in enumerate(topics)}
        arrays: State = {
            "log/topic": np.array([index[r.topic] for r in self.records], dtype=np.int32),
            "log/partition": np.array([r.partition for r in self.records], dtype=np.int32),
            "log/offset": np.array([r.offset for r in self.records], dtype=np.int64),
            "log/time": self.times.copy(),
        }
        return RowLogState(first_row=self.first_row, topics=tuple(topics)), arrays

    def restore(self, state: RowLogState, arrays: State) -> None:
        topic = np.asarray(arrays["log/topic"])
        times = np.asarray(arrays["log/time"], dtype=np.float64)
        indexes = topic.dtype.kind in "iu" and (
            not topic.size or 0 <= topic.min() <= topic.max() < len(state.topics)
        )
        if not indexes:
            raise ValueError(f"row log: topics are not indexes into its {len(state.topics)} topics")
        if times.shape != topic.shape:
            raise ValueError(f"row log: {topic.size} rows but {times.size} event times")
        self.first_row = state.first_row
        self.records = [
            Record(state.topics[t], int(p), int(o), None, None, 0, ())
            for t, p, o in zip(topic, arrays["log/partition"], arrays["log/offset"], strict=True)
        ]
        self.times = times


class _VersionMonitor:
    """Reference, columns and detectors of one model version (or its warm-up capture)."""

    def __init__(
        self,
        model: str,
        version: str,
        config: Config,
        profile: ReferenceProfile | None,
        owner: TopicPartition,
    ):
        self.model, self.version, self._config = model, version, config
        self.owner = owner  # the partition whose checkpoint holds this version's state
        self.profile_from_file = profile is not None
        self.detection = config.detection_for(model)
        self._warmup = Capture(self.detection.warmup_events)
        self.profile: ReferenceProfile | None = None
        self.detectors: DetectorSuite | None = None
        self.regime: RegimeTracker | None = None
        self.columns: Columns | None = None
        self._log = _RowLog(self.detection.window_size + self.detection.step)
        if profile is not None:
            self._start(profile)

    @property
    def warming_up(self) -> bool:
        return self.detectors is None

    def _start(self, profile: ReferenceProfile) -> None:
        self.profile = profile
        self.columns = Columns(profile.numeric_names, profile.categorical_names)
        self.detectors = DetectorSuite(profile, self.detection)
        if self.detection.change_detection and changes_testable(profile, self.detection):
            names = (profile.numeric_names, profile.categorical_names)
            self.regime = RegimeTracker(self.model, self.version, names, self.detection)

    def update(self, group: EventGroup) -> MonitorUpdate:
        if self.columns is None:
            # Columns come from the rows that become the reference (the first warm-up batch).
            warmup = self.detection.warmup_events
            self.columns = Columns.infer(
                group.features[:warmup],
                group.predictions[:warmup],
                self.detection.monitor_prediction,
            )
        numeric, categorical, wrong = self.columns.arrays(group)
        bad = [
            BadRecord(group.records[i], "wrong_type", detail) for i, detail in sorted(wrong.items())
        ]
        records = group.records
        times, untimed = group.event_times()
        if bad:
            keep = np.ones(len(records), dtype=bool)
            keep[list(wrong)] = False
            records = [r for r, ok in zip(records, keep, strict=True) if ok]
            times, numeric, categorical = times[keep], numeric[keep], categorical[keep]
        if not records:
            return MonitorUpdate([], bad, untimed=untimed)
        newest = float(times.max())
        if self.detectors is None:
            # The reference is exactly the first warmup_events rows; the rest of the batch
            # that completes it is already monitored against it.
            taken = self._capture(numeric, categorical)
            if self.detectors is None or taken == len(records):
                return MonitorUpdate([], bad, newest, untimed=untimed)
            records, times = records[taken:], times[taken:]
            numeric, categorical = numeric[taken:], categorical[taken:]
        assert self.detectors is not None
        late = self.detectors.late_rows
        evaluations = self._detect(numeric, categorical, records, times)
        return MonitorUpdate(evaluations, bad, newest, self.detectors.late_rows - late, untimed)

    def _capture(self, numeric: FloatArray, categorical: npt.NDArray[np.object_]) -> int:
        """Keep rows for the reference until it is complete; return how many were kept."""
        assert self.columns is not None
        taken = self._warmup.take(numeric, categorical)
        if self._warmup.complete:
            names = (self.columns.numeric, self.columns.categorical)
            self._start(
                self._warmup.profile(self.model, self.version, names, self.detection.psi_bins)
            )
        return taken

    def _detect(
        self,
        numeric: FloatArray,
        categorical: npt.NDArray[np.object_],
        records: list[Record],
        times: FloatArray,
    ) -> list[Evaluation]:
        assert self.detectors is not None
        assert self.profile is not None
        first_row = self._log.first_row + len(self._log.records)
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
                window_records, window_times = self._log.span(*window)
                spans[window] = (
                    _offset_ranges(window_records),
                    window_records[-1],
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
                )
            )
        self._log.trim()
        return evaluations

    def snapshot(self) -> tuple[MonitorState, State]:
        """This version's state: typed metadata and named arrays (no pickle)."""
        arrays: State = self._warmup.snapshot("warmup/")
        log = regime = None
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
            warmup_rows=self._warmup.rows,
            columns=None
            if self.columns is None
            else (self.columns.numeric, self.columns.categorical),
            profile_id=None if self.profile is None else self.profile.profile_id,
            profile_from_file=self.profile_from_file,
            log=log,
            regime=regime,
        )
        return state, arrays

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
        if state.columns is not None:
            self.columns = Columns(*state.columns)
        self._warmup.restore(state.warmup_rows, arrays, "warmup/")
        self.profile_from_file = state.profile_from_file
        if profile is None or state.log is None:  # warming up (the state has both or neither)
            return
        self._start(profile)
        assert self.detectors is not None
        self.detectors.restore(sub_state(arrays, "suite/"))
        self._log.restore(state.log, arrays)
        regime = state.regime
        if self.regime is not None and regime is not None:
            regime_profile = None if regime.profile_id is None else captured(regime.profile_id)
            self.regime.restore(regime, sub_state(arrays, "regime/"), regime_profile)


def _offset_ranges(records: list[Record]) -> tuple[OffsetRange, ...]:
    # A partition's records are in offset order: its first and last seen bound its range.
    if one_partition(records):
        head, tail = records[0], records[-1]
        return (OffsetRange(head.topic, head.partition, head.offset, tail.offset),)
    first: dict[tuple[str, int], int] = {}
    last: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        first.setdefault(key, record.offset)
        last[key] = record.offset
    return tuple(OffsetRange(t, p, first[t, p], last[t, p]) for t, p in sorted(first))


ProfileLoader = Callable[[str, str], ReferenceProfile | None]


class Monitor:
    """All model versions seen in the stream; creates a version's monitor on first sight."""

    def __init__(self, config: Config, load_profile: ProfileLoader) -> None:
        self._config = config
        self._load_profile = load_profile
        self.versions: dict[tuple[str, str], _VersionMonitor] = {}

    def columns_for(self, model: str, version: str) -> Columns | None:
        """The known columns of a model version, for decoding (None before first sight)."""
        monitor = self.versions.get((model, version))
        return None if monitor is None else monitor.columns

    def update(self, group: EventGroup) -> MonitorUpdate:
        key = (group.model, group.version)
        monitor = self.versions.get(key)
        if monitor is None:
            profile = self._load_profile(group.model, group.version)
            owner = group.records[0].topic_partition
            monitor = self.versions[key] = _VersionMonitor(*key, self._config, profile, owner)
        return monitor.update(group)

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
        monitor = _VersionMonitor(model, version, self._config, None, owner)
        monitor.restore(state, arrays, profile, captured)
        self.versions[model, version] = monitor
        return model, version

    def drop(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            del self.versions[key]


__all__ = ["Evaluation", "Monitor", "MonitorState", "MonitorUpdate", "OffsetRange", "RowLogState"]
