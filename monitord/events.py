"""Decoding inference events: Kafka records in, per-model-version groups and bad records out.

Decoding never raises on bad input: a record that is not JSON, not an object, lacks the model
or its features, or is too large becomes a `BadRecord` carrying the original record and a
reason, so the daemon can dead-letter it and count it without stopping the partition
(DESIGN.md section 2.1).
"""

from __future__ import annotations

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
        self._numeric_features = [n for n in numeric if n != PREDICTION]
        self._categorical_features = [n for n in categorical if n != PREDICTION]
        self._numeric_get = _getter(self._numeric_features)
        self._categorical_get = _getter(self._categorical_features)

    def rows(self, features: dict[str, Any]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """``(numeric, categorical)`` feature values of one event (no prediction)."""
        try:
            return self._numeric_get(features), self._categorical_get(features)
        except KeyError:  # a feature is absent: missing, as if null
            return (
                tuple(features.get(n) for n in self._numeric_features),
                tuple(features.get(n) for n in self._categorical_features),
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
        for row, prediction in zip(features, predictions, strict=True):
            items = [*row.items(), (PREDICTION, prediction)] if with_prediction else row.items()
            for name, value in items:
                if isinstance(value, bool | str):
                    categorical.setdefault(name)
                elif isinstance(value, int | float):
                    numeric.setdefault(name)
        return cls(tuple(n for n in numeric if n not in categorical), tuple(categorical))

    def arrays(
        self, group: EventGroup
    ) -> tuple[FloatArray, npt.NDArray[np.object_], npt.NDArray[np.bool_]]:
        """``(numeric (n, p), categorical (n, c), bad-row mask (n,))`` for ``group``."""
        if group.columns is not self:  # decoded before these columns were known
            group.numeric_rows, group.categorical_rows = [], []
            for features in group.features:
                numeric_row, categorical_row = self.rows(features)
                group.numeric_rows.append(numeric_row)
                group.categorical_rows.append(categorical_row)
        n = len(group)
        numeric = np.empty((n, len(self.numeric)))
        feature_columns = [j for j, name in enumerate(self.numeric) if name != PREDICTION]
        try:
            numeric[:, feature_columns] = np.array(group.numeric_rows, dtype=np.float64).reshape(
                n, len(feature_columns)
            )
            bad = np.zeros(n, dtype=bool)
        except (TypeError, ValueError):  # a non-number somewhere: find the rows, column-wise
            table = np.array(group.numeric_rows, dtype=object).reshape(n, len(feature_columns))
            bad = np.zeros(n, dtype=bool)
            for k, j in enumerate(feature_columns):
                numeric[:, j], wrong = numeric_column_values(table[:, k].tolist())
                bad |= wrong
        categorical = np.empty((n, len(self.categorical)), dtype=object)
        feature_columns = [j for j, name in enumerate(self.categorical) if name != PREDICTION]
        if feature_columns:
            table = np.array(group.categorical_rows, dtype=object).reshape(n, len(feature_columns))
            categorical[:, feature_columns] = _categories(table)
        if PREDICTION in self.numeric:
            j = self.numeric.index(PREDICTION)
            numeric[:, j], wrong = numeric_column_values(group.predictions)
            bad |= wrong
        if PREDICTION in self.categorical:
            j = self.categorical.index(PREDICTION)
            categorical[:, j] = _categories(np.array(group.predictions, dtype=object))
        return numeric, categorical, bad


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
    pulled out into ``numeric_rows``/``categorical_rows``; otherwise ``features`` holds the
    raw feature objects until the monitor has inferred the columns.
    """

    model: str
    version: str
    columns: Columns | None = None
    features: list[dict[str, Any]] = field(default_factory=list)
    numeric_rows: list[tuple[Any, ...]] = field(default_factory=list)
    categorical_rows: list[tuple[Any, ...]] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    stamps: list[Any] = field(default_factory=list)  # the events' own timestamps, raw
    records: list[Record] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def event_times(self) -> FloatArray:
        """``(n,)`` seconds: each event's timestamp, else its record's (Kafka) timestamp."""
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
    key: tuple[str, str] | None = None
    group: EventGroup | None = None
    # The loop is the hot path: one try for the well-formed case, exact type checks, and the
    # last group reused (a partition's consecutive events usually share a model). Records
    # that fail are examined again by _reject, off the hot path, for the precise reason.
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
        if key is None or key[0] != model or key[1] != version:
            key = (model, version)
            group = groups.get(key)
            if group is None:
                group = groups[key] = EventGroup(model, version, columns_for(model, version))
        assert group is not None
        if group.columns is None:
            group.features.append(features)
        else:
            numeric_row, categorical_row = group.columns.rows(features)
            group.numeric_rows.append(numeric_row)
            group.categorical_rows.append(categorical_row)
        group.predictions.append(event.get(f_prediction))
        group.stamps.append(event.get(f_time))
        group.records.append(record)
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
        return np.array(values, dtype=np.float64), np.zeros(len(values), dtype=bool)
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
