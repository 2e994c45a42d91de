"""Model performance per model version: windows of labelled rows and the error stream.

Each joined (prediction, label) pair (`monitord.labels`) is one row of the version's
*performance stream*, in join order. The first ``performance.warmup_labels`` rows are the
reference performance (`detectors.performance.PerformanceReference`; the task, when
``auto``, is inferred from them and logged), unless the version's profile holds reference
(prediction, label) pairs (`monitord reference build --label-column`): those are the
reference then, and the stream is tested from its first row. After them, every
``performance.window_size`` rows make one window, tested for degradation: its misses
against the most the reference allows at the window's share of the false-alarm budget
(``performance.false_alarm_budget_labels`` labelled rows between false alarms). Each
window carries its metrics, the reference's and the label delay as evidence. An ADWIN over
the miss stream (identical to river's ADWIN with the same delta, fed block means when the
reference's misses are serially dependent) marks change points in the error rate, from the
first labelled row on.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import operator
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import orjson
from pydantic import Field, NonNegativeInt

from connectors.stream import Record, TopicPartition
from detectors.block_means import BlockMeanADWIN
from detectors.dependence import Dependence
from detectors.detection import Detection, FloatArray, State, sub_state
from detectors.nulls import PERSISTENT
from detectors.performance import (
    LabelShare,
    PerformanceReference,
    Scoring,
    class_text,
    window_metrics,
)
from monitord.alerts import (
    COVERAGE_DETECTOR,
    ERROR_CHANGE_DETECTOR,
    LABEL_DRIFT_DETECTOR,
    PERFORMANCE_DETECTOR,
    stable_id,
)
from monitord.config import Config, PerformanceSettings
from monitord.join_store import Joined
from monitord.latency import LatencyState, VersionLatency
from monitord.monitor import Evaluation, OffsetRange, ProfileLoader
from monitord.state import Document

log = logging.getLogger(__name__)

ERROR_STREAM = "@error"
HISTORY_ROWS = 20_000
"""Most stationary misses kept to learn their serial dependence from."""

# A row as kept: the joined pair itself (no second tuple per pair); a profile's reference
# pairs are rows of no partition (`_profile_row`). Stored as `_STORED` lists.
Row = Joined


class PerformanceState(Document):
    """A version's performance state beside its arrays (rows as JSON, the ADWIN)."""

    rows: NonNegativeInt  # rows of the performance stream so far
    window_first_row: NonNegativeInt
    adwin_block: int | None = None  # None: no error-stream ADWIN (yet)
    coverage_windows: NonNegativeInt = 0  # label coverage windows completed
    coverage_due: NonNegativeInt = 0  # predictions due in the current coverage window
    coverage_missed: NonNegativeInt = 0  # of which not labelled within the expected delay
    latency: LatencyState | None = None  # the latency stream, arrays under latency/
    last: dict[str, float] = Field(default_factory=dict)  # the last window's metrics
    # What the performance gauges last showed: each evaluation's own evidence, the latest
    # per name (empty in checkpoints from before it was kept).
    shown: dict[str, float] = Field(default_factory=dict)
    refined_at: NonNegativeInt = 0  # misses kept when the dependence was last estimated
    kept_since: NonNegativeInt = 0  # window rows since


_VERSION = operator.itemgetter(0, 1)  # of a `Joined`: (model, version)
# Of a `Row`.
_PREDICTION, _LABEL, _PREDICTION_TIME, _LABEL_TIME, _PARTITION, _OFFSET, _RECORD = (
    operator.itemgetter(i) for i in range(2, 9)
)
_VALUE = operator.itemgetter(4)  # of a `Record`
KEPT_RECORD_BYTES = 4096
"""Most bytes of a record a kept row holds: past it, rows keep their records' positions only
(a stream's warm-up and window would hold up to 1,200 records of up to a megabyte each)."""
NO_PARTITION = TopicPartition("", -1)
"""Where a profile's reference pairs come from: no partition."""


def _profile_row(model: str, version: str, prediction: Any, label: Any, i: int) -> Row:
    """A profile's ``i``-th reference pair as a row (no time, no record of its own)."""
    nan = math.nan
    record = Record("", -1, i, None, None, -1)
    return Joined(model, version, prediction, label, nan, nan, NO_PARTITION, i, record)


def _stored(rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """Rows as stored: [prediction, label, topic, partition, offset, prediction time, label
    time] (the record that brought a row is not kept)."""
    return [
        (row[2], row[3], row[6].topic, row[6].partition, row[7], row[4], row[5]) for row in rows
    ]


def _stored_row(model: str, version: str, row: list[Any]) -> Row:
    """A stored row back (the record: its position only)."""
    nan = math.nan
    topic, partition, offset = row[2], row[3], row[4]
    return Joined(
        model,
        version,
        row[0],
        row[1],
        nan if row[5] is None else row[5],
        nan if row[6] is None else row[6],
        TopicPartition(topic, partition),
        offset,
        Record(topic, partition, offset, None, None, -1),
    )


class VersionPerformance:
    """One model version's performance stream (module docstring)."""

    def __init__(
        self,
        model: str,
        version: str,
        settings: PerformanceSettings,
        budget_labels: float,
        delta: float,
        reference: Sequence[tuple[Any, Any]] = (),
    ) -> None:
        """``reference``: (prediction, label) pairs of a profile, the reference performance
        from the start (none: the first ``settings.warmup_labels`` rows of the stream)."""
        self.model, self.version, self.settings = model, version, settings
        self.budget_labels, self.delta = budget_labels, delta
        self.reference: PerformanceReference | None = None
        self.reference_id = ""
        # The warm-up, then the reference; a profile's pairs are rows of no partition.
        self.reference_rows: list[Row] = [
            _profile_row(model, version, prediction, label, i)
            for i, (prediction, label) in enumerate(reference)
        ]
        self.from_profile = bool(reference)
        self.window: list[Row] = []
        self._window_misses: list[FloatArray] = []  # the window's misses, as folded
        self.window_first_row = 0
        self.rows = 0
        self.adwin: BlockMeanADWIN | None = None
        self._limit: int | None = None
        self.label_share: LabelShare | None = None
        self._share_limits = (0, 0)
        self.last: dict[str, float] = {}  # the last window's metrics (for /status, metrics)
        self.shown: dict[str, float] = {}  # the gauges' values (`PerformanceState.shown`)
        self.unscored = 0  # rows its scoring could not score, since `Performance.update` took them
        self.coverage_windows = self.coverage_due = self.coverage_missed = 0
        self.latency: VersionLatency | None = None
        # Misses of the reference and the clean windows since, for the null's dependence.
        self.history: deque[int] = deque(maxlen=HISTORY_ROWS)
        self.refined_at = 0  # history rows when the dependence was last estimated
        self.kept_since = 0  # window rows since then
        if self.from_profile:
            built = self._build_reference()
            log.info(
                "%s/%s: reference performance from the profile's %d labelled rows: %s, %s",
                model,
                version,
                len(reference),
                built.scoring.task,
                ", ".join(f"{k} {v:.4g}" for k, v in built.metrics.items()),
                extra={"model": model, "model_version": version},
            )
            if settings.error_change:  # the error stream starts with the stream, at row 0
                self.adwin = BlockMeanADWIN(1, self._block(), delta)

    @property
    def warming_up(self) -> bool:
        return self.reference is None

    def update(self, pairs: Sequence[Joined]) -> list[Evaluation]:
        """Fold joined pairs in (in join order); the evaluations they complete. Rows past
        the reference that its scoring cannot score (`unscored`) are left out, counted."""
        evaluations: list[Evaluation] = []
        rows = _light(pairs)
        start = 0
        if self.reference is None:
            take = self.settings.warmup_labels - len(self.reference_rows)
            self.reference_rows += rows[:take]
            start = min(take, len(rows))
            self.rows += start
            if len(self.reference_rows) < self.settings.warmup_labels:
                return []
            evaluations += self._start(rows[start - 1 if start else -1].record)
        if start < len(rows):
            evaluations += self._fold(rows[start:])
        evaluations.sort(key=lambda e: (e.result.row, e.result.detector != ERROR_CHANGE_DETECTOR))
        return evaluations

    def _start(self, record: Record) -> list[Evaluation]:
        """The warm-up is complete: build the reference, start the error-stream ADWIN."""
        reference = self._build_reference()
        log.info(
            "%s/%s: reference performance from %d labelled rows: %s%s, %s",
            self.model,
            self.version,
            len(self.reference_rows),
            reference.scoring.task,
            " (probabilities)" if reference.scoring.probabilistic else "",
            ", ".join(f"{k} {v:.4g}" for k, v in reference.metrics.items()),
            extra={"model": self.model, "model_version": self.version},
        )
        if not self.settings.error_change:
            return []
        self.adwin = BlockMeanADWIN(1, self._block(), self.delta)
        # The warm-up rows are the error stream's start: a change during them counts too.
        rows = self.reference_rows
        misses = reference.scoring.misses(_predictions(rows), _labels(rows))
        keep = np.flatnonzero(np.isfinite(misses))
        return self._error_changes(misses[keep], [rows[i] for i in keep], 0, record)

    def _build_reference(self) -> PerformanceReference:
        predictions, labels = _predictions(self.reference_rows), _labels(self.reference_rows)
        settings = self.settings
        scoring = Scoring.infer(predictions, labels, settings.positive_class, settings.task)
        self.reference = reference = PerformanceReference.build(scoring, predictions, labels)
        self._check_positive(scoring, labels)
        self.reference_id = stable_id(
            "performance", self.model, self.version, orjson.dumps([predictions, labels]).hex()
        )
        self._limit = reference.miss_limit(settings.window_size, self._level())
        self.label_share = None
        if settings.label_drift:
            self.label_share = share = LabelShare.build(reference.scoring, labels)
            self._share_limits = share.limits(settings.window_size, self._level())
        self.window_first_row = self.rows
        misses = reference.scoring.misses(predictions, labels)
        self.history = deque(misses[np.isfinite(misses)].astype(np.uint8).tolist(), HISTORY_ROWS)
        self.refined_at = len(self.history)
        return reference

    def _check_positive(self, scoring: Scoring, labels: Sequence[Any]) -> None:
        """Probabilities whose classes (the positive one, and "0" or "1" beside it) no label
        is: every row would miss (accuracy 0, and no window could degrade): say which
        setting to change."""
        classes = sorted(filter(None, {class_text(label) for label in labels}))
        predicted = {scoring.positive, "0" if scoring.positive != "0" else "1"}
        if scoring.probabilistic and classes and predicted.isdisjoint(classes):
            log.warning(
                "%s/%s: predictions are probabilities, but performance.positive_class %r is "
                "none of the labels' classes (%s): every row misses; set it to the class "
                "the probabilities are of",
                self.model,
                self.version,
                scoring.positive,
                ", ".join(map(repr, classes)),
                extra={"model": self.model, "model_version": self.version},
            )

    def _learn(self, misses: FloatArray, degraded: bool) -> None:
        """Keep a clean window's misses, and refine the reference's dependence each time
        the stationary misses kept have doubled (up to `HISTORY_ROWS`, then every as many
        new rows): the null is learned from more than the warm-up."""
        reference = self.reference
        if degraded or reference is None:
            return
        self.history.extend(misses[np.isfinite(misses)].astype(np.uint8).tolist())
        self.refined_at = min(self.refined_at, HISTORY_ROWS)
        if len(self.history) < 2 * self.refined_at and len(self.history) < HISTORY_ROWS:
            return
        if len(self.history) == HISTORY_ROWS and self.kept_since < HISTORY_ROWS:
            return
        self.reference = reference.refined(np.asarray(self.history, dtype=np.float64))
        self._limit = self.reference.miss_limit(self.settings.window_size, self._level())
        self.refined_at, self.kept_since = len(self.history), 0

    def _level(self) -> float:
        """Each window test's share of the budget: degradation and, when on, label drift
        split a window's level (labelled rows between false alarms, per model version)."""
        tests = 2 if self.settings.label_drift else 1
        return min(self.settings.window_size / self.budget_labels / tests, 0.5)

    def _block(self) -> int:
        assert self.reference is not None
        # Block means only for misses materially persistent: a mild estimate, as a short
        # reference shows by chance, made the error-stream ADWIN later than river's on
        # independent rows (benchmarks/performance.py) for no fewer false alarms.
        inflation = float(self.reference.dependence.inflation[0, -1])
        return 1 if inflation <= PERSISTENT else math.ceil(2.0 * inflation)

    def _fold(self, rows: list[Row]) -> list[Evaluation]:
        reference = self.reference
        assert reference is not None
        misses = reference.scoring.misses(_predictions(rows), _labels(rows))
        scored = np.isfinite(misses)
        if not scored.all():  # a row that cannot be scored is no row of the stream
            keep = np.flatnonzero(scored)
            self.unscored += len(rows) - len(keep)
            rows = [rows[i] for i in keep]
            misses = misses[keep]
        first = self.rows
        evaluations = self._error_changes(misses, rows, first, None, self.window)
        size = self.settings.window_size
        i = 0
        while i < len(rows):
            take = min(size - len(self.window), len(rows) - i)
            self.window += rows[i : i + take]
            self._window_misses.append(misses[i : i + take])
            i += take
            self.rows += take
            if len(self.window) == size:
                record = rows[i - 1].record
                # Both tests of the window cover it and read its labels.
                span, labels = _span(self.window, record), _labels(self.window)
                evaluations.append(self._test(record, span, labels))
                if self.label_share is not None:
                    evaluations.append(self._label_drift(self.label_share, record, span, labels))
                self.window, self.window_first_row = [], self.rows
                self._window_misses = []
        return evaluations

    def _error_changes(
        self,
        misses: FloatArray,
        rows: list[Row],
        first_row: int,
        record: Record | None,
        before: Sequence[Row] = (),
    ) -> list[Evaluation]:
        """Change points of the error stream among ``rows`` (stream rows from ``first_row``);
        ``record``: the one record that brought them all (None: each row's own);
        ``before``: the open window's rows that precede ``rows``."""
        if self.adwin is None or not len(rows):
            return []
        out = []
        held = [*before, *rows]  # stream rows from first_row - len(before)
        for detection in self.adwin.update(np.asarray(misses, dtype=np.float64)[:, None]):
            at = min(max(detection.row - first_row, 0), len(rows) - 1)
            result = dataclasses.replace(detection, detector=ERROR_CHANGE_DETECTOR)
            start = max(self._change_start(detection) - first_row + len(before), 0)
            span = held[start : len(before) + at + 1]
            brought = rows[at].record if record is None else record
            out.append(self._evaluation((ERROR_STREAM,), result, _span(span, brought), brought))
        return out

    def _change_start(self, detection: Detection) -> int:
        """First stream row of a change's data range: its block's first row, but not before
        the window its last row falls in (a closed window's rows are not held), so that the
        range is the same whatever batches brought the rows."""
        start, size = self.window_first_row, self.settings.window_size
        if detection.row < start:  # in the reference: all of it is held
            return detection.first_row
        return max(detection.first_row, start + (detection.row - start) // size * size)

    def _test(self, record: Record, span: Span, labels: list[Any]) -> Evaluation:
        reference, limit = self.reference, self._limit
        assert reference is not None
        assert limit is not None
        predictions = _predictions(self.window)
        scoring = reference.scoring
        misses = np.concatenate(self._window_misses)  # scored as folded, by this scoring
        n = len(self.window)
        count = float(_indicated(misses).sum())
        metrics = window_metrics(scoring, predictions, labels)
        self.last = metrics
        self.kept_since += n
        self._learn(misses, count > limit)
        result = Detection(
            PERFORMANCE_DETECTOR,
            self.window_first_row,
            self.rows - 1,
            np.array([count / n]),
            np.array([limit / n]),
            np.array([count > limit]),
            None,
            np.array([n], dtype=np.int64),
        )
        n_rows = len(self.window)
        delays = np.fromiter(map(_LABEL_TIME, self.window), np.float64, n_rows) - np.fromiter(
            map(_PREDICTION_TIME, self.window), np.float64, n_rows
        )
        delays = delays[np.isfinite(delays)]
        evidence = [
            *((name, value) for name, value in metrics.items()),
            *((f"reference_{name}", value) for name, value in reference.metrics.items()),
            ("reference_miss_rate", reference.miss_rate),
            ("label_delay_p50_s", _finite_median(delays) if delays.size else math.nan),
        ]
        metric = "error_rate" if scoring.task == "classification" else "large_error_rate"
        return self._evaluation((metric,), result, span, record, tuple(evidence))

    def _label_drift(
        self, share: LabelShare, record: Record, span: Span, labels: list[Any]
    ) -> Evaluation:
        """The window's labels against the reference's: its share of counted labels
        outside the limits, either way. The statistic is the distance from the reference's
        expected count in units of the limit's distance (above 1: drifted)."""
        counted = _indicated(share.indicator(labels))
        n = counted.size
        count = float(counted.sum())
        low, high = self._share_limits
        expected = share.rate * n
        statistic = max(
            (count - expected) / max(high - expected, 1e-9),
            (expected - count) / max(expected - low, 1e-9),
            0.0,
        )
        result = Detection(
            LABEL_DRIFT_DETECTOR,
            self.window_first_row,
            self.rows - 1,
            np.array([statistic]),
            np.array([1.0]),
            np.array([count > high or count < low]),
            None,
            np.array([n], dtype=np.int64),
        )
        evidence = (
            ("label_share", count / n if n else math.nan),
            ("reference_label_share", share.rate),
            ("label_share_low", low / max(n, 1)),
            ("label_share_high", high / max(n, 1)),
        )
        return self._evaluation((share.name,), result, span, record, evidence)

    def _evaluation(
        self,
        features: tuple[str, ...],
        result: Detection,
        span: Span,
        record: Record,
        evidence: tuple[tuple[str, float], ...] = (),
    ) -> Evaluation:
        offsets, first_time, last_time = span
        return Evaluation(
            self.model,
            self.version,
            self.reference_id,
            features,
            result,
            offsets,
            record,
            first_time,
            last_time,
            evidence=evidence,
        )

    def coverage(
        self, verdicts: Sequence[bool], window: int, least: float, record: Record
    ) -> list[Evaluation]:
        """Fold coverage verdicts (labelled within the expected delay or not, in order);
        every ``window`` of them is checked against the ``least`` share covered."""
        evaluations = []
        for covered in verdicts:
            self.coverage_due += 1
            self.coverage_missed += not covered
            if self.coverage_due < window:
                continue
            missed = self.coverage_missed / window
            first = self.coverage_windows * window
            result = Detection(
                COVERAGE_DETECTOR,
                first,
                first + window - 1,
                np.array([missed]),
                np.array([1.0 - least]),
                np.array([missed > 1.0 - least]),
                None,
                np.array([window], dtype=np.int64),
            )
            evidence = (("label_coverage", 1.0 - missed), ("min_coverage", least))
            evaluations.append(
                self._evaluation(("unlabelled_share",), result, _span((), record), record, evidence)
            )
            self.coverage_windows += 1
            self.coverage_due = self.coverage_missed = 0
        return evaluations

    def snapshot(self) -> tuple[PerformanceState, State]:
        latency_state, latency_arrays = (
            (None, {}) if self.latency is None else self.latency.snapshot()
        )
        state = PerformanceState(
            rows=self.rows,
            window_first_row=self.window_first_row,
            adwin_block=None if self.adwin is None else self.adwin.block,
            coverage_windows=self.coverage_windows,
            coverage_due=self.coverage_due,
            coverage_missed=self.coverage_missed,
            latency=None if self.latency is None else latency_state,
            refined_at=self.refined_at,
            kept_since=self.kept_since,
            last={k: v for k, v in self.last.items() if math.isfinite(v)},
            shown=self.shown,
        )
        # A profile's pairs are not stored again: the profile is (`restore` keeps them).
        reference = [] if self.from_profile else self.reference_rows
        blob = orjson.dumps({"reference": _stored(reference), "window": _stored(self.window)})
        arrays: State = {
            "rows": np.frombuffer(blob, dtype=np.uint8),
            "history": np.asarray(self.history, dtype=np.uint8),
        }
        if self.reference is not None and self.reference.dependence.n_rows != self.reference.rows:
            arrays["dependence"] = self.reference.dependence.inflation
        if self.adwin is not None:
            arrays.update({f"adwin/{k}": v for k, v in self.adwin.snapshot().items()})
        arrays.update({f"latency/{k}": v for k, v in latency_arrays.items()})
        return state, arrays

    def restore(self, state: PerformanceState, arrays: State) -> None:
        data = orjson.loads(bytes(arrays["rows"]))
        if data["reference"] or not self.from_profile:  # a warm-up's rows
            self.reference_rows = [
                _stored_row(self.model, self.version, row) for row in data["reference"]
            ]
            self.from_profile = False
        self.window = [_stored_row(self.model, self.version, row) for row in data["window"]]
        self.rows = 0
        self.reference = self.adwin = None
        if self.from_profile or len(self.reference_rows) >= self.settings.warmup_labels:
            self._build_reference()
        self.rows, self.window_first_row = state.rows, state.window_first_row
        self.coverage_windows = state.coverage_windows
        self.coverage_due, self.coverage_missed = state.coverage_due, state.coverage_missed
        self.last = dict(state.last)
        self.shown = dict(state.shown)
        self._window_misses = []
        if self.reference is not None and self.window:  # scored as when they were folded
            scoring = self.reference.scoring
            self._window_misses = [scoring.misses(_predictions(self.window), _labels(self.window))]
        if self.reference is not None and "history" in arrays:
            self.history = deque(arrays["history"].tolist(), HISTORY_ROWS)
            self.refined_at, self.kept_since = state.refined_at, state.kept_since
            if "dependence" in arrays:  # refined since the reference: that estimate
                dependence = Dependence(
                    np.asarray(arrays["dependence"], dtype=np.float64), state.refined_at
                )
                self.reference = dataclasses.replace(self.reference, dependence=dependence)
                self._limit = self.reference.miss_limit(self.settings.window_size, self._level())
        if state.latency is not None and self.latency is not None:
            self.latency.restore(state.latency, sub_state(arrays, "latency/"))
        if state.adwin_block is not None:
            self.adwin = BlockMeanADWIN(1, state.adwin_block, self.delta)
            self.adwin.restore(sub_state(arrays, "adwin/"))


def _light(pairs: Sequence[Joined]) -> list[Row]:
    """``pairs`` as rows to keep: each record its position only if any is large (an
    evaluation reads only its record's position and time; the common case is checked in C)."""
    values = filter(None, map(_VALUE, map(_RECORD, pairs)))
    if max(map(len, values), default=0) <= KEPT_RECORD_BYTES:
        return list(pairs)
    return [
        pair._replace(record=pair.record._replace(key=None, value=None, headers=()))
        for pair in pairs
    ]


def _indicated(indicator: FloatArray) -> FloatArray:
    """The known values (0.0 or 1.0) of an indicator that is NaN where unknown: their sum
    is np.nansum's (whole numbers add up exactly in any order), without its copy."""
    return indicator[~np.isnan(indicator)]


def _predictions(rows: Sequence[Row]) -> list[Any]:
    return list(map(_PREDICTION, rows))


def _labels(rows: Sequence[Row]) -> list[Any]:
    return list(map(_LABEL, rows))


def _finite_median(values: FloatArray) -> float:
    """``np.median`` of finite ``values`` (at least one), by the same partition and the
    same arithmetic, without its per-call overhead: a window's median delay cost as much as
    the rest of its evidence. np.median takes the mean of the middle value or two, a sum
    that starts at 0.0 (a middle -0.0 comes out 0.0): so does this."""
    half = values.size // 2
    if values.size % 2:
        return float(0.0 + np.partition(values, [half, -1])[half])
    part = np.partition(values, [half - 1, half, -1])
    return float((0.0 + part[half - 1] + part[half]) / 2)


# What an evaluation covers: its offset ranges, first and last prediction time.
Span = tuple[tuple[OffsetRange, ...], float, float]


def _span(rows: Sequence[Row], record: Record) -> Span:
    """The offset ranges and prediction times of ``rows`` (no time: ``record``'s)."""
    times = np.fromiter(map(_PREDICTION_TIME, rows), np.float64, len(rows))
    times = times[np.isfinite(times)]
    if not times.size:
        times = np.array([record.timestamp_ms / 1e3])
    return _offset_ranges(rows), float(times.min()), float(times.max())


def _offset_ranges(rows: Sequence[Row]) -> tuple[OffsetRange, ...]:
    # The common case without a step per row in Python: the join hands every pair of a
    # partition the same `TopicPartition` (hashing each would call its Python __hash__),
    # and `list.count` compares by identity before it calls __eq__ (a third of the time of
    # a set of ids). Equal partitions that are not the same object make one range either way.
    partitions = list(map(_PARTITION, rows))
    if partitions and partitions.count(partitions[0]) == len(partitions):
        topic, partition = partitions[0].topic, partitions[0].partition
        offsets = list(map(_OFFSET, rows))
        return (OffsetRange(topic, partition, min(offsets), max(offsets)),)
    ranges: dict[tuple[str, int], tuple[int, int]] = {}
    for row in rows:
        key, offset = (row[6].topic, row[6].partition), row[7]
        low, high = ranges.get(key, (offset, offset))
        ranges[key] = (min(low, offset), max(high, offset))
    return tuple(OffsetRange(t, p, low, high) for (t, p), (low, high) in sorted(ranges.items()))


__all__ = [
    "ERROR_STREAM",
    "Performance",
    "PerformanceState",
    "VersionPerformance",
]


class Performance:
    """The performance streams of every model version (one owner for their state)."""

    def __init__(self, config: Config, load_profile: ProfileLoader | None = None) -> None:
        """``load_profile``: the monitor's, for the reference pairs a profile may hold."""
        self.config = config
        self._load_profile = load_profile
        self.versions: dict[tuple[str, str], VersionPerformance] = {}

    def _version(self, model: str, version: str) -> VersionPerformance:
        key = (model, version)
        found = self.versions.get(key)
        if found is None:
            detection = self.config.detection_for(model)
            settings = self.config.performance
            budget = settings.false_alarm_budget_labels or detection.false_alarm_budget_events
            profile = None if self._load_profile is None else self._load_profile(model, version)
            found = self.versions[key] = VersionPerformance(
                model,
                version,
                settings,
                budget,
                detection.adwin_delta,
                profile.performance_pairs if profile is not None else (),
            )
        return found

    def latencies(
        self,
        model: str,
        version: str,
        values: FloatArray,
        times: FloatArray,
        records: Sequence[Record],
    ) -> list[Evaluation]:
        """Fold a version's monitored events' latencies (NaN: none) in event order."""
        found = self._version(model, version)
        if found.latency is None:
            found.latency = self._latency(model, version)
        return self._shown(found.latency.update(values, times, records))

    def _latency(self, model: str, version: str) -> VersionLatency:
        detection = self.config.detection_for(model)
        return VersionLatency(
            model,
            version,
            detection.warmup_events,
            detection.window_size,
            min(detection.window_size / detection.false_alarm_budget_events, 0.5),
            self.config.performance.latency_slo_ms,
        )

    def update(
        self, pairs: Sequence[Joined], counts: Counter[tuple[str, str]] | None = None
    ) -> list[Evaluation]:
        """Fold joined pairs in, per model version in join order; pairs a version cannot
        score (a label or prediction that is no class or number of its task) are counted
        in ``counts`` (the join's outcomes) as ``(model, "unscored")``."""
        if counts is None:
            counts = Counter()
        if not pairs or not self.config.performance.enabled:
            return []
        by_version: dict[tuple[str, str], list[Joined]] = {}
        for key, run in itertools.groupby(pairs, _VERSION):  # runs of one version, in C
            by_version.setdefault(key, []).extend(run)
        evaluations: list[Evaluation] = []
        for (model, version), group in by_version.items():
            stream = self._version(model, version)
            evaluations += stream.update(group)
            if stream.unscored:
                counts[model, "unscored"] += stream.unscored
                stream.unscored = 0
        return self._shown(evaluations)

    def coverage(
        self, verdicts: Sequence[tuple[str, str, bool]], record: Record
    ) -> list[Evaluation]:
        """Fold label coverage verdicts ``(model, version, covered)`` in order (checked
        only with ``labels.min_coverage`` set)."""
        labels = self.config.labels
        if not verdicts or labels.min_coverage <= 0:
            return []
        by_version: dict[tuple[str, str], list[bool]] = {}
        for model, version, covered in verdicts:
            by_version.setdefault((model, version), []).append(covered)
        evaluations: list[Evaluation] = []
        for (model, version), flags in by_version.items():
            evaluations += self._version(model, version).coverage(
                flags, labels.coverage_window, labels.min_coverage, record
            )
        return self._shown(evaluations)

    def _shown(self, evaluations: list[Evaluation]) -> list[Evaluation]:
        """Keep each version's latest own evidence with its state (what its gauges show)."""
        for evaluation in evaluations:
            found = self.versions.get((evaluation.model, evaluation.version))
            if found is not None:
                found.shown.update(evaluation.own_evidence())
        return evaluations

    def shown(self) -> Iterator[tuple[str, str, str, float]]:
        """What every version's performance gauges show: (model, version, metric, value)."""
        for (model, version), found in self.versions.items():
            for name, value in found.shown.items():
                yield model, version, name, value

    def snapshot(self, key: tuple[str, str]) -> tuple[dict[str, object], State] | None:
        found = self.versions.get(key)
        if found is None:
            return None
        state, arrays = found.snapshot()
        return state.model_dump(), arrays

    def restore(self, key: tuple[str, str], document: object, arrays: State) -> None:
        """Restore a version's stream (`StateError` if the document is not one)."""
        state = PerformanceState.load(document, f"performance state of {key[0]}/{key[1]}")
        found = self._version(*key)
        if state.latency is not None:
            found.latency = self._latency(*key)
        found.restore(state, arrays)

    def drop(self, keys: Sequence[tuple[str, str]]) -> None:
        for key in keys:
            self.versions.pop(key, None)
