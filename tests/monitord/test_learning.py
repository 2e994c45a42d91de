"""The warm-up learner takes rows of floats under repeated names in bulk (`_FloatRows`):
exactly what reading each value would learn, on rows that mix in integers, booleans, text,
nulls, arrays, numbers beyond the value rule, new and too-long names and a column cap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from monitord import learning
from monitord.config import LimitSettings
from monitord.events import EventGroup
from monitord.learning import ColumnLearner, Unmonitored


def _rows(seed: int, n: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """Mostly float rows under one set of names, with every kind of exception."""
    rng = np.random.default_rng(seed)
    names = ["a", "b", "c", "d"]  # and "e"
    features: list[dict[str, Any]] = []
    predictions: list[Any] = []
    for i in range(n):
        row: dict[str, Any] = {
            name: float(v) for name, v in zip(names, rng.normal(size=4), strict=True)
        }
        # Text in most rows: a categorical column, whose float rows' numbers need a text.
        row["e"] = "t" if rng.random() < 0.6 else float(rng.normal())
        kind = rng.integers(0, 40)
        if kind == 0:
            row["b"] = int(rng.integers(0, 5))  # an integer: its text is "3", not "3.0"
        elif kind == 1:
            row["c"] = "text"  # a string: votes categorical, or wrong in a numeric column
        elif kind == 2:
            row["a"] = None
        elif kind == 3:
            row["d"] = bool(i % 2)
        elif kind == 4:
            row["b"] = [1.0]  # an array: wrong
        elif kind == 5:
            row["c"] = 1e200  # beyond the value rule: wrong
        elif kind == 6:
            row[f"new{i % 3}"] = 1.5  # a name seen later
        elif kind == 7:
            row = {"x" * 300: 1.0, **row}  # a name too long: not monitored
        elif kind == 8:
            del row["d"]
        features.append(row)
        predictions.append(None if kind == 9 else float(rng.normal()))
    return features, predictions


@dataclass
class Learned:
    taken: list[tuple[int, dict[int, str]]]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    numbers: bytes
    texts: list[list[str | None]]
    set_aside: int
    state: dict[str, Any]


def _learn(
    features: list[dict[str, Any]], predictions: list[Any], size: int, chunk: int
) -> Learned:
    limits = LimitSettings(max_columns_per_model=7)
    learner = ColumnLearner(size, True, limits, Unmonitored("m", "1"))
    taken: list[tuple[int, dict[int, str]]] = []
    start = 0
    while start < len(features) and not learner.complete:
        group = EventGroup("m", "1")
        group.features = features[start : start + chunk]
        group.predictions = predictions[start : start + chunk]
        consumed, wrong = learner.take(group)
        taken.append((consumed, wrong))
        start += consumed
    state, arrays = learner.snapshot("learner/")
    columns = learner.columns()
    restored = ColumnLearner(size, True, limits, Unmonitored("m", "1"))
    restored.restore(learner.rows, state, arrays, "learner/")
    numeric, categorical, set_aside = learner.arrays(columns)
    again = restored.arrays(restored.columns())
    assert np.array_equal(again[0], numeric, equal_nan=True)
    assert again[1].tolist() == categorical.tolist()
    return Learned(
        taken,
        columns.numeric,
        columns.categorical,
        numeric.tobytes(),
        categorical.tolist(),
        set_aside,
        state.model_dump(),
    )


@pytest.mark.parametrize(
    ("seed", "size", "chunk"),
    # Takes of a few rows too, as a fleet's batches bring each version: the names of the
    # last row read value by value carry over from one take to the next.
    [(1, 3000, 500), (2, 700, 64), (3, 4000, 4000), (4, 900, 5), (5, 300, 1)],
)
def test_float_rows_in_bulk_learn_exactly_what_value_by_value_does(
    seed: int, size: int, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    features, predictions = _rows(seed, 4500)
    in_bulk = _learn(features, predictions, size, chunk)
    with monkeypatch.context() as patch:
        patch.setattr(learning, "_plain_floats", lambda values: False)
        one_by_one = _learn(features, predictions, size, chunk)
    assert in_bulk == one_by_one
    assert "e" in in_bulk.categorical  # a categorical column held numbers of float rows
    e = in_bulk.categorical.index("e")
    assert any(row[e] not in (None, "t") for row in in_bulk.texts)
    assert "a" in in_bulk.numeric
    assert any(wrong for _, wrong in in_bulk.taken)  # arrays and 1e200 were refused


def test_what_is_learned_does_not_depend_on_the_takes() -> None:
    features, predictions = _rows(6, 4500)
    whole = _learn(features, predictions, 2000, 4500)
    for chunk in (1, 3, 20):
        learned = _learn(features, predictions, 2000, chunk)
        assert learned.numbers == whole.numbers
        assert learned.texts == whole.texts
        assert (learned.numeric, learned.categorical) == (whole.numeric, whole.categorical)
        assert learned.set_aside == whole.set_aside
        assert learned.state == whole.state
