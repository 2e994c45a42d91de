"""Reading reference and replay data: CSV, JSONL and Parquet in columnar batches.

A file is opened with `open_data`, which reads it once to count its rows (and, for a CSV,
to type its columns), then `DataFile.batches` reads it again in batches of `BATCH_ROWS`
rows: memory follows the batch, not the file.

CSV cells are typed per column: a column whose non-empty cells all parse as numbers is
numeric, integer when every one is a whole number written as such (``1``, not ``1.0``)
within +-2**53, otherwise categorical; an empty cell is missing. The event's model, version
and id columns stay text, so a version ``1`` is ``"1"`` and ``1.10`` is not ``1.1``. A
JSONL line is either a flat object (one row) or an inference event, whose ``features`` are
flattened into the row next to its ``prediction``, ``label`` and ``event_id``; a key a line
lacks is `ABSENT` from its row (not null).
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import orjson

from monitord.config import EventFields

Row = dict[str, Any]

BATCH_ROWS = 8192
"""Rows per batch: large enough for numpy and the daemon's per-batch costs, small enough
that a batch of wide rows stays a few megabytes."""

MAX_EXACT_INTEGER = 2**53
"""Whole numbers beyond it are read as floats (JSON consumers read numbers as doubles)."""


class DataError(ValueError):
    """A data file could not be read; the message names the file and the problem."""


class _Absent:
    """The value of a key a JSONL row does not have (a CSV or Parquet row has every column)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Final = _Absent()


@dataclass(frozen=True)
class BadLine:
    """A JSONL line that is not a JSON object, kept whole for replay to dead-letter."""

    number: int  # 1-based line number
    raw: bytes


@dataclass(frozen=True)
class Batch:
    """Rows ``start`` to ``start + size - 1`` of a file, by column.

    ``columns`` maps each name some row of the batch has to its ``size`` values (`ABSENT`
    where a row lacks it), in order of first appearance; ``bad`` maps the position of each
    line that is no JSON object to it (its columns are `ABSENT` there).
    """

    start: int
    size: int
    columns: dict[str, list[Any]]
    bad: dict[int, BadLine]

    def rows(self) -> Iterator[Row | BadLine]:
        """The batch row by row (for small files and tests; the hot paths read columns)."""
        names = list(self.columns)
        values = list(self.columns.values())
        for i in range(self.size):
            bad = self.bad.get(i)
            if bad is not None:
                yield bad
            else:
                yield {n: v[i] for n, v in zip(names, values, strict=True) if v[i] is not ABSENT}


Kind = Literal["int", "float", "text"]


class DataFile:
    """A data file opened for batched reading: ``rows`` counts its rows (bad lines too)."""

    def __init__(self, path: Path, fields: EventFields) -> None:
        self.path, self.fields = path, fields
        suffix = path.suffix.lower()
        if not path.exists():
            raise DataError(f"{path}: no such file")
        if suffix not in (".csv", ".jsonl", ".ndjson", ".json", ".parquet"):
            raise DataError(
                f"{path}: unsupported file type {suffix!r}; use .csv, .jsonl or .parquet"
            )
        if path.is_dir():
            raise DataError(f"{path}: a directory, not a file")
        self.format = {".csv": "csv", ".parquet": "parquet"}.get(suffix, "jsonl")
        self._kinds: dict[str, Kind] = {}
        if self.format == "csv":
            self.rows = self._scan_csv()
        elif self.format == "parquet":
            self.rows = _parquet_file(path).metadata.num_rows
            _check_parquet_columns(path, self.schema())
        else:
            with path.open("rb") as handle:
                self.rows = sum(1 for line in handle if line.strip())
        if self.rows == 0:
            raise DataError(f"{path}: no data rows")

    def batches(self, size: int = BATCH_ROWS) -> Iterator[Batch]:
        """The file's rows in order, ``size`` at a time."""
        if self.format == "csv":
            return self._csv_batches(size)
        if self.format == "parquet":
            return self._parquet_batches(size)
        return self._jsonl_batches(size)

    def has_column(self, name: str) -> bool:
        """Whether some row has ``name`` (a header, a schema field, or some line's key)."""
        if self.format == "csv":
            return name in self._kinds
        if self.format == "parquet":
            return name in _parquet_file(self.path).schema_arrow.names
        quoted = orjson.dumps(name)
        with self.path.open("rb") as handle:
            for line in handle:
                # Only a line holding the quoted name can have it: most are never parsed.
                if quoted in line and any(row and name in row for row in _jsonl_rows([line], self)):
                    return True
        return False

    # CSV

    def _scan_csv(self) -> int:
        with _csv_errors(self.path), self.path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            _check_names(self.path, header)
            text = {self.fields.model, self.fields.model_version, self.fields.event_id}
            kinds: dict[str, Kind | None] = dict.fromkeys(header)
            rows = 0
            for chunk in _chunks(reader, BATCH_ROWS):
                checked = self._checked(chunk, len(header), reader.line_num)
                rows += len(checked)
                for j, name in enumerate(header):
                    if kinds[name] != "text":
                        kinds[name] = _kind([row[j] for row in checked], kinds[name])
        self._header = header
        self._kinds = {n: "text" if n in text or k is None else k for n, k in kinds.items()}
        return rows

    def _checked(self, chunk: list[list[str]], width: int, line: int) -> list[list[str]]:
        """Rows of a chunk, blank lines left out, short rows padded (missing cells)."""
        rows = [row for row in chunk if row]
        for row in rows:
            if len(row) > width:
                raise DataError(
                    f"{self.path}: a row near line {line} has {len(row)} cells, the header "
                    f"{width}: quote cells holding commas"
                )
            if len(row) < width:
                row.extend([""] * (width - len(row)))
        return rows

    def _csv_batches(self, size: int) -> Iterator[Batch]:
        start = 0
        with _csv_errors(self.path), self.path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            for chunk in _chunks(reader, size):
                rows = self._checked(chunk, len(header), reader.line_num)
                if not rows:
                    continue
                columns = {
                    name: _typed([row[j] for row in rows], self._kinds[name])
                    for j, name in enumerate(header)
                }
                yield Batch(start, len(rows), columns, {})
                start += len(rows)

    # Parquet

    def _parquet_batches(self, size: int) -> Iterator[Batch]:
        for start, part in parquet_batches(self, size):
            columns = {name: part.column(j).to_pylist() for j, name in enumerate(part.schema.names)}
            yield Batch(start, part.num_rows, columns, {})

    def schema(self) -> Any:
        """A Parquet file's Arrow schema."""
        return _parquet_file(self.path).schema_arrow

    def column_names(self) -> list[str]:
        """A CSV file's header or a Parquet file's fields (a JSONL file has none)."""
        if self.format == "csv":
            return list(self._kinds)
        if self.format == "parquet":
            return list(self.schema().names)
        raise ValueError(f"{self.path}: a JSONL file names its columns line by line")

    def numeric_columns(self) -> list[str]:
        """A CSV file's columns typed as numbers (int or float)."""
        return [name for name, kind in self._kinds.items() if kind != "text"]

    # JSONL

    def _jsonl_batches(self, size: int) -> Iterator[Batch]:
        start = 0
        with self.path.open("rb") as handle:
            numbered = ((n, line) for n, line in enumerate(handle, start=1) if line.strip())
            for chunk in _chunks(numbered, size):
                rows = _jsonl_rows([line for _, line in chunk], self)
                bad = {
                    i: BadLine(number, line.rstrip(b"\r\n"))
                    for i, ((number, line), row) in enumerate(zip(chunk, rows, strict=True))
                    if row is None
                }
                names = dict.fromkeys(itertools.chain.from_iterable(r for r in rows if r))
                columns = {
                    name: [ABSENT if r is None else r.get(name, ABSENT) for r in rows]
                    for name in names
                }
                yield Batch(start, len(rows), columns, bad)
                start += len(rows)


def open_data(path: Path, fields: EventFields | None = None) -> DataFile:
    """``path`` (``.csv``, ``.jsonl``/``.ndjson`` or ``.parquet``) opened for batches."""
    return DataFile(path, fields or EventFields())


def read_rows(path: Path, fields: EventFields | None = None) -> list[Row]:
    """All rows of a data file as dicts (small files); a JSONL line that is not a JSON
    object is a `DataError` naming it."""
    rows: list[Row] = []
    for row in read_rows_keeping_bad_lines(path, fields):
        if isinstance(row, BadLine):
            raise DataError(f"{path}:{row.number}: {line_problem(row.raw)}")
        rows.append(row)
    return rows


def read_rows_keeping_bad_lines(
    path: Path, fields: EventFields | None = None
) -> list[Row | BadLine]:
    """All rows of a data file, a JSONL line that is not a JSON object as a `BadLine`."""
    data = open_data(path, fields)
    return [row for batch in data.batches() for row in batch.rows()]


def line_problem(line: bytes) -> str:
    """Why a JSONL line is no row."""
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"invalid JSON ({exc})"
    return "expected a JSON object per line"


_INTEGER = re.compile(r"\s*[+-]?\d+\s*")


def _kind(cells: list[str], known: Kind | None) -> Kind | None:
    """The kind of a column's ``cells`` given the kind of its earlier cells (None: no
    non-empty cell yet)."""
    present = [cell for cell in cells if cell]
    if not present:
        return known
    whole = known in (None, "int") and all(map(_INTEGER.fullmatch, present))
    if whole and all(abs(int(cell)) <= MAX_EXACT_INTEGER for cell in present):
        return "int"
    if all(map(_is_number, present)):
        return "float"
    return "text"


def _is_number(text: str) -> bool:
    try:
        return not math.isnan(float(text)) or text.strip().lower() == "nan"
    except ValueError:
        return False


def _typed(cells: list[str], kind: Kind) -> list[Any]:
    if kind == "text":
        return [cell or None for cell in cells]
    convert = int if kind == "int" else float
    return [convert(cell) if cell else None for cell in cells]


T = TypeVar("T")


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _jsonl_rows(lines: list[bytes], data: DataFile) -> list[Row | None]:
    """Each line's row (None: not a JSON object), an inference event's features flattened."""
    fields = data.fields
    kept = (
        fields.prediction,
        fields.label,
        fields.event_id,
        fields.timestamp,
        fields.model,
        fields.model_version,
    )
    rows: list[Row | None] = []
    for line in lines:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            rows.append(None)
            continue
        features = obj.get(fields.features)
        if isinstance(features, dict):
            row = dict(features)
            for key in kept:
                if key in obj:
                    row[key] = obj[key]
            rows.append(row)
        else:
            rows.append(obj)
    return rows


def event_id(value: object) -> str | None:
    """An id as text, whichever file it comes from: a whole-number float ``17.0`` (a
    Parquet double, say) is ``"17"`` as in a JSONL file's ``17``."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN names no event
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def parquet_batches(data: DataFile, size: int) -> Iterator[tuple[int, Any]]:
    """A Parquet file's Arrow record batches of ``size`` rows, each with its first row."""
    start = 0
    for part in _parquet_file(data.path).iter_batches(batch_size=size, use_threads=False):
        yield start, part
        start += part.num_rows


def _parquet_file(path: Path) -> Any:
    try:
        import pyarrow as pa  # noqa: PLC0415 (optional dependency)
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise DataError(
            f"{path}: reading Parquet needs pyarrow; install it with "
            "`pip install 'monitord[parquet]'`"
        ) from None
    # Without pre-buffering a row group's column chunks: their buffers would grow with the
    # row groups read (200 MB after 1M rows x 20), not with the batch.
    try:
        return pq.ParquetFile(path, pre_buffer=False)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


def _check_parquet_columns(path: Path, schema: Any) -> None:
    """Refuse columns an event cannot carry (JSON has no decimal, bytes nor duration)."""
    import pyarrow as pa  # noqa: PLC0415

    _check_names(path, list(schema.names))
    unreadable = (
        pa.types.is_decimal,
        pa.types.is_binary,
        pa.types.is_large_binary,
        pa.types.is_fixed_size_binary,
        pa.types.is_duration,
        pa.types.is_interval,
    )
    for field in schema:
        if any(kind(field.type) for kind in unreadable):
            raise DataError(
                f"{path}: column {field.name!r} holds {field.type}, which an event cannot "
                "carry; cast it to a number or to text"
            )


def _check_names(path: Path, names: list[str]) -> None:
    """Refuse a name given to two columns: which of them would be the feature?"""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise DataError(f"{path}: two columns are named {name!r}; rename one")
        seen.add(name)


@contextlib.contextmanager
def _csv_errors(path: Path) -> Iterator[None]:
    """A CSV that is not UTF-8 text or holds a cell beyond the csv module's limit, as a
    `DataError` naming the file."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None
    except csv.Error as exc:
        raise DataError(f"{path}: {exc}") from None


__all__ = [
    "ABSENT",
    "BATCH_ROWS",
    "BadLine",
    "Batch",
    "DataError",
    "DataFile",
    "Row",
    "event_id",
    "line_problem",
    "open_data",
    "parquet_batches",
    "read_rows",
    "read_rows_keeping_bad_lines",
]
