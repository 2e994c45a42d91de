"""Columns learned over a version's warm-up, and the columns that are not monitored.

A version without a profile learns its columns from all of its warm-up rows, not from its
first batch: a feature absent from the first events is still monitored, and one string
among numbers does not make a numeric feature categorical. A column is numeric when its
numbers outnumber its strings and booleans, else categorical. `monitord.events`' value rule
applies as soon as a column's values so far are mostly numbers: a string there makes the
event ``wrong_type``, in the warm-up as after it. A string accepted before that (the first
value, say) is missing in the reference if the column ends numeric, and counted. A row
holding an array, an object or a number beyond ``MAX_MAGNITUDE`` is ``wrong_type`` at
once, whatever the kind.

What is not monitored is reported per version (`Unmonitored`): names past
``limits.max_columns_per_model`` (``column_limit``), longer than
``limits.max_name_chars`` (``name_too_long``), the prediction's reserved name used
for a feature (``reserved_name``), columns without a value in the whole warm-up
(``no_values``), names first seen after the columns were fixed (``not_in_reference``), and
monitored columns that have had no value since (``never_seen``, in `/status` only).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, NonNegativeInt, model_validator

from detectors.detection import FloatArray, State
from detectors.profile import category_text
from monitord.config import LimitSettings
from monitord.events import MAX_MAGNITUDE, PREDICTION, Columns, EventGroup, too_large
from monitord.state import StateModel

log = logging.getLogger(__name__)

MAX_REPORTED = 100
"""Unmonitored names kept per version: past it they are only counted (an event can carry
thousands of names; memory must not grow with them)."""
MAX_COUNTED = 10_000
"""Distinct unmonitored names counted per version; past it the count stops growing."""


class UnmonitoredState(StateModel):
    """Stored `Unmonitored`: the names shown, each with why, how many more there were, and
    the keys of every name counted (to count each once)."""

    reasons: dict[str, str] = Field(default_factory=dict)
    overflow: NonNegativeInt = 0
    seen: tuple[int, ...] = ()


class LearnerState(StateModel):
    """Stored `ColumnLearner` (its rows are arrays): the names learned so far, in order,
    and per name how many values were numbers and how many strings or booleans."""

    names: tuple[str, ...]
    numbers: tuple[NonNegativeInt, ...]
    texts: tuple[NonNegativeInt, ...]

    @model_validator(mode="after")
    def _aligned(self) -> LearnerState:
        if not len(self.names) == len(self.numbers) == len(self.texts):
            raise ValueError("names, numbers and texts must have one entry per column")
        return self


class Unmonitored:
    """Names of one version's columns that are not monitored, each with why: at most
    `MAX_REPORTED` names shown (cut to 80 characters) and logged once, every distinct name
    counted once, up to `MAX_COUNTED`."""

    def __init__(self, model: str, version: str) -> None:
        self.model, self.version = model, version
        self.reasons: dict[str, str] = {}
        self.overflow = 0
        self._seen: set[int] = set()

    def add(self, name: str, reason: str) -> None:
        key = _name_key(name)
        if key in self._seen or len(self._seen) >= MAX_COUNTED:
            return
        self._seen.add(key)
        if len(self.reasons) >= MAX_REPORTED:
            self.overflow += 1
            if self.overflow == 1:
                log.warning(
                    "%s/%s: more than %d columns are not monitored; further ones are only counted",
                    self.model,
                    self.version,
                    MAX_REPORTED,
                )
            return
        shown = name if len(name) <= 80 else f"{name[:80]}... ({len(name)} characters)"
        self.reasons[shown] = reason
        log.warning(
            "%s/%s: column %r is not monitored (%s)", self.model, self.version, shown, reason
        )

    @property
    def count(self) -> int:
        return len(self.reasons) + self.overflow

    def snapshot(self) -> UnmonitoredState:
        return UnmonitoredState(
            reasons=dict(self.reasons), overflow=self.overflow, seen=tuple(sorted(self._seen))
        )

    def restore(self, state: UnmonitoredState) -> None:
        self.reasons, self.overflow = dict(state.reasons), state.overflow
        self._seen = set(state.seen)


def _name_key(name: str) -> int:
    """A stable 63-bit key of a name (the name may be a megabyte long; the key is not)."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest) >> 1


class ColumnLearner:
    """The first ``size`` good rows of a version, with every name they hold, until the
    columns can be decided (`columns`) and the rows become the reference (`arrays`)."""

    def __init__(
        self,
        size: int,
        with_prediction: bool,
        limits: LimitSettings,
        unmonitored: Unmonitored,
    ) -> None:
        self.size = size
        self.rows = 0
        self._with_prediction = with_prediction
        self._limits = limits
        self._unmonitored = unmonitored
        self.names: dict[str, int] = {}  # column -> index, in order of first appearance
        # Per column: how many values were numbers, how many strings or booleans.
        self._numbers: list[int] = []
        self._texts: list[int] = []
        # Row-major chunks as taken; a later chunk may be wider (names seen later).
        self._chunks: list[tuple[FloatArray, npt.NDArray[np.object_]]] = []
        # The names of the last row read value by value, and their columns: a later
        # `take` whose rows hold them, floats only, keeps them as they are from its first
        # row on (a fleet's batch brings each version a few rows per `take`).
        self._recent: tuple[tuple[str, ...], list[int | None]] | None = None

    @property
    def complete(self) -> bool:
        return self.rows >= self.size

    def take(self, group: EventGroup) -> tuple[int, dict[int, str]]:
        """Learn from ``group``'s rows until ``size`` good rows are held. Returns how many
        rows of the group were consumed, and the consumed rows that break the rule (an
        array or object value) with why: those are not held.

        A row of floats only, under the same names as the row before it (most rows), is
        kept as it is and put in place by numpy at the end (`_FloatRows`); the others are
        read value by value (`_read`)."""
        wrong: dict[int, str] = {}
        numbers: list[list[float]] = []
        texts: list[list[str | None]] = []
        floats: dict[tuple[str, ...], _FloatRows] = {}  # by names
        last: _FloatRows | None = None  # the names of the row before, when it was held
        if self._recent is not None:
            last = floats[self._recent[0]] = _FloatRows(*self._recent)
        consumed = 0
        for features, prediction in zip(group.features, group.predictions, strict=True):
            if self.rows + len(numbers) >= self.size:
                break
            consumed += 1
            names = tuple(features)
            if last is not None and names == last.names:
                values = [*features.values()]
                if self._with_prediction:
                    values.insert(0, prediction)
                if _plain_floats(values):
                    last.add(len(numbers), values)
                    numbers.append(_FLOAT_ROW)
                    texts.append(_FLOAT_ROW_TEXTS)
                    continue
            for rows in floats.values():  # votes a string may be judged by
                rows.vote(self._numbers)
            # The prediction first: a column cap never leaves it out.
            items = [(PREDICTION, prediction)] if self._with_prediction else []
            items += features.items()
            read = self._read(items)
            if isinstance(read, str):
                wrong[consumed - 1] = read
                last = None
                continue
            number_row, text_row, columns = read
            numbers.append(number_row)
            texts.append(text_row)
            last = floats.get(names) or floats.setdefault(names, _FloatRows(names, columns))
            self._recent = names, columns
        for rows in floats.values():
            rows.vote(self._numbers)
        if numbers:
            self._chunks.append(self._chunk(numbers, texts, floats.values()))
            self.rows += len(numbers)
        return consumed, wrong

    def _read(
        self, items: list[tuple[str, Any]]
    ) -> str | tuple[list[float], list[str | None], list[int | None]]:
        """One row read value by value: its numbers, texts and each item's column, its
        votes counted; or why it breaks the rule (`_breaks_rule`)."""
        problem, voted = self._breaks_rule(items)
        if problem is not None:
            if voted is not None:
                # A refused string still votes: numbers leading by one value must not
                # refuse a categorical column's strings for ever.
                self._texts[voted] += 1
            return problem
        row: dict[int, tuple[float, str | None, bool]] = {}
        columns: list[int | None] = []
        for position, (name, value) in enumerate(items):
            # A name learned even when null: never a value in the warm-up is reported.
            j = self._column(name, self._with_prediction and position == 0)
            columns.append(j)
            if j is not None and value is not None:
                row[j] = _both_kinds(value)
        width = len(self.names)
        number_row = [math.nan] * width
        text_row: list[str | None] = [None] * width
        for j, (number, text, is_number) in row.items():
            number_row[j], text_row[j] = number, text
            if is_number:
                self._numbers[j] += 1
            else:
                self._texts[j] += 1
        return number_row, text_row, columns

    def _chunk(
        self,
        numbers: list[list[float]],
        texts: list[list[str | None]],
        floats: Iterable[_FloatRows],
    ) -> tuple[FloatArray, npt.NDArray[np.object_]]:
        """The rows taken as one chunk of tables, the float rows put in place."""
        width = len(self.names)
        number_table = np.full((len(numbers), width), math.nan)
        text_table = np.empty((len(texts), width), dtype=object)
        for i, (number_row, text_row) in enumerate(zip(numbers, texts, strict=True)):
            if number_row is not _FLOAT_ROW:
                number_table[i, : len(number_row)] = number_row
                text_table[i, : len(text_row)] = text_row
        for rows in floats:
            rows.place(number_table)
        return number_table, text_table

    def _breaks_rule(self, items: list[tuple[str, Any]]) -> tuple[str | None, int | None]:
        """Why a row breaks the value rule (an array or object anywhere, a number beyond
        `MAX_MAGNITUDE`, a string where a column's numbers outnumber its strings), or None;
        and the column a refused string votes in."""
        for name, value in items:
            if isinstance(value, list | dict):
                kind = "array" if isinstance(value, list) else "object"
                return f"{name!r} holds a JSON {kind}", None
            if type(value) is str:
                j = self.names.get(name)
                if j is not None and self._numbers[j] > self._texts[j]:
                    return f"{name!r} holds a JSON string, not a number", j
            elif type(value) in (int, float) and abs(value) > MAX_MAGNITUDE:
                return too_large(name, float(value)), None
        return None, None

    def _column(self, name: str, is_prediction: bool) -> int | None:
        """The index of column ``name``, added on first sight; None when it is refused."""
        if name == PREDICTION and not is_prediction:
            self._unmonitored.add(name, "reserved_name")
            return None
        j = self.names.get(name)
        if j is not None:
            return j
        if len(name) > self._limits.max_name_chars:
            self._unmonitored.add(name, "name_too_long")
            return None
        if len(self.names) >= self._limits.max_columns_per_model:
            self._unmonitored.add(name, "column_limit")
            return None
        j = self.names[name] = len(self.names)
        self._numbers.append(0)
        self._texts.append(0)
        return j

    def columns(self) -> Columns:
        """The columns decided by the majority of each one's warm-up values."""
        numeric, categorical = [], []
        # The prediction last, after the features, as profiles and evidence list columns.
        ordered = sorted(self.names.items(), key=lambda item: item[0] == PREDICTION)
        for name, j in ordered:
            if self._numbers[j] == 0 and self._texts[j] == 0:
                self._unmonitored.add(name, "no_values")
            elif self._numbers[j] > self._texts[j]:
                numeric.append(name)
            else:
                categorical.append(name)
        return Columns(tuple(numeric), tuple(categorical))

    def arrays(self, columns: Columns) -> tuple[FloatArray, npt.NDArray[np.object_], int]:
        """The held rows as ``(numeric, categorical)`` for ``columns``, and how many values
        were of the other kind (missing in these arrays). The learner is emptied."""
        numbers, texts = self._table()
        numeric_index = [self.names[name] for name in columns.numeric]
        categorical_index = [self.names[name] for name in columns.categorical]
        # Row-major, as the daemon's arrays are: sums over rows round alike in both.
        numeric = np.ascontiguousarray(numbers[:, numeric_index])
        categorical = np.ascontiguousarray(texts[:, categorical_index])
        # A number held as a float row has no text yet: a categorical column's needs one.
        untexted = (categorical == None) & ~np.isnan(numbers[:, categorical_index])  # noqa: E711
        for i, j in zip(*np.nonzero(untexted), strict=True):
            categorical[i, j] = category_text(float(numbers[i, categorical_index[j]]))
        # A numeric column's strings and a categorical column's... nothing: every value
        # has a text. What a numeric column loses is its non-numbers.
        set_aside = int(
            (np.isnan(numeric) & (texts[:, numeric_index] != None)).sum()  # noqa: E711
        )
        self._chunks.clear()
        return numeric, categorical, set_aside

    def _table(self) -> tuple[FloatArray, npt.NDArray[np.object_]]:
        width = len(self.names)
        numbers = np.full((self.rows, width), math.nan)
        texts = np.empty((self.rows, width), dtype=object)
        row = 0
        for chunk_numbers, chunk_texts in self._chunks:
            n, k = chunk_numbers.shape
            numbers[row : row + n, :k] = chunk_numbers
            texts[row : row + n, :k] = chunk_texts
            row += n
        return numbers, texts

    def snapshot(self, prefix: str) -> tuple[LearnerState, State]:
        meta = LearnerState(
            names=tuple(self.names), numbers=tuple(self._numbers), texts=tuple(self._texts)
        )
        if not self.rows:
            return meta, {}
        numbers, texts = self._table()
        return meta, {f"{prefix}numbers": numbers, **encode_texts(texts, prefix)}

    def restore(self, rows: int, state: LearnerState, arrays: State, prefix: str) -> None:
        """Load a `snapshot` of ``rows`` rows; arrays that do not fit it are refused."""
        width = len(state.names)
        if rows:
            numbers = np.asarray(arrays[f"{prefix}numbers"], dtype=np.float64)
            codes = np.asarray(arrays[f"{prefix}codes"])
            if not numbers.shape == codes.shape == (rows, width):
                raise ValueError(
                    f"warm-up rows: expected ({rows}, {width}) arrays, got {numbers.shape} "
                    f"and {codes.shape}"
                )
            texts = _decoded(arrays, codes, prefix)
        self.names = {name: j for j, name in enumerate(state.names)}
        self._numbers, self._texts = list(state.numbers), list(state.texts)
        self.rows = rows
        self._chunks.clear()
        if rows:
            self._chunks.append((numbers, texts))


def encode_texts(texts: npt.NDArray[np.object_], prefix: str) -> State:
    """Texts (None: missing) as arrays: each distinct text once (UTF-8 bytes and end
    offsets) and a code per cell (-1: missing). Exact for any text, and as large as the
    distinct texts, where a numpy string array is as wide as the longest text in every cell
    and drops trailing NULs."""
    index: dict[str, int] = {}
    flat = texts.reshape(-1).tolist()
    codes = np.fromiter(
        (-1 if text is None else index.setdefault(text, len(index)) for text in flat),
        np.int32,
        len(flat),
    ).reshape(texts.shape)
    encoded = [text.encode("utf-8", "surrogatepass") for text in index]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return {
        f"{prefix}codes": codes,
        f"{prefix}vocabulary": blob,
        f"{prefix}vocabulary_ends": ends,
    }


def _decoded(arrays: State, codes: npt.NDArray[Any], prefix: str) -> npt.NDArray[np.object_]:
    blob = np.asarray(arrays[f"{prefix}vocabulary"], dtype=np.uint8).tobytes()
    ends = np.asarray(arrays[f"{prefix}vocabulary_ends"], dtype=np.int64)
    starts = np.concatenate([np.zeros(min(1, ends.size), np.int64), ends[:-1]])
    if codes.dtype.kind not in "iu" or (ends.size and ends[-1] != len(blob)):
        raise ValueError("warm-up rows: texts do not match their vocabulary")
    if codes.size and not -1 <= codes.min() <= codes.max() < len(ends):
        raise ValueError("warm-up rows: a text code outside the vocabulary")
    vocabulary = [
        blob[a:b].decode("utf-8", "surrogatepass") for a, b in zip(starts, ends, strict=True)
    ]
    texts = np.empty(codes.shape, dtype=object)
    texts.reshape(-1)[:] = [None if c < 0 else vocabulary[c] for c in codes.reshape(-1).tolist()]
    return texts


class _FloatRows:
    """The rows of one `ColumnLearner.take` that hold floats only, under one tuple of
    names: their values as given, placed into the chunk's table at once. Their texts are
    made only for a column that turns out categorical (`ColumnLearner.arrays`)."""

    def __init__(self, names: tuple[str, ...], columns: list[int | None]) -> None:
        self.names = names
        self._kept = [k for k, j in enumerate(columns) if j is not None]
        self._columns = [j for j in columns if j is not None]
        self._positions: list[int] = []
        self._values: list[list[float]] = []
        self._unvoted = 0

    def add(self, position: int, values: list[float]) -> None:
        self._positions.append(position)
        self._values.append(values)
        self._unvoted += 1

    def vote(self, numbers: list[int]) -> None:
        """Count the rows added since the last vote as numbers in their columns."""
        if self._unvoted:
            for j in self._columns:
                numbers[j] += self._unvoted
            self._unvoted = 0

    def place(self, table: FloatArray) -> None:
        if self._positions:
            values = np.array(self._values, dtype=np.float64)[:, self._kept]
            table[np.array(self._positions)[:, None], np.array(self._columns)[None, :]] = values


_FLOAT_ROW: list[float] = []  # a row held by a `_FloatRows`, placed at the end
_FLOAT_ROW_TEXTS: list[str | None] = []


def _plain_floats(values: list[Any]) -> bool:
    """Whether every value is a float (no int, whose text differs, nor bool) within
    `MAX_MAGNITUDE` (JSON has no NaN nor infinity)."""
    return (
        bool(values)
        and set(map(type, values)) == _FLOAT_TYPE
        and max(values) <= MAX_MAGNITUDE
        and min(values) >= -MAX_MAGNITUDE
    )


_FLOAT_TYPE = {float}


def _both_kinds(value: object) -> tuple[float, str | None, bool]:
    """A JSON scalar read both ways (number, category text) and whether it is a number:
    numbers vote numeric, strings and booleans categorical."""
    if isinstance(value, bool):
        return float(value), category_text(value), False
    if isinstance(value, int | float):
        return float(value), category_text(value), True
    return math.nan, category_text(value), False


__all__ = [
    "MAX_COUNTED",
    "MAX_REPORTED",
    "ColumnLearner",
    "LearnerState",
    "Unmonitored",
    "UnmonitoredState",
    "encode_texts",
]
