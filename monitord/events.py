"""Decoding inference events: Kafka records in, per-model-version groups and bad records out.

Decoding never raises on bad input: a record that is not JSON, not an object, lacks the model
or its features, or is too large becomes a `BadRecord` carrying the original record and a
reason, so the daemon can dead-letter it and count it without stopping the partition
(DESIGN.md section 2.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from connectors.stream import Record
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


@dataclass
class EventGroup:
    """Decoded events of one model version in arrival order; ``records`` aligns with rows."""

    model: str
    version: str
    features: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)
    event_times: list[float] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class DecodedBatch:
    groups: dict[tuple[str, str], EventGroup]
    bad: list[BadRecord]


def decode(records: list[Record], fields: EventFields) -> DecodedBatch:
    """Split ``records`` into per-(model, version) groups and bad records, keeping order."""
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
            group = groups[key] = EventGroup(model, version)
        group.features.append(features)
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
