"""Reading reference and replay data: CSV, JSONL and Parquet into rows of plain values.

CSV cells are typed per column: a column whose non-empty cells all parse as numbers is
numeric, otherwise categorical; an empty cell is missing. A JSONL line is either a flat
object (one row) or an inference event, whose ``features`` are flattened into the row next
to its ``prediction``, ``label`` and ``event_id``.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from monitord.config import EventFields

Row = dict[str, Any]


class DataError(ValueError):
    """A data file could not be read; the message names the file and the problem."""


@dataclass(frozen=True)
class BadLine:
    """A JSONL line that is not a JSON object, kept whole for replay to dead-letter."""

    number: int  # 1-based line number
    raw: bytes


def read_rows(path: Path, fields: EventFields | None = None) -> list[Row]:
    """All rows of a ``.csv``, ``.jsonl``/``.ndjson`` or ``.parquet`` file; a JSONL line
    that is not a JSON object is a `DataError` naming it."""
    rows: list[Row] = []
    for row in read_rows_keeping_bad_lines(path, fields):
        if isinstance(row, BadLine):
            raise DataError(f"{path}:{row.number}: {_line_problem(row.raw)}")
        rows.append(row)
    return rows


def read_rows_keeping_bad_lines(
    path: Path, fields: EventFields | None = None
) -> list[Row | BadLine]:
    """All rows of a data file, a JSONL line that is not a JSON object as a `BadLine`."""
    suffix = path.suffix.lower()
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if suffix == ".csv":
        return list(_read_csv(path))
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl(path, fields or EventFields())
    if suffix == ".parquet":
        return list(_read_parquet(path))
    raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .jsonl or .parquet")


def _read_csv(path: Path) -> list[Row]:
    with path.open(newline="") as handle:
        raw = list(csv.DictReader(handle))
    if not raw:
        raise DataError(f"{path}: no data rows")
    columns = list(raw[0])
    numeric = {c for c in columns if all(_is_number(r[c]) for r in raw if r[c] not in ("", None))}
    return [
        {
            c: (None if r[c] in ("", None) else float(r[c]) if c in numeric else r[c])
            for c in columns
        }
        for r in raw
    ]


def _is_number(text: str) -> bool:
    try:
        return not math.isnan(float(text)) or text.lower() == "nan"
    except ValueError:
        return False


def _read_jsonl(path: Path, fields: EventFields) -> list[Row | BadLine]:
    rows: list[Row | BadLine] = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            rows.append(BadLine(number, line))
            continue
        features = obj.get(fields.features)
        if isinstance(features, dict):
            row = dict(features)
            kept = (
                fields.prediction,
                fields.label,
                fields.event_id,
                fields.timestamp,
                fields.model,
                fields.model_version,
            )
            for key in kept:
                if key in obj:
                    row[key] = obj[key]
            rows.append(row)
        else:
            rows.append(obj)
    if not rows:
        raise DataError(f"{path}: no data rows")
    return rows


def _line_problem(line: bytes) -> str:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON ({exc})"
    return "expected a JSON object per line"


def _read_parquet(path: Path) -> list[Row]:
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow; install it with "
            "`pip install 'monitord[parquet]'`"
        ) from None
    table = pq.read_table(path)
    rows: list[Row] = table.to_pylist()
    return rows


__all__ = ["BadLine", "DataError", "Row", "read_rows", "read_rows_keeping_bad_lines"]
