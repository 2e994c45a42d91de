"""In-memory tables as monitord reads them: a pandas DataFrame, a pyarrow Table or
RecordBatch, a mapping of names to 1-D arrays, or a 2-D numpy array with column names; and
their rows as the event groups the monitor takes (`EventFeed`).

`named_columns` turns any of them into one 1-D numpy array per column: numbers as float64
(NaN where missing), everything else as Python objects (None where missing; NaN, NaT and
pandas' NA are missing too). pandas and pyarrow are optional: they are recognised when the
object is theirs, and never imported otherwise.

A column is numeric when every present value is a number (booleans are categorical), the
rule `monitord reference build` applies to a file's rows, so a profile built from a table
equals the one built from the same data in a file.
"""

from __future__ import annotations

import array
import math
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np
import numpy.typing as npt

from connectors.stream import Record
from detectors.detection import FloatArray
from detectors.profile import ReferenceProfile
from monitord.config import Config
from monitord.events import MAX_EXTRA_NAMES, PREDICTION, Columns, EventGroup

Column = npt.NDArray[np.float64] | npt.NDArray[np.object_]
NamedColumns = dict[str, Column]


class TableError(ValueError):
    """A table could not be read; the message names the column or argument at fault."""


def named_columns(data: object, names: Sequence[str] | None = None) -> NamedColumns:
    """One 1-D array per column of ``data``, all of one length, in the table's order.

    ``names`` names the columns of a 2-D numpy array (required there, refused elsewhere).

    >>> columns = named_columns(np.array([[1.0, 2.0], [3.0, np.nan]]), names=["a", "b"])
    >>> {name: values.tolist() for name, values in columns.items()}
    {'a': [1.0, 3.0], 'b': [2.0, nan]}
    >>> named_columns({"city": ["Oslo", None], "n": [1, 2]})["city"].tolist()
    ['Oslo', None]
    """
    if isinstance(data, np.ndarray) and data.dtype.names is None:
        return _from_matrix(data, names)
    if names is not None:
        raise TableError("names: only a 2-D numpy array takes column names; tables carry theirs")
    module = type(data).__module__.split(".")[0]
    if module == "pandas" and hasattr(data, "columns"):
        return _checked(_from_pandas(data))
    if module == "pyarrow" and hasattr(data, "column_names"):
        return _checked(_from_arrow(data))
    if isinstance(data, np.ndarray):  # a structured array: its fields are the columns
        fields = data.dtype.names or ()
        return _checked({name: _plain(np.asarray(data[name]), name) for name in fields})
    if isinstance(data, Mapping):
        return _checked({str(k): _plain(np.asarray(v), str(k)) for k, v in data.items()})
    raise TableError(
        f"data: expected a pandas DataFrame, a pyarrow Table, a mapping of column names to "
        f"arrays or a 2-D numpy array with names=; got {type(data).__name__}"
    )


def _from_matrix(data: npt.NDArray[Any], names: Sequence[str] | None) -> NamedColumns:
    if data.ndim != 2:
        raise TableError(f"data: a numpy array must be 2-D (rows, columns), got shape {data.shape}")
    if names is None or len(names) != data.shape[1]:
        given = "no names" if names is None else f"{len(names)} names"
        raise TableError(
            f"names: a numpy array of {data.shape[1]} columns needs one name per column, "
            f"got {given}"
        )
    if len(set(names)) != len(names):
        raise TableError(f"names: column names must be unique, got {list(names)}")
    return {str(name): _plain(data[:, j], str(name)) for j, name in enumerate(names)}


def _from_pandas(frame: Any) -> NamedColumns:
    if not hasattr(frame, "iloc"):  # a Series or something else of pandas'
        raise TableError(f"data: expected a DataFrame, got a pandas {type(frame).__name__}")
    names = [str(name) for name in frame.columns]
    if len(set(names)) != len(names):
        raise TableError(f"data: column names must be unique, got {names}")
    columns: NamedColumns = {}
    for j, name in enumerate(names):
        series = frame.iloc[:, j]
        kind = series.dtype.kind
        if kind in "iuf":  # nullable integers too: NA becomes NaN
            columns[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
        elif kind == "M":  # datetimes: seconds since the epoch (event times)
            columns[name] = _seconds(series.to_numpy(dtype="datetime64[ns]"))
        else:
            columns[name] = _plain(series.to_numpy(dtype=object), name)
    return columns


def _from_arrow(table: Any) -> NamedColumns:
    names = [str(name) for name in table.column_names]
    if len(set(names)) != len(names):
        raise TableError(f"data: column names must be unique, got {names}")
    columns: NamedColumns = {}
    for j, name in enumerate(names):
        values = table.column(j).to_numpy(zero_copy_only=False)
        if values.dtype.kind == "M":
            columns[name] = _seconds(values.astype("datetime64[ns]"))
        else:
            columns[name] = _plain(np.asarray(values), name)
    return columns


def _seconds(values: npt.NDArray[np.datetime64]) -> FloatArray:
    seconds = values.astype(np.int64) / 1e9
    return np.where(np.isnat(values), np.nan, seconds)


def _plain(values: npt.NDArray[Any], name: str) -> Column:
    """``values`` as float64 when numeric, else as objects with None for missing."""
    if values.ndim != 1:
        raise TableError(f"column {name!r}: expected one value per row, got shape {values.shape}")
    if values.dtype.kind in "iuf":
        return values.astype(np.float64)
    if values.dtype.kind == "M":
        return _seconds(values.astype("datetime64[ns]"))
    objects = values.astype(object)
    missing = np.fromiter(map(_is_missing, objects.tolist()), np.bool_, objects.shape[0])
    if missing.any():
        objects = objects.copy()
        objects[missing] = None
    return objects


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float):  # numpy's float64 is a float too
        return math.isnan(value)
    # pandas' NA and NaT compare as neither equal nor unequal; nothing else here does that.
    return type(value).__name__ in ("NAType", "NaTType")


def _checked(columns: NamedColumns) -> NamedColumns:
    lengths = {name: values.shape[0] for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise TableError(f"data: columns differ in length: {lengths}")
    return columns


def n_rows(columns: NamedColumns) -> int:
    """Rows of a table (0 without columns)."""
    return next(iter(columns.values())).shape[0] if columns else 0


def is_numeric(values: Column) -> bool:
    """Whether a column is numeric: float64, or objects that are all numbers where present
    (booleans are not numbers here: they are categories, as in a reference file)."""
    if values.dtype == np.float64:
        return True
    present = [v for v in values.tolist() if v is not None]
    return bool(present) and all(
        isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)
        for v in present
    )


def as_numbers(values: Column) -> FloatArray:
    """A numeric column as float64, NaN where missing."""
    if values.dtype == np.float64:
        return values.astype(np.float64, copy=False)  # the same array, typed
    return np.array([math.nan if v is None else float(v) for v in values.tolist()])


def as_objects(values: Column) -> npt.NDArray[np.object_]:
    """A column as Python objects, None where missing: numbers as written (``3``, not
    ``3.0``, for a whole number read into a float column)."""
    if values.dtype != np.float64:
        return values.astype(np.object_, copy=False)  # the same array, typed
    out = np.empty(values.shape[0], dtype=object)
    out[:] = [None if math.isnan(v) else int(v) if v.is_integer() else v for v in values.tolist()]
    return out


class EventFeed:
    """Tables into the event groups `monitord.events.decode` makes of the same rows sent as
    inference events, column by column: the same values, missing values and bad rows."""

    def __init__(
        self, profile: ReferenceProfile, config: Config, prediction: str | None, source: str
    ) -> None:
        fields = config.events
        self._model, self._version = profile.model, profile.model_version
        self._key = profile.model.encode()
        self._max_ahead_s = fields.max_time_ahead_s
        self._source = source
        self._prediction = prediction
        self.timestamp = fields.timestamp
        # The names replay keeps out of an event's features.
        self._reserved = {
            fields.model,
            fields.model_version,
            fields.timestamp,
            fields.event_id,
            fields.label,
            prediction,
        }
        self._numeric = [n for n in profile.numeric_names if n != PREDICTION]
        self._categorical = [n for n in profile.categorical_names if n != PREDICTION]
        self._numeric_prediction = PREDICTION in profile.numeric_names
        self._columns = Columns(profile.numeric_names, profile.categorical_names)

    def wrong_rows(self, columns: NamedColumns) -> dict[int, str]:
        """Rows the daemon would dead-letter as ``wrong_type``, and why."""
        return self._columns.arrays(self.group(columns, 0, self._columns))[2]

    def _records(self, n: int, offset: int) -> list[Record]:
        # Record time 0, as replay gives every row: an event without its own time is at 0.
        return [Record(self._source, 0, offset + i, self._key, None, 0) for i in range(n)]

    def first_row(self, columns: NamedColumns, offset: int) -> EventGroup:
        """The table's first row as a group of one event whose features are still raw (a
        dictionary, as decoded before the version's columns were known)."""
        columns = {name: values[:1] for name, values in columns.items()}
        numeric, held = self._numeric_table(columns)
        features: dict[str, Any] = {
            name: _raw(columns, name, 0) if held[0] else _json_number(numeric[0, j])
            for j, name in enumerate(self._numeric)
            if name in columns
        }
        for name, texts in zip(self._categorical, self._category_columns(columns), strict=True):
            if name in columns:
                features[name] = texts[0]
        for name, values in columns.items():
            if name not in features and name not in self._reserved:
                features[name] = as_objects(values)[0]
        group = self._base(columns, offset)
        group.features = [features]
        return group

    def group(self, columns: NamedColumns, offset: int, known: Columns) -> EventGroup:
        """The rows (the first at ``offset``) as a group decoded with ``known`` columns."""
        group = self._base(columns, offset)
        group.columns = known
        numeric, held = self._numeric_table(columns)
        group.numeric_values = array.array("d", numeric[~held].tobytes())
        group.numeric_held = [
            (int(i), tuple(_raw(columns, name, int(i)) for name in self._numeric))
            for i in np.flatnonzero(held)
        ]
        if self._categorical:
            categorical = [c.tolist() for c in self._category_columns(columns)]
            group.categorical_rows = list(zip(*categorical, strict=True))
        extra = (n for n in columns if n not in self._reserved and n not in known.feature_names)
        group.extra_names = dict.fromkeys(islice(extra, MAX_EXTRA_NAMES))
        return group

    def _base(self, columns: NamedColumns, offset: int) -> EventGroup:
        n = n_rows(columns)
        group = EventGroup(self._model, self._version, None, self._max_ahead_s)
        group.predictions = self._predictions(columns, n)
        stamps = columns.get(self.timestamp)
        group.stamps = [None] * n if stamps is None else _event_times(stamps)
        group.event_ids = group.labels = group.latencies = [None] * n
        group.records = self._records(n, offset)
        return group

    def _predictions(self, columns: NamedColumns, n: int) -> list[Any]:
        values = None if self._prediction is None else columns.get(self._prediction)
        if values is None:
            return [None] * n
        if self._numeric_prediction and values.dtype == np.float64:
            # Non-finite is missing: an event's JSON carries no NaN nor infinity.
            finite: list[Any] = np.where(np.isfinite(values), values, np.nan).tolist()
            return finite
        objects: list[Any] = as_objects(values).tolist()
        return objects

    def _numeric_table(self, columns: NamedColumns) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
        """``(n, q)`` numeric feature values (NaN missing, absent columns too), and the rows
        holding a value that is no number: the monitor finds those wrong."""
        n = n_rows(columns)
        table = np.full((n, len(self._numeric)), np.nan)
        held = np.zeros(n, dtype=bool)
        for j, name in enumerate(self._numeric):
            values = columns.get(name)
            if values is None:
                continue
            if values.dtype == np.float64:
                table[:, j] = np.where(np.isfinite(values), values, np.nan)
                continue
            numbers = [_number_or_none(v) for v in values.tolist()]
            held |= np.array([v is _NOT_A_NUMBER for v in numbers], dtype=bool)
            table[:, j] = [math.nan if v is None or v is _NOT_A_NUMBER else v for v in numbers]
        return table, held

    def _category_columns(self, columns: NamedColumns) -> list[npt.NDArray[np.object_]]:
        n = n_rows(columns)
        absent = np.full(n, None, dtype=object)
        return [as_objects(columns[c]) if c in columns else absent for c in self._categorical]


_NOT_A_NUMBER = object()


def _number_or_none(value: object) -> float | object | None:
    """A numeric column's value as an event carries it: a number (booleans count, as in
    JSON), None for missing, or `_NOT_A_NUMBER` (the row is ``wrong_type``)."""
    if value is None:
        return None
    if isinstance(value, bool | int | float | np.number):
        number = float(value)
        return number if math.isfinite(number) else None
    return _NOT_A_NUMBER


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _raw(columns: NamedColumns, name: str, row: int) -> Any:
    values = columns.get(name)
    return None if values is None else as_objects(values[row : row + 1])[0]


def _event_times(values: npt.NDArray[Any]) -> list[Any]:
    """Event times as given: numbers stay numbers (epoch seconds), NaN becomes None."""
    if values.dtype == np.float64:
        return [None if math.isnan(v) else v for v in values.tolist()]
    given: list[Any] = values.tolist()
    return given


__all__ = [
    "Column",
    "EventFeed",
    "NamedColumns",
    "TableError",
    "as_numbers",
    "as_objects",
    "is_numeric",
    "n_rows",
    "named_columns",
]
