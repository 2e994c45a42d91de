"""Decoding inference events: Kafka records in, per-model-version groups and bad records out.

Decoding never raises on bad input: a record that is not JSON, not an object, lacks the model
or its features, or is too large becomes a `BadRecord` carrying the original record and a
reason, so the daemon can dead-letter it and count it without stopping the partition
(DESIGN.md section 2.1).

Values follow one rule, whatever else is in the batch. A numeric column (the prediction
too) holds JSON numbers or booleans (true is 1) of magnitude at most 1e150; null or an absent
feature is missing; any other value, a string such as ``"12.5"`` or ``1e300`` included, makes
the event ``wrong_type``. A
categorical value is text as `detectors.profile.category_text` makes it (cut to 256
characters; booleans and numbers as written); an array or object makes the event
``wrong_type``. An event time is used when it parses and lies within
``events.max_time_ahead_s`` of its record's time; otherwise the record's (Kafka) time is used
and the event counted as untimed.
"""

from __future__ import annotations

import array
import itertools
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from connectors.stream import Record
from detectors.detection import FloatArray
from detectors.profile import CATEGORY_CHARS, category_text
from monitord.clock import EARLIEST_S, LATEST_S, now, parse_event_time
from monitord.config import EventFields

UNVERSIONED = "unversioned"
MAX_MAGNITUDE = 1e150
"""Largest magnitude a numeric value may have: sums of squares of a window's values must
stay finite (a value of 1e308 made a reference's variance infinite and blinded ADWIN)."""
PREDICTION = "@prediction"
"""Column name of the model's prediction, monitored like a feature."""


@dataclass(frozen=True)
class BadRecord:
    """A record that could not become an event. ``reason`` is a short stable label."""

    record: Record
    reason: str
    detail: str


class Columns:
    """The monitored columns of one model version: numeric and categorical names (the
    prediction among them as `PREDICTION`), and how to pull them out of an event."""

    def __init__(self, numeric: tuple[str, ...], categorical: tuple[str, ...]) -> None:
        self.numeric, self.categorical = numeric, categorical
        self._numeric_names = [n for n in numeric if n != PREDICTION]
        self._categorical_names = [n for n in categorical if n != PREDICTION]
        self._numeric_get = _getter(self._numeric_names)
        self._categorical_get = _getter(self._categorical_names)
        self.feature_names = frozenset(self._numeric_names + self._categorical_names)

    def rows(self, features: dict[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """``(numeric, categorical)`` feature values of one event (no prediction)."""
        try:
            return self._numeric_get(features), self._categorical_get(features)
        except KeyError:  # a feature is absent: missing, as if null
            return (
                tuple(features.get(n) for n in self._numeric_names),
                tuple(features.get(n) for n in self._categorical_names),
            )

    @classmethod
    def infer(
        cls, features: list[dict[str, Any]], predictions: list[Any], with_prediction: bool
    ) -> Columns:
        """Columns seen in events: numbers are numeric, strings and booleans categorical.

        Pass the events that become the reference: a column seen only later would have no
        reference values.
        """
        numeric: dict[str, None] = {}
        categorical: dict[str, None] = {}
        # Only a row's names and value types matter, and most rows repeat the first one's:
        # each distinct (names, types) is examined once, in order of first appearance.
        shapes = dict.fromkeys(
            (tuple(row), tuple(map(type, row.values())), type(prediction))
            for row, prediction in zip(features, predictions, strict=True)
        )
        for names, types, prediction_type in shapes:
            items = [*zip(names, types, strict=True)]
            for name, kind in [*items, (PREDICTION, prediction_type)] if with_prediction else items:
                if issubclass(kind, bool | str):
                    categorical.setdefault(name)
                elif issubclass(kind, int | float):
                    numeric.setdefault(name)
        return cls(tuple(n for n in numeric if n not in categorical), tuple(categorical))

    def arrays(
        self, group: EventGroup
    ) -> tuple[FloatArray, npt.NDArray[np.object_], dict[int, str]]:
        """``(numeric (n, p), categorical (n, c), wrong)`` for ``group``, where ``wrong``
        maps each row breaking the value rule (module docstring) to why."""
        n = len(group)
        wrong: dict[int, str] = {}
        if group.columns is self:
            features = self._numeric_features(group, wrong)
            categorical_rows = group.categorical_rows
        else:  # decoded before these columns were known
            rows = [self.rows(features) for features in group.features]
            features = _number_table([row[0] for row in rows], self._numeric_names, wrong)
            categorical_rows = [row[1] for row in rows]
        numeric = np.empty((n, len(self.numeric)))
        numeric[:, [j for j, name in enumerate(self.numeric) if name != PREDICTION]] = features
        categorical = np.empty((n, len(self.categorical)), dtype=object)
        feature_columns = [j for j, name in enumerate(self.categorical) if name != PREDICTION]
        if feature_columns:
            categorical[:, feature_columns] = _category_table(
                categorical_rows, self._categorical_names, wrong
            )
        if PREDICTION in self.numeric:
            j = self.numeric.index(PREDICTION)
            numeric[:, j] = _prediction_numbers(group.predictions, wrong)
        if PREDICTION in self.categorical:
            j = self.categorical.index(PREDICTION)
            predictions = [(prediction,) for prediction in group.predictions]
            categorical[:, j] = _category_table(predictions, [PREDICTION], wrong)[:, 0]
        huge = np.abs(numeric) > MAX_MAGNITUDE  # NaN compares False
        if huge.any():
            for i, j in zip(*np.nonzero(huge), strict=True):
                wrong.setdefault(int(i), too_large(self.numeric[j], float(numeric[i, j])))
        return numeric, categorical, wrong

    def _numeric_features(self, group: EventGroup, wrong: dict[int, str]) -> FloatArray:
        """``(n, q)`` numeric feature values of a group decoded with these columns."""
        n, q = len(group), len(self._numeric_names)
        kept_rows = n - len(group.numeric_held)
        kept = np.frombuffer(group.numeric_values, dtype=np.float64).reshape(kept_rows, q)
        if not group.numeric_held:
            return kept
        held = np.zeros(n, dtype=bool)
        held[[row for row, _ in group.numeric_held]] = True
        table = np.empty((n, q))
        table[~held] = kept
        table[held] = [
            _numbers(values, self._numeric_names, row, wrong) for row, values in group.numeric_held
        ]
        return table


def too_large(name: str, value: float) -> str:
    """Why a number breaks the rule by its size."""
    return f"{name!r} holds {value:.3g}, beyond the +-{MAX_MAGNITUDE:.0e} numbers may reach"


def _number_table(
    rows: list[tuple[Any, ...]], names: list[str], wrong: dict[int, str]
) -> FloatArray:
    """``(n, len(names))`` values of numeric rows; rows breaking the rule go in ``wrong``."""
    n, width = len(rows), len(names)
    try:  # all numbers (booleans included), the common case: one pass in C
        flat = array.array("d", itertools.chain.from_iterable(rows))
        return np.frombuffer(flat, dtype=np.float64).reshape(n, width)
    except (TypeError, ValueError, OverflowError):  # a null or a non-number somewhere
        table = np.empty((n, width))
        for i, row in enumerate(rows):
            table[i] = _numbers(row, names, i, wrong)
        return table


def _prediction_numbers(predictions: list[Any], wrong: dict[int, str]) -> FloatArray:
    """The predictions of a numeric prediction column, by `_number_table`'s rule."""
    try:  # all numbers: one pass in C, no tuple per row
        return np.frombuffer(array.array("d", predictions), dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        rows = [(prediction,) for prediction in predictions]
        return _number_table(rows, [PREDICTION], wrong)[:, 0]


def _numbers(
    row: tuple[Any, ...], names: list[str], index: int, wrong: dict[int, str]
) -> list[float]:
    """One row by the rule: numbers and booleans as floats, null as NaN, else wrong."""
    out = []
    for name, value in zip(names, row, strict=True):
        if value is None:
            out.append(math.nan)
        elif isinstance(value, int | float):
            out.append(float(value))
        else:
            out.append(math.nan)
            wrong.setdefault(index, f"{name!r} holds a JSON {_json_type(value)}, not a number")
    return out


def _category_table(
    rows: list[tuple[Any, ...]], names: list[str], wrong: dict[int, str]
) -> npt.NDArray[np.object_]:
    """``(n, len(names))`` category texts of categorical rows (None: missing); rows holding
    an array or an object go in ``wrong``."""
    n, width = len(rows), len(names)
    flat = list(itertools.chain.from_iterable(rows))
    for i, value in enumerate(flat):
        if type(value) is str:
            if len(value) > CATEGORY_CHARS:
                flat[i] = value[:CATEGORY_CHARS]
        elif value is not None:
            if isinstance(value, list | dict):
                row, name = divmod(i, width)
                wrong.setdefault(row, f"{names[name]!r} holds a JSON {_json_type(value)}")
                flat[i] = None
            else:
                flat[i] = category_text(value)
    # Filled element by element: numpy would read nested lists as more dimensions.
    table = np.empty(n * width, dtype=object)
    table[:] = flat
    return table.reshape(n, width)


def _json_type(value: object) -> str:
    names = {str: "string", list: "array", dict: "object", bool: "boolean"}
    return names.get(type(value), type(value).__name__)


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        return operator.itemgetter(*names)
    if names:
        (name,) = names
        return lambda features: (features[name],)
    return lambda features: ()


@dataclass
class EventGroup:
    """Decoded events of one model version in arrival order; ``records`` aligns with rows.

    When the version's `Columns` were known at decode time, each event's values are already
    pulled out: its numeric feature values appended to ``numeric_values`` when all are
    numbers, else held in ``numeric_held`` with the row index for numpy to convert (a null,
    say), and its categorical ones in ``categorical_rows``. Otherwise ``features`` holds the
    raw feature objects until the monitor has inferred the columns.
    """

    model: str
    version: str
    columns: Columns | None = None
    max_ahead_s: float = math.inf  # event times further ahead of the record's: not believed
    features: list[dict[str, Any]] = field(default_factory=list)
    # Row-major float64, (rows not held) x (numeric features). Not a tuple per row: the
    # garbage collector would walk every value of every live row tuple.
    numeric_values: array.array[float] = field(default_factory=lambda: array.array("d"))
    numeric_held: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)
    categorical_rows: list[tuple[Any, ...]] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    stamps: list[Any] = field(default_factory=list)  # the events' own timestamps, raw
    event_ids: list[Any] = field(default_factory=list)  # raw, None where absent
    labels: list[Any] = field(default_factory=list)  # inline labels, raw, None where absent
    latencies: list[Any] = field(default_factory=list)  # raw, None where absent
    records: list[Record] = field(default_factory=list)
    # Feature names the known columns do not hold (at most MAX_EXTRA_NAMES of them).
    extra_names: dict[str, None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.records)

    def rows_from(self, start: int) -> EventGroup:
        """The events from row ``start`` on, of a group decoded without columns."""
        assert self.columns is None, "only a group holding its raw features can be cut"
        return EventGroup(
            self.model,
            self.version,
            None,
            self.max_ahead_s,
            self.features[start:],
            predictions=self.predictions[start:],
            stamps=self.stamps[start:],
            event_ids=self.event_ids[start:],
            labels=self.labels[start:],
            latencies=self.latencies[start:],
            records=self.records[start:],
        )

    def unknown_names(self, columns: Columns) -> list[str]:
        """Feature names of these events that ``columns`` does not hold (a bounded few)."""
        if self.columns is columns:
            return list(self.extra_names)
        found: dict[str, None] = {}
        for features in self.features:
            if len(found) >= MAX_EXTRA_NAMES:
                break
            _note_extra(features, columns.feature_names, found)
        return list(found)

    def event_times(self) -> tuple[FloatArray, int]:
        """``(n,)`` seconds of each event, and how many events' own times were not used.

        An event's own time is used when it parses and is at most ``max_ahead_s`` ahead of
        its record's (Kafka) time, else the record's time. A record time outside the
        calendar (-1: unknown) reads as the wall clock now.
        """
        n = len(self.records)
        record_ms = np.fromiter(map(_TIMESTAMP_MS, self.records), np.float64, n)
        record_s = record_ms / 1000.0
        outside = ~((record_s >= EARLIEST_S) & (record_s <= LATEST_S))
        if outside.any():
            record_s[outside] = now()
        if self.stamps.count(None) == n:  # no event carries its own time
            return record_s, 0
        own = np.fromiter(
            (math.nan if stamp is None else parse_event_time(stamp) for stamp in self.stamps),
            np.float64,
            n,
        )
        given = np.fromiter((stamp is not None for stamp in self.stamps), np.bool_, n)
        # Only a record time the producer or broker set (> 0) bounds how far ahead is believable.
        believed = ~np.isnan(own) & ~((record_ms > 0) & (own > record_s + self.max_ahead_s))
        return np.where(believed, own, record_s), int((given & ~believed).sum())


@dataclass
class DecodedBatch:
    groups: dict[tuple[str, str], EventGroup]
    bad: list[BadRecord]


ColumnsLookup = Callable[[str, str], Columns | None]
Decoder = Callable[[list[Record], EventFields, ColumnsLookup], DecodedBatch]
"""What turns a batch's inference records into event groups: `decode`, or a source's own
(replay hands over rows it read by column, `monitord.columnar`)."""

MAX_EXTRA_NAMES = 128
"""Unknown feature names collected per group: enough to report, bounded against events that
carry thousands."""


def _note_extra(features: dict[str, Any], known: frozenset[str], found: dict[str, None]) -> None:
    for name in features:
        if name not in known and len(found) < MAX_EXTRA_NAMES:
            found[name] = None


_TIMESTAMP_MS = operator.attrgetter("timestamp_ms")


def decode(
    records: list[Record], fields: EventFields, columns_for: ColumnsLookup = lambda m, v: None
) -> DecodedBatch:
    """Split ``records`` into per-(model, version) groups and bad records, keeping order;
    ``columns_for(model, version)`` gives a version's known columns, so their values are
    pulled out while each event is at hand (one pass, no event kept alive)."""
    bad: list[BadRecord] = []
    opened: dict[tuple[str, str], _Opened] = {}  # each group and what decode reads it with
    f_model, f_version, f_features = fields.model, fields.model_version, fields.features
    f_prediction, f_time, limit = fields.prediction, fields.timestamp, fields.max_event_bytes
    f_id, f_label, f_latency, loads = fields.event_id, fields.label, fields.latency, orjson.loads
    # The hot path: one try for the well-formed case, exact type checks, and the current
    # group's readers and list methods in locals, set when the model or version changes.
    model_now = version_now = ""  # no event has an empty model: the first opens its group
    for record in records:
        value = record.value
        try:
            if value is None or len(value) > limit:
                raise ValueError
            event = loads(value)
            model, features = event[f_model], event[f_features]
            if type(model) is not str or not model or type(features) is not dict:
                raise ValueError
        except (TypeError, ValueError, KeyError, IndexError):
            bad.append(_reject(record, fields))
            continue
        version = event.get(f_version)
        if type(version) is not str:
            version = UNVERSIONED if version is None else str(version)
        if model != model_now or version != version_now:
            model_now, version_now = model, version
            group, readers, appenders, optional = _open(opened, fields, columns_for, model, version)
            columns, numeric_get, categorical_get, known_names, known_count = readers
            keep_features, keep_numeric, keep_categorical, keep_record = appenders
            keep_prediction, keep_stamp, keep_id, keep_label, keep_latency = optional
        if columns is None:
            keep_features(features)
        else:  # Columns.rows inlined, as this runs once per event
            try:
                numeric_row = numeric_get(features)
            except KeyError:  # a feature is absent: missing, as if null
                numeric_row = columns.rows(features)[0]
            if len(features) != known_count and len(group.extra_names) < MAX_EXTRA_NAMES:
                _note_extra(features, known_names, group.extra_names)  # names beyond the known
            try:
                keep_numeric(numeric_row)
            except (TypeError, ValueError, OverflowError):  # not all numbers: numpy decides
                _hold_numbers(group, numeric_row)
            if categorical_get is not None:  # else categorical_rows stays empty, unread
                try:
                    keep_categorical(categorical_get(features))
                except KeyError:
                    keep_categorical(columns.rows(features)[1])
        keep_prediction(event.get(f_prediction))
        keep_stamp(event.get(f_time))
        keep_id(event.get(f_id))
        keep_label(event.get(f_label))
        keep_latency(event.get(f_latency))
        keep_record(record)
    return DecodedBatch({key: found[0] for key, found in opened.items()}, bad)


_Getter = Callable[[dict[str, Any]], tuple[Any, ...]]
_Append = Callable[[Any], None]
_Readers = tuple[Columns | None, _Getter, _Getter | None, frozenset[str], int]
"""A group's columns (None: not known yet), the numeric and categorical getters (None: no
categorical feature), the known feature names and their number."""
_NO_READERS: _Readers = (None, _getter([]), None, frozenset(), 0)


_Appenders = tuple[
    _Append, Callable[[Iterable[float]], None], Callable[[tuple[Any, ...]], None], _Append
]
"""A group's list methods for an event's features (raw, numeric, categorical) and record."""
_Optional = tuple[_Append, _Append, _Append, _Append, _Append]
"""A group's list methods for the fields an event may lack: prediction, time, id, label and
latency."""


_Opened = tuple[EventGroup, _Readers, _Appenders, _Optional]


def _open(
    opened: dict[tuple[str, str], _Opened],
    fields: EventFields,
    columns_for: ColumnsLookup,
    model: str,
    version: str,
) -> _Opened:
    """The group of ``model``/``version`` for `decode` to fill, its readers, and its list
    methods bound once per group rather than looked up per event; the group is created
    with its known columns (if any) when the batch first meets it. A plain tuple: `decode`
    unpacks it."""
    found = opened.get((model, version))
    if found is not None:
        return found
    group = EventGroup(model, version, columns_for(model, version), fields.max_time_ahead_s)
    columns, readers = group.columns, _NO_READERS
    if columns is not None:
        categorical_get = columns._categorical_get if columns._categorical_names else None
        names = columns.feature_names
        readers = (columns, columns._numeric_get, categorical_get, names, len(names))
    appenders = (
        group.features.append,
        group.numeric_values.extend,
        group.categorical_rows.append,
        group.records.append,
    )
    optional = (
        group.predictions.append,
        group.stamps.append,
        group.event_ids.append,
        group.labels.append,
        group.latencies.append,
    )
    found = opened[model, version] = (group, readers, appenders, optional)
    return found


def _hold_numbers(group: EventGroup, row: tuple[Any, ...]) -> None:
    """Hold an event whose numeric values are not all numbers (a null, say) for numpy to
    convert, by its row index."""
    # extend() stops at the first non-number: drop what it took of the row.
    whole_rows = len(group) - len(group.numeric_held)
    del group.numeric_values[whole_rows * len(row) :]
    group.numeric_held.append((len(group), row))


def json_object(record: Record, max_bytes: int) -> dict[str, Any] | BadRecord:
    """``record``'s value as a JSON object, or why it is none: empty, larger than
    ``max_bytes``, not JSON, or not an object (the reasons every kind of record shares)."""
    value = record.value
    if value is None:
        return BadRecord(record, "empty", "record has no value")
    if len(value) > max_bytes:
        return BadRecord(record, "oversize", f"{len(value)} bytes > {max_bytes}")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return BadRecord(record, "invalid_json", str(exc))
    if not isinstance(event, dict):
        return BadRecord(record, "not_an_object", f"got {type(event).__name__}")
    return event


def _reject(record: Record, fields: EventFields) -> BadRecord:
    """Why ``record`` is not an inference event (it failed the fast path of `decode`)."""
    event = json_object(record, fields.max_event_bytes)
    if isinstance(event, BadRecord):
        return event
    model = event.get(fields.model)
    if not isinstance(model, str) or not model:
        return BadRecord(record, "missing_model", f"field {fields.model!r} missing or empty")
    return BadRecord(record, "missing_features", f"field {fields.features!r} is not an object")


__all__ = [
    "MAX_EXTRA_NAMES",
    "MAX_MAGNITUDE",
    "PREDICTION",
    "UNVERSIONED",
    "BadRecord",
    "Columns",
    "ColumnsLookup",
    "DecodedBatch",
    "Decoder",
    "EventGroup",
    "decode",
    "json_object",
    "too_large",
]
