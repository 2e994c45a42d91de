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
        """Columns seen in events: numbers are numeric, strings and booleans categorical."""
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
    event_times: list[float] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


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
    for record in records:
        value = record.value
        if value is None:
            bad.append(BadRecord(record, "empty", "record has no value"))
            continue
        if len(value) > limit:
            bad.append(BadRecord(record, "oversize", f"{len(value)} bytes > {limit}"))
            continue
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            bad.append(BadRecord(record, "invalid_json", str(exc)))
            continue
        if not isinstance(event, dict):
            bad.append(BadRecord(record, "not_an_object", f"got {type(event).__name__}"))
            continue
        model = event.get(f_model)
        if not isinstance(model, str) or not model:
            bad.append(BadRecord(record, "missing_model", f"field {f_model!r} missing or empty"))
            continue
        features = event.get(f_features)
        if not isinstance(features, dict):
            bad.append(
                BadRecord(record, "missing_features", f"field {f_features!r} is not an object")
            )
            continue
        version = event.get(f_version)
        version = UNVERSIONED if version is None else str(version)
        key = (model, version)
        group = groups.get(key)
        if group is None:
            group = groups[key] = EventGroup(model, version, columns_for(model, version))
        if group.columns is None:
            group.features.append(features)
        else:
            numeric_row, categorical_row = group.columns.rows(features)
            group.numeric_rows.append(numeric_row)
            group.categorical_rows.append(categorical_row)
        group.predictions.append(event.get(f_prediction))
        stamp = event.get(f_time)
        seconds = math.nan if stamp is None else parse_event_time(stamp)
        group.event_times.append(record.timestamp_ms / 1000.0 if math.isnan(seconds) else seconds)
        group.records.append(record)
    return DecodedBatch(groups, bad)


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
