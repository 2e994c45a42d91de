from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.stream import Record
from monitord.config import EventFields
from monitord.events import PREDICTION, UNVERSIONED, Columns, EventGroup, decode


def _record(offset: int, value: bytes | None) -> Record:
    return Record("in", 0, offset, b"k", value, 1_700_000_000_000)


def test_groups_by_model_and_version_in_order() -> None:
    events = [
        {
            "model": "a",
            "model_version": 1,
            "features": {"x": 1.0},
            "timestamp": "2023-11-14T22:13:19.500Z",  # before its record time, as produced
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
    times, untimed = group.event_times()
    assert math.isclose(times[0], 1_699_999_999.5)
    assert times[1] == 1_700_000_000.0  # no time of its own: the record's
    assert untimed == 0
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


RECORD_S = 1_700_000_000.0  # every _record's (Kafka) time


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (1_699_999_000, 1_699_999_000.0),  # seconds
        (1_699_999_000_250, 1_699_999_000.25),  # milliseconds
        (1_699_999_000_250_000, 1_699_999_000.25),  # microseconds
        (1_699_999_000_250_000_000, 1_699_999_000.25),  # nanoseconds
        ("2023-11-14T22:03:20Z", 1_699_999_400.0),
    ],
)
def test_event_times_in_any_epoch_unit_are_used(stamp: object, expected: float) -> None:
    group = _one_group([{"model": "a", "features": {"x": 1}, "timestamp": stamp}])
    times, untimed = group.event_times()
    assert times[0] == pytest.approx(expected, abs=1e-6)
    assert untimed == 0


@pytest.mark.parametrize(
    "stamp",
    [
        1e300,  # once an OverflowError when an alert fired
        -5,
        "10000-01-01T00:00:00Z",
        "9999-12-31T23:59:59-05:00",  # past the calendar once shifted to UTC
        "yesterday",
        True,
        [1],
        RECORD_S + 3601,  # further ahead of its record than events.max_time_ahead_s
    ],
)
def test_unusable_event_times_fall_back_to_the_record_time_and_are_counted(
    stamp: object,
) -> None:
    events = [
        {"model": "a", "features": {"x": 1}, "timestamp": stamp},
        {"model": "a", "features": {"x": 2}, "timestamp": RECORD_S + 3599},
    ]
    times, untimed = _one_group(events).event_times()
    assert times.tolist() == [RECORD_S, RECORD_S + 3599]
    assert untimed == 1


def test_a_record_time_outside_the_calendar_reads_as_now() -> None:
    group = EventGroup("a", "1")
    group.records = [Record("in", 0, 0, None, b"{}", -1), Record("in", 0, 1, None, b"{}", 10**18)]
    group.stamps = [None, None]
    before = time.time()
    times, untimed = group.event_times()
    assert ((before <= times) & (times <= time.time())).all()
    assert untimed == 0


def _one_group(events: list[dict[str, Any]]) -> EventGroup:
    records = [_record(i, orjson.dumps(e)) for i, e in enumerate(events)]
    (group,) = decode(records, EventFields()).groups.values()
    return group


NUMERIC = Columns(("x", "y"), ())


@pytest.mark.parametrize("known", [True, False], ids=["columns-known", "columns-inferred"])
@pytest.mark.parametrize(
    "neighbours",
    [[], [{"x": 1.0, "y": 2.0}], [{"x": None, "y": 2.0}], [{"x": "oops", "y": 2.0}]],
    ids=["alone", "numbers", "null", "bad"],
)
def test_the_numeric_rule_does_not_depend_on_the_rest_of_the_batch(
    known: bool, neighbours: list[dict[str, Any]]
) -> None:
    """A number or boolean is a value, null is missing, a string (even "12.5") is wrong."""
    rows = [{"x": "12.5", "y": 1.0}, {"x": "inf", "y": 1.0}, {"x": True, "y": 0}, *neighbours]
    events = [{"model": "a", "features": row} for row in rows]
    decoded = decode(
        [_record(i, orjson.dumps(e)) for i, e in enumerate(events)],
        EventFields(),
        (lambda m, v: NUMERIC) if known else (lambda m, v: None),
    )
    (group,) = decoded.groups.values()
    numeric, _, wrong = NUMERIC.arrays(group)
    assert sorted(wrong) == [0, 1] + ([3] if neighbours and neighbours[0]["x"] == "oops" else [])
    assert wrong[0] == "'x' holds a JSON string, not a number"
    assert numeric[2].tolist() == [1.0, 0.0]
    if neighbours and neighbours[0]["x"] is None:
        assert math.isnan(numeric[3, 0])


def test_categorical_values_are_bounded_text_and_arrays_are_wrong_everywhere() -> None:
    columns = Columns((), ("c", PREDICTION))
    events = [
        {"model": "a", "features": {"c": "x" * 900_000}, "prediction": True},
        {"model": "a", "features": {"c": 7}, "prediction": None},
        # Alike in every row: numpy would read them as one more dimension of the table.
        {"model": "a", "features": {"c": [1, 2]}, "prediction": [1, 2]},
        {"model": "a", "features": {"c": {"k": 1}}, "prediction": "p"},
    ]
    records = [_record(i, orjson.dumps(e)) for i, e in enumerate(events)]
    for lookup in (lambda m, v: columns), (lambda m, v: None):
        (group,) = decode(records, EventFields(), lookup).groups.values()
        _, categorical, wrong = columns.arrays(group)
        assert categorical[:2].tolist() == [["x" * 256, "true"], ["7", None]]
        assert wrong == {2: "'c' holds a JSON array", 3: "'c' holds a JSON object"}
