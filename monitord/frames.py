"""In-memory tables as monitord reads them: a pandas DataFrame, a pyarrow Table or
RecordBatch, a mapping of names to 1-D arrays, or a 2-D numpy array with column names.

`named_columns` turns any of them into one 1-D numpy array per column: numbers as float64
(NaN where missing), everything else as Python objects (None where missing; NaN, NaT and
pandas' NA are missing too). pandas and pyarrow are optional: they are recognised when the
object is theirs, and never imported otherwise.

A column is numeric when every present value is a number (booleans are categorical), the
rule `monitord reference build` applies to a file's rows, so a profile built from a table
equals the one built from the same data in a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.detection import FloatArray

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
        return values  # type: ignore[return-value]
    return np.array([math.nan if v is None else float(v) for v in values.tolist()])


def as_objects(values: Column) -> npt.NDArray[np.object_]:
    """A column as Python objects, None where missing: numbers as written (``3``, not
    ``3.0``, for a whole number read into a float column)."""
    if values.dtype != np.float64:
        return values  # type: ignore[return-value]
    out = np.empty(values.shape[0], dtype=object)
    out[:] = [None if math.isnan(v) else int(v) if v.is_integer() else v for v in values.tolist()]
    return out


__all__ = [
    "Column",
    "NamedColumns",
    "TableError",
    "as_numbers",
    "as_objects",
    "is_numeric",
    "n_rows",
    "named_columns",
]
