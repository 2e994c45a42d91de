"""Replay's by-column path: a CSV or Parquet file's rows handed to the monitor as event
groups, without turning each row into JSON and back.

`monitord replay` feeds a file to the daemon as a topic. Row by row, that means a dict and
a JSON document per row, and `monitord.events.decode` parsing it again: most of replay's
time. For a CSV file, or a Parquet file whose columns are numbers, booleans and text,
`ColumnarRows` yields the records without values (offset = row index) and keeps each
batch's columns until the daemon decodes them (`Daemon.decode`), then builds the same
`EventGroup` that decoding the rows' events would: the same numbers, the same missing
values (null, NaN and infinities are missing, as JSON carries none of them), the same raw
predictions, ids, labels and times. A row the monitor dead-letters gets its event's JSON
back (`event`), as it would have been sent.

Files this path does not take (JSONL, model or version columns, nested or temporal Parquet
types) go through JSON as before (`eligible`).
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Iterator
from functools import partial
from itertools import chain, islice, repeat
from typing import Any

import numpy as np

from connectors.stream import Record
from detectors.detection import FloatArray
from monitord.config import Config, EventFields
from monitord.events import (
    MAX_EXTRA_NAMES,
    PREDICTION,
    Columns,
    ColumnsLookup,
    DecodedBatch,
    EventGroup,
    decode,
)
from monitord.tabular import Batch, DataFile, event_id, parquet_batches

_new_record = partial(tuple.__new__, Record)

EventRenderer = Callable[[Batch], list[bytes]]
"""The replay's rows-to-events function (`monitord.replay.events_from_batch`, bound)."""


def not_features(
    fields: EventFields, prediction_column: str | None, label_column: str | None
) -> set[str | None]:
    """The columns of a replayed file that go into an event beside its features, not among
    them: model, version, time, id, label (``label_column``) and prediction."""
    return {
        fields.model,
        fields.model_version,
        fields.timestamp,
        fields.event_id,
        fields.label,
        label_column or fields.label,
        prediction_column,
    }


def eligible(data: DataFile, fields: EventFields) -> bool:
    """Whether ``data`` can go by column: CSV, or Parquet of numbers, booleans and text
    only, with neither a model nor a version column (every row is the replay's model and
    version)."""
    if data.format not in ("csv", "parquet"):
        return False
    if data.has_column(fields.model) or data.has_column(fields.model_version):
        return False
    if data.format == "csv":
        return True
    import pyarrow as pa  # noqa: PLC0415 (a Parquet file was opened: pyarrow is there)

    plain = (
        pa.types.is_integer,
        pa.types.is_floating,
        pa.types.is_boolean,
        pa.types.is_string,
        pa.types.is_large_string,
    )
    return all(any(kind(field.type) for kind in plain) for field in data.schema())


class _Cached:
    """One batch of the file, by column: once asked for, a column's Python values as its
    event would carry them (missing as None) and its numbers (missing as NaN)."""

    def __init__(self, start: int, size: int, names: list[str]) -> None:
        self.start, self.end, self.names = start, start + size, names
        self._values: dict[str, list[Any]] = {}
        self._numbers: dict[str, FloatArray | None] = {}

    def values(self, name: str) -> list[Any]:
        """A column's values as its event would carry them (NaN and infinities: None,
        since JSON has no word for them)."""
        found = self._values.get(name)
        if found is None:
            found = self._values[name] = self._values_of(name)
        return found

    def numbers(self, name: str) -> FloatArray | None:
        """A number or boolean column's values as floats (missing: NaN); None for text."""
        if name not in self._numbers:
            self._numbers[name] = self._numbers_of(name)
        return self._numbers[name]

    def raw(self, name: str, row: int) -> list[Any]:
        """Row ``row``'s value of ``name`` as read, in a list of one."""
        raise NotImplementedError

    def raw_column(self, name: str) -> list[Any]:
        """A column's values as read (an id of NaN is the text ``nan`` row by row)."""
        raise NotImplementedError

    def widest(self, name: str, lo: int, hi: int) -> int:
        """The most bytes a value of rows ``lo`` to ``hi`` takes in an event's JSON (a
        bound: a number 26, a text six a character, as escaped at worst)."""
        if self.numbers(name) is not None:
            return 26
        return 6 * max((len(v) for v in self.values(name)[lo:hi] if v is not None), default=1)

    def _values_of(self, name: str) -> list[Any]:
        raise NotImplementedError

    def _numbers_of(self, name: str) -> FloatArray | None:
        raise NotImplementedError


class _ArrowBatch(_Cached):
    """A Parquet file's record batch."""

    def __init__(self, start: int, part: Any) -> None:
        super().__init__(start, part.num_rows, list(part.schema.names))
        self.part = part

    def raw(self, name: str, row: int) -> list[Any]:
        return list(self.part.column(self.names.index(name))[row : row + 1].to_pylist())

    def raw_column(self, name: str) -> list[Any]:
        return list(self.part.column(self.names.index(name)).to_pylist())

    def _values_of(self, name: str) -> list[Any]:
        import pyarrow as pa  # noqa: PLC0415

        column = self.part.column(self.names.index(name))
        values: list[Any] = column.to_pylist()
        if pa.types.is_floating(column.type):
            numbers = column.to_numpy(zero_copy_only=False)  # nulls: NaN, and None already
            if not np.isfinite(numbers).all():
                return _finite_or_none(values)
        return values

    def _numbers_of(self, name: str) -> FloatArray | None:
        import pyarrow as pa  # noqa: PLC0415

        column = self.part.column(self.names.index(name))
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            return None
        floats = column.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
        return np.where(np.isfinite(floats), floats, np.nan)


class _TextBatch(_Cached):
    """A CSV file's batch, its cells typed by `monitord.tabular` (int, float or text)."""

    def __init__(self, batch: Batch, numeric: frozenset[str]) -> None:
        super().__init__(batch.start, batch.size, list(batch.columns))
        self.batch, self._numeric = batch, numeric

    def raw(self, name: str, row: int) -> list[Any]:
        return [self.batch.columns[name][row]]

    def raw_column(self, name: str) -> list[Any]:
        return self.batch.columns[name]

    def _values_of(self, name: str) -> list[Any]:
        values = self.batch.columns[name]
        if name in self._numeric and not all(map(_finite_or_missing, values)):
            return _finite_or_none(values)
        return values

    def _numbers_of(self, name: str) -> FloatArray | None:
        if name not in self._numeric:
            return None
        floats = np.array(self.batch.columns[name], dtype=np.float64)  # None: NaN
        return np.where(np.isfinite(floats), floats, np.nan)


def _finite_or_missing(value: float | None) -> bool:
    return value is None or math.isfinite(value)


def _finite_or_none(values: list[Any]) -> list[Any]:
    return [v if v is None or math.isfinite(v) else None for v in values]


class ColumnarRows:
    """A CSV or Parquet file's rows as the replay's records (values left out) and as event groups
    (`decode`, the daemon's decoder for them). ``render`` makes a batch's inference events
    as JSON, for the rows the daemon dead-letters (`event`)."""

    def __init__(
        self,
        data: DataFile,
        config: Config,
        *,
        topic: str,
        model: str,
        version: str,
        prediction_column: str | None,
        label_column: str | None,
        ids_in_rows: bool,
        render: EventRenderer,
    ) -> None:
        fields = config.events
        self._data, self._topic, self._key = data, topic, model.encode()
        self._model, self._version = model, version
        self._max_ahead_s, self._max_bytes = fields.max_time_ahead_s, fields.max_event_bytes
        self._prediction = prediction_column or None  # '': none, as row by row
        self._label = label_column or fields.label
        self._timestamp, self._id = fields.timestamp, fields.event_id
        self._ids_in_rows = ids_in_rows
        self._render = render
        reserved = not_features(fields, prediction_column, label_column)
        names = data.column_names()
        self._names = frozenset(names)
        self._features = [n for n in names if n not in reserved]
        self._feature_set = frozenset(self._features)
        # What an event's JSON holds besides its values, at most: keys, names, model.
        self._fixed_bytes = 256 + 6 * sum(map(len, [model, version, *names])) + 8 * len(names)
        self._batches: list[_Cached] = []  # read, not yet decoded past

    def records(self, batch_rows: int, progress: Callable[[int], None] | None) -> Iterator[Record]:
        """The rows as records at offset = row index, each batch kept for `decode`."""
        topic, key = self._topic, self._key
        for cached in self._read(batch_rows):
            self._batches.append(cached)
            # Built by tuple.__new__ over zipped columns: no Python call per row.
            fields = zip(
                repeat(topic),
                repeat(0),
                range(cached.start, cached.end),
                repeat(key),
                repeat(None),
                repeat(0),
                repeat(()),
            )
            yield from map(_new_record, fields)
            if progress is not None:
                progress(cached.end)

    def _read(self, batch_rows: int) -> Iterator[_Cached]:
        if self._data.format == "parquet":
            for start, part in parquet_batches(self._data, batch_rows):
                yield _ArrowBatch(start, part)
            return
        numeric = frozenset(self._data.numeric_columns())
        for batch in self._data.batches(batch_rows):
            yield _TextBatch(batch, numeric)

    def decode(
        self, records: list[Record], fields: EventFields, columns_for: ColumnsLookup
    ) -> DecodedBatch:
        """`monitord.events.decode` for these rows' records (`Daemon.decode`)."""
        if not records:
            return DecodedBatch({}, [])
        first, last = records[0].offset, records[-1].offset
        if last - first + 1 != len(records):
            raise ValueError(
                f"rows {first}-{last}: decoded by column in one run, not {len(records)}"
            )
        # Rows before these are decoded: their batches are no longer needed.
        while self._batches and self._batches[0].end <= first:
            del self._batches[0]
        pieces = [
            (b, max(first, b.start) - b.start, min(last + 1, b.end) - b.start)
            for b in self._batches
            if b.start <= last and b.end > first
        ]
        if self._may_be_oversize(pieces):  # rare: the row-by-row path says which are
            rendered = [r._replace(value=self.event(r.offset)) for r in records]
            return decode(rendered, fields, columns_for)
        known = columns_for(self._model, self._version)
        group = EventGroup(self._model, self._version, known, self._max_ahead_s)
        group.records = records
        n = len(records)

        def values(name: str | None) -> list[Any]:
            if name is None or name not in self._names:
                return [None] * n
            return list(chain.from_iterable(b.values(name)[lo:hi] for b, lo, hi in pieces))

        group.predictions = values(self._prediction)
        group.stamps = values(self._timestamp)
        group.labels = values(self._label)
        group.latencies = [None] * n
        if self._ids_in_rows:
            ids = chain.from_iterable(b.raw_column(self._id)[lo:hi] for b, lo, hi in pieces)
            group.event_ids = [event_id(v) for v in ids]
        else:
            group.event_ids = [str(offset) for offset in range(first, last + 1)]
        if known is None:  # the version's columns are not learned yet: raw features
            columns = [values(name) for name in self._features]
            rows = zip(*columns, strict=True) if columns else [()] * n
            group.features = [dict(zip(self._features, row, strict=True)) for row in rows]
        else:
            self._fill(group, known, pieces, n)
        return DecodedBatch({(self._model, self._version): group}, [])

    def _may_be_oversize(self, pieces: list[tuple[_Cached, int, int]]) -> bool:
        """Whether some row's event could exceed ``events.max_event_bytes`` (a bound)."""
        widest = sum(max(b.widest(name, lo, hi) for b, lo, hi in pieces) for name in self._names)
        return self._fixed_bytes + widest > self._max_bytes

    def _fill(
        self, group: EventGroup, known: Columns, pieces: list[tuple[_Cached, int, int]], n: int
    ) -> None:
        """The group's values pulled out by ``known`` columns, as decode does per event."""
        numeric_names = [name for name in known.numeric if name != PREDICTION]
        table = np.full((n, len(numeric_names)), np.nan)
        held = np.zeros(n, dtype=bool)
        for j, name in enumerate(numeric_names):
            if name not in self._feature_set:
                continue  # absent from every event: missing
            at = 0
            for b, lo, hi in pieces:
                numbers = b.numbers(name)
                if numbers is not None:
                    table[at : at + hi - lo, j] = numbers[lo:hi]
                else:  # text in a numeric column: the monitor finds such rows wrong
                    texts = b.values(name)[lo:hi]
                    held[at : at + hi - lo] |= np.array([v is not None for v in texts], dtype=bool)
                at += hi - lo
        group.numeric_values = array.array("d", table[~held].tobytes())
        if held.any():
            raw = [self._raw(name, pieces) for name in numeric_names]
            group.numeric_held = [
                (int(i), tuple(column[i] for column in raw)) for i in np.flatnonzero(held)
            ]
        categorical_names = [name for name in known.categorical if name != PREDICTION]
        if categorical_names:
            columns = [self._raw(name, pieces) for name in categorical_names]
            group.categorical_rows = list(zip(*columns, strict=True))
        if len(self._features) != len(known.feature_names):
            extra = (name for name in self._features if name not in known.feature_names)
            group.extra_names = dict.fromkeys(islice(extra, MAX_EXTRA_NAMES))

    def _raw(self, name: str, pieces: list[tuple[_Cached, int, int]]) -> list[Any]:
        if name not in self._feature_set:
            return [None] * sum(hi - lo for _, lo, hi in pieces)
        return list(chain.from_iterable(b.values(name)[lo:hi] for b, lo, hi in pieces))

    def event(self, offset: int) -> bytes:
        """Row ``offset``'s inference event as JSON, as the row-by-row path sends it."""
        for b in self._batches:
            if b.start <= offset < b.end:
                columns = {name: b.raw(name, offset - b.start) for name in b.names}
                return self._render(Batch(offset, 1, columns, {}))[0]
        raise KeyError(f"row {offset} is no longer held")


__all__ = ["ColumnarRows", "EventRenderer", "eligible", "not_features"]
