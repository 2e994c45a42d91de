from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from connectors.stream import Record
from monitord.config import EventFields
from monitord.events import PREDICTION, UNVERSIONED, Columns, decode


def _record(offset: int, value: bytes | None) -> Record:
    return Record("in", 0, offset, b"k", value, 1_700_000_000_000)


def test_groups_by_model_and_version_in_order() -> None:
    events = [
        {
            "model": "a",
            "model_version": 1,
            "features": {"x": 1.0},
            "timestamp": "2026-11-23T12:00:00.500Z",
        },
        {"model": "b", "features": {"x": 2.0}, "prediction": 0.3},
        {"model": "a", "model_version": "1", "features": {"x": 3.0}},
    ]
    decoded = decode([_record(i, orjson.dumps(e)) for i, e in enumerate(events)], EventFields())
    assert decoded.bad == []
    assert list(decoded.groups) == [("a", "1"), ("b", UNVERSIONED)]
    group = decoded.groups[("a", "1")]
    assert [f["x"] for f in group.features] == [1.0, 3.0]
    assert [r.offset for r in group.records] == [0, 2]
    assert math.isclose(group.event_times()[0], 1795435200.5)
    assert group.event_times()[1] == 1_700_000_000.0  # falls back to the record timestamp
    assert decoded.groups[("b", UNVERSIONED)].predictions == [0.3]


def test_bad_records_carry_reasons_and_never_stop_the_batch() -> None:
    values = [
        b"{not json",
        b"[1, 2]",
        b'{"features": {"x": 1}}',
        b'{"model": "a", "features": 3}',
        None,
        b'{"model": "a", "features": {"x": 1}}' + b" " * 100,
        b'{"model": "a", "features": {"x": 1}}',
    ]
    decoded = decode([_record(i, v) for i, v in enumerate(values)], EventFields(max_event_bytes=80))
    reasons = [(b.record.offset, b.reason) for b in decoded.bad]
    assert reasons == [
        (0, "invalid_json"),
        (1, "not_an_object"),
        (2, "missing_model"),
        (3, "missing_features"),
        (4, "empty"),
        (5, "oversize"),
    ]
    assert len(decoded.groups[("a", UNVERSIONED)]) == 1


def test_field_names_are_configurable() -> None:
    fields = EventFields(model="m", features="f", model_version="v")
    decoded = decode([_record(0, b'{"m": "a", "v": "2", "f": {"x": 1}}')], fields)
    assert list(decoded.groups) == [("a", "2")]


def _columns_value_by_value(
    rows: list[dict[str, Any]], predictions: list[Any], with_prediction: bool
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The rule `Columns.infer` implements, applied to every value in order."""
    numeric: dict[str, None] = {}
    categorical: dict[str, None] = {}
    for row, prediction in zip(rows, predictions, strict=True):
        items = [*row.items(), (PREDICTION, prediction)] if with_prediction else row.items()
        for name, value in items:
            if isinstance(value, bool | str):
                categorical.setdefault(name)
            elif isinstance(value, int | float):
                numeric.setdefault(name)
    return tuple(n for n in numeric if n not in categorical), tuple(categorical)


def test_inferred_columns_follow_the_first_appearance_of_each_kind() -> None:
    rng = np.random.default_rng(8)
    values: list[Any] = [1.5, 2, True, "red", None, [1.0], {"a": 1}]
    names = [f"c{i}" for i in range(6)]
    for _ in range(200):
        rows, predictions = [], []
        for _ in range(int(rng.integers(1, 30))):
            # Mostly one shape repeated (as in real traffic), sometimes another: keys
            # dropped or reordered, a value of another kind.
            chosen = names if rng.random() < 0.7 else list(rng.permutation(names)[:4])
            row = dict.fromkeys(chosen, 0.5)
            if rng.random() < 0.3:
                row[str(rng.choice(chosen))] = values[int(rng.integers(len(values)))]
            rows.append(row)
            predictions.append(values[int(rng.integers(len(values)))])
        for with_prediction in (True, False):
            columns = Columns.infer(rows, predictions, with_prediction)
            expected = _columns_value_by_value(rows, predictions, with_prediction)
            assert (columns.numeric, columns.categorical) == expected
