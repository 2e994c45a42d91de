"""Decoding inference events: Kafka records in, per-model-version groups and bad records out.

Decoding never raises on bad input: a record that is not JSON, not an object, lacks the model
or its features, or is too large becomes a `BadRecord` carrying the original record and a
reason, so the daemon can dead-letter it and count it without stopping the partition
(DESIGN.md section 2.1).
"""

from __future__ import annotations

import array
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from connectors.stream import Record
from detectors.detection import FloatArray
from monitord.clock import parse_event_time
from monitord.config import EventFields

UNVERSIONED = "unversioned"
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
    ) -> tuple[FloatArray, npt.NDArray[np.object_], npt.NDArray[np.bool_]]:
        """``(numeric (n, p), categorical (n, c), bad-row mask (n,))`` for ``group``."""
        n = len(group)
        if group.columns is self:
            features, bad = self._numeric_features(group)
            categorical_rows = group.categorical_rows
        else:  # decoded before these columns were known
            rows = [self.rows(features) for features in group.features]
            features, bad = _numeric_table([row[0] for row in rows], len(self._numeric_names))
            categorical_rows = [row[1] for row in rows]
        numeric = np.empty((n, len(self.numeric)))
        numeric[:, [j for j, name in enumerate(self.numeric) if name != PREDICTION]] = features
        categorical = np.empty((n, len(self.categorical)), dtype=object)
        feature_columns = [j for j, name in enumerate(self.categorical) if name != PREDICTION]
        if feature_columns:
            table = np.array(categorical_rows, dtype=object).reshape(n, len(feature_columns))
            categorical[:, feature_columns] = _categories(table)
        if PREDICTION in self.numeric:
            j = self.numeric.index(PREDICTION)
            numeric[:, j], wrong = numeric_column_values(group.predictions)
            bad |= wrong
        if PREDICTION in self.categorical:
            j = self.categorical.index(PREDICTION)
            categorical[:, j] = _categories(np.array(group.predictions, dtype=object))
        return numeric, categorical, bad

    def _numeric_features(self, group: EventGroup) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """``(n, q)`` numeric feature values of a group decoded with these columns, and the
        rows holding a non-number."""
        n, q = len(group), len(self._numeric_names)
        kept = np.frombuffer(group.numeric_values, dtype=np.float64).reshape(-1, q)
        if not group.numeric_held:
            return kept, np.zeros(n, dtype=bool)
        held = np.zeros(n, dtype=bool)
        held[[row for row, _ in group.numeric_held]] = True
        table = np.empty((n, q))
        table[~held] = kept
        try:
            converted = np.array([values for _, values in group.numeric_held], dtype=np.float64)
            if kept.shape[0] and converted.shape != (len(group.numeric_held), q):
                raise ValueError("nested values: one array of all rows would be ragged")
            table[held] = converted.reshape(len(group.numeric_held), q)
        except (TypeError, ValueError):
            # Which values are bad depends on every value of the column, booleans included,
            # which the kept rows no longer show: decode their events again.
            return _numeric_table(self._original_rows(group), q)
        return table, np.zeros(n, dtype=bool)

    def _original_rows(self, group: EventGroup) -> list[tuple[Any, ...]]:
        return [
            self.rows(orjson.loads(record.value)[group.features_field])[0]  # type: ignore[arg-type]
            for record in group.records
        ]


def _numeric_table(
    rows: list[tuple[Any, ...]], width: int
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """``(n, width)`` values of numeric feature rows, and the rows holding a non-number."""
    n = len(rows)
    bad = np.zeros(n, dtype=bool)
    try:
        return np.array(rows, dtype=np.float64).reshape(n, width), bad
    except (TypeError, ValueError):  # a non-number somewhere: find the rows, column-wise
        table = np.array(rows, dtype=object).reshape(n, width)
        values = np.empty((n, width))
        for k in range(width):
            values[:, k], wrong = numeric_column_values(table[:, k].tolist())
            bad |= wrong
        return values, bad


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        return operator.itemgetter(*names)
    if names:
        (name,) = names
        return lambda features: (features[name],)
    return lambda features: ()


def _categories(values: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """Strings as they are, booleans as "true"/"false", numbers as text, None kept."""
    out = values.copy()
    flat = out.reshape(-1)
    for i, value in enumerate(flat.tolist()):
        if value is not None and not isinstance(value, str):
            flat[i] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out


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
    features_field: str = "features"  # where the features are in an event's JSON
    features: list[dict[str, Any]] = field(default_factory=list)
    # Row-major float64, (rows not held) x (numeric features). Not a tuple per row: the
    # garbage collector would walk every value of every live row tuple.
    numeric_values: array.array[float] = field(default_factory=lambda: array.array("d"))
    numeric_held: list[tuple[int, tuple[Any, ...]]] = field(default_factory=list)
    categorical_rows: list[tuple[Any, ...]] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    stamps: list[Any] = field(default_factory=list)  # the events' own timestamps, raw
    records: list[Record] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def event_times(self) -> FloatArray:
        """``(n,)`` seconds: each event's timestamp, else its record's (Kafka) timestamp."""
        n = len(self.records)
        if self.stamps.count(None) == n:  # no event carries its own: one C-level pass
            return np.fromiter(map(_TIMESTAMP_MS, self.records), np.float64, n) / 1000.0
        return np.array(
            [
                record.timestamp_ms / 1000.0 if stamp is None else _event_time(stamp, record)
                for stamp, record in zip(self.stamps, self.records, strict=True)
            ],
            dtype=np.float64,
        )


@dataclass
class DecodedBatch:
    groups: dict[tuple[str, str], EventGroup]
    bad: list[BadRecord]


ColumnsLookup = Callable[[str, str], Columns | None]

_TIMESTAMP_MS = operator.attrgetter("timestamp_ms")


def decode(
    records: list[Record], fields: EventFields, columns_for: ColumnsLookup = lambda m, v: None
) -> DecodedBatch:
    """Split ``records`` into per-(model, version) groups and bad records, keeping order.

    ``columns_for(model, version)`` gives a version's known columns so their values are
    pulled out while each event is at hand (one pass, no event kept alive).
    """
    groups: dict[tuple[str, str], EventGroup] = {}
    bad: list[BadRecord] = []
    f_model, f_version, f_features = fields.model, fields.model_version, fields.features
    f_prediction, f_time, limit = fields.prediction, fields.timestamp, fields.max_event_bytes
    loads = orjson.loads
    model_now = version_now = ""  # the current group's; no event has an empty model
    group = EventGroup(model_now, version_now)  # replaced at the first event
    columns: Columns | None = None
    numeric_get = categorical_get = _getter([])
    # The current group's list methods, bound once per group rather than looked up per event.
    keep_features, keep_numeric = group.features.append, group.numeric_values.extend
    keep_prediction, keep_stamp = group.predictions.append, group.stamps.append
    keep_record, has_categorical = group.records.append, False
    # The loop is the hot path: one try for the well-formed case, exact type checks, and the
    # last group and its columns reused (a partition's consecutive events usually share a
    # model). Records that fail are examined again by _reject, off the hot path, for the
    # precise reason.
    for record in records:
        value = record.value
        try:
            if len(value) > limit:  # type: ignore[arg-type]  # None: TypeError, rejected
                raise ValueError
            event = loads(value)  # type: ignore[arg-type]
            model = event[f_model]
            features = event[f_features]
        except (TypeError, ValueError, KeyError, IndexError):
            bad.append(_reject(record, fields))
            continue
        if type(model) is not str or not model or type(features) is not dict:
            bad.append(_reject(record, fields))
            continue
        version = event.get(f_version)
        if type(version) is not str:
            version = UNVERSIONED if version is None else str(version)
        if model != model_now or version != version_now:
            model_now, version_now = model, version
            found = groups.get((model, version))
            if found is None:
                known = columns_for(model, version)
                found = groups[model, version] = EventGroup(model, version, known, f_features)
            group, columns = found, found.columns
            if columns is not None:
                numeric_get, categorical_get = columns._numeric_get, columns._categorical_get
                has_categorical = bool(columns._categorical_names)
            keep_features, keep_numeric = group.features.append, group.numeric_values.extend
            keep_prediction, keep_stamp = group.predictions.append, group.stamps.append
            keep_record = group.records.append
        if columns is None:
            keep_features(features)
        else:
            # Columns.rows, inlined: this runs once per event.
            try:
                numeric_row = numeric_get(features)
            except KeyError:  # a feature is absent: missing, as if null
                numeric_row = columns.rows(features)[0]
            try:
                keep_numeric(numeric_row)
            except (TypeError, ValueError, OverflowError):  # not all numbers: numpy decides
                # extend() stops at the first non-number: drop what it took of the row.
                whole_rows = len(group) - len(group.numeric_held)
                del group.numeric_values[whole_rows * len(numeric_row) :]
                group.numeric_held.append((len(group), numeric_row))
            if has_categorical:  # else categorical_rows stays empty, unread
                try:
                    group.categorical_rows.append(categorical_get(features))
                except KeyError:
                    group.categorical_rows.append(columns.rows(features)[1])
        keep_prediction(event.get(f_prediction))
        keep_stamp(event.get(f_time))
        keep_record(record)
    return DecodedBatch(groups, bad)


def _reject(record: Record, fields: EventFields) -> BadRecord:
    """Why ``record`` is not an inference event (it failed the fast path of `decode`)."""
    value = record.value
    if value is None:
        return BadRecord(record, "empty", "record has no value")
    if len(value) > fields.max_event_bytes:
        return BadRecord(record, "oversize", f"{len(value)} bytes > {fields.max_event_bytes}")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return BadRecord(record, "invalid_json", str(exc))
    if not isinstance(event, dict):
        return BadRecord(record, "not_an_object", f"got {type(event).__name__}")
    model = event.get(fields.model)
    if not isinstance(model, str) or not model:
        return BadRecord(record, "missing_model", f"field {fields.model!r} missing or empty")
    return BadRecord(record, "missing_features", f"field {fields.features!r} is not an object")


def _event_time(stamp: object, record: Record) -> float:
    seconds = parse_event_time(stamp)
    return record.timestamp_ms / 1000.0 if math.isnan(seconds) else seconds


def numeric_column_values(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(float64 values, bad-row mask)``: None/NaN -> NaN; strings and other types are bad."""
    try:
        array = np.array(values, dtype=np.float64)
        if array.shape == (len(values),):  # not nested lists: [[1.0], ...] is no number
            return array, np.zeros(len(values), dtype=bool)
    except (TypeError, ValueError):
        pass
    out = np.empty(len(values))
    bad = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):  # slow path only for batches holding a bad value
        if v is None:
            out[i] = np.nan
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[i] = v
        else:
            out[i], bad[i] = np.nan, True
    return out, bad
