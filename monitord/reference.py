"""Reference profiles on disk: build one from a data file, load and save them safely."""

from __future__ import annotations

import errno
import itertools
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.detection import FloatArray
from detectors.profile import ProfileError, ReferenceProfile, build_profile
from monitord.config import MIN_REFERENCE_ROWS, Config
from monitord.events import PREDICTION
from monitord.monitor import ProfileLoader
from monitord.tabular import ABSENT, Batch, DataError, DataFile, Row, line_problem

RESERVED = ("model", "model_version", "event_id", "timestamp", "label")

log = logging.getLogger("monitord.reference")


def profile_from_rows(
    rows: list[Row],
    model: str,
    version: str,
    *,
    prediction_column: str | None = "prediction",
    label_column: str | None = None,
    n_bins: int = 10,
    max_rows: int = 5000,
) -> ReferenceProfile:
    """A profile of ``rows`` (see `profile_from_batches`)."""
    names = dict.fromkeys(itertools.chain.from_iterable(rows))
    batch = Batch(0, len(rows), {n: [row.get(n, ABSENT) for row in rows] for n in names}, {})
    return profile_from_batches(
        lambda: iter([batch]),
        model,
        version,
        prediction_column=prediction_column,
        label_column=label_column,
        n_bins=n_bins,
        max_rows=max_rows,
    )


def profile_from_file(
    data: DataFile,
    model: str,
    version: str,
    *,
    prediction_column: str | None = "prediction",
    label_column: str | None = None,
    n_bins: int = 10,
    max_rows: int = 5000,
) -> ReferenceProfile:
    """A profile of a data file, read in batches (see `profile_from_batches`)."""
    return profile_from_batches(
        data.batches,
        model,
        version,
        prediction_column=prediction_column,
        label_column=label_column,
        n_bins=n_bins,
        max_rows=max_rows,
        source=str(data.path),
    )


def profile_from_batches(
    batches: Callable[[], Iterator[Batch]],
    model: str,
    version: str,
    *,
    prediction_column: str | None = "prediction",
    label_column: str | None = None,
    n_bins: int = 10,
    max_rows: int = 5000,
    source: str = "rows",
) -> ReferenceProfile:
    """A profile of the rows ``batches()`` yields; the prediction column is monitored as
    ``@prediction``. A column is numeric when every value it holds is a number (booleans
    are not). With ``label_column``, the profile also holds the reference performance: the
    (prediction, label) pairs of the rows that have both, in order (the first ``max_rows``).

    Two passes over the batches: the first (`_survey`) finds the columns and their kinds,
    the second (`_values`) fills one ``(rows, columns)`` array per kind; no row is ever a
    Python object of its own.
    """
    survey = _survey(batches(), source)
    columns = survey.columns
    if label_column is not None:
        _require_performance_columns(columns, prediction_column, label_column)
    if PREDICTION in columns and prediction_column != PREDICTION:
        raise DataError(
            f"column {PREDICTION!r}: the name monitord gives the prediction column "
            f"({prediction_column!r} here); rename it"
        )
    monitored = [c for c in columns if c not in RESERVED and c != label_column]
    numeric = [c for c in monitored if c in survey.present and c not in survey.not_numeric]
    categorical = [c for c in monitored if c not in numeric]
    paired = None
    if label_column is not None and prediction_column is not None:
        paired = (prediction_column, label_column)
    values = _values(batches(), survey.n_rows, numeric, categorical, paired, max_rows)
    if label_column is not None and values.labelled < MIN_REFERENCE_ROWS:
        raise DataError(
            f"label column {label_column!r}: {values.labelled} rows have a prediction and a "
            f"label; a reference performance needs at least {MIN_REFERENCE_ROWS}"
        )
    names = {c: (PREDICTION if c == prediction_column else c) for c in columns}
    return build_profile(
        model,
        version,
        [names[c] for c in numeric],
        values.numeric,
        [names[c] for c in categorical],
        values.categorical,
        n_bins=n_bins,
        max_rows=max_rows,
        performance_pairs=values.pairs,
    )


@dataclass
class _Survey:
    """What the first pass finds: the columns in order of appearance, those holding a
    value that is not a number, those holding a value at all (a column of nulls is
    categorical), and the number of rows."""

    columns: dict[str, None] = field(default_factory=dict)
    not_numeric: set[str] = field(default_factory=set)
    present: set[str] = field(default_factory=set)
    n_rows: int = 0


def _survey(batches: Iterator[Batch], source: str) -> _Survey:
    """The first pass: the columns and their kinds (a bad line stops it, named)."""
    survey = _Survey()
    for batch in batches:
        if batch.bad:
            bad = next(iter(batch.bad.values()))
            raise DataError(f"{source}:{bad.number}: {line_problem(bad.raw)}")
        survey.columns.update(dict.fromkeys(batch.columns))
        for name, values in batch.columns.items():
            if name not in survey.not_numeric and not _all_numbers(values):
                survey.not_numeric.add(name)
            if name not in survey.present and any(
                v is not None and v is not ABSENT for v in values
            ):
                survey.present.add(name)
        survey.n_rows += batch.size
    return survey


def _require_performance_columns(
    columns: dict[str, None], prediction_column: str | None, label_column: str
) -> None:
    """A reference performance needs both columns in the data."""
    wanted = ((label_column, "label"), (prediction_column, "prediction"))
    for column, option in wanted:
        if column is None or column not in columns:
            raise DataError(
                f"{option} column {column!r}: no row has it; a reference performance needs "
                "each row's prediction and label (--prediction-column, --label-column)"
            )


@dataclass
class _Values:
    """What the second pass reads: one ``(rows, columns)`` array per kind, the first
    (prediction, label) pairs, and how many rows have both."""

    numeric: FloatArray
    categorical: npt.NDArray[np.object_]
    pairs: list[tuple[Any, Any]] = field(default_factory=list)
    labelled: int = 0


def _values(
    batches: Iterator[Batch],
    n_rows: int,
    numeric: list[str],
    categorical: list[str],
    paired: tuple[str, str] | None,
    max_rows: int,
) -> _Values:
    """The second pass: the values of the ``numeric`` and ``categorical`` columns, and
    with ``paired`` (the prediction and label columns) the first ``max_rows`` pairs."""
    values = _Values(
        np.empty((n_rows, len(numeric)), dtype=np.float64),
        np.empty((n_rows, len(categorical)), dtype=object),
    )
    texts: list[dict[str, str]] = [{} for _ in categorical]  # one str object per category
    for batch in batches:
        rows = slice(batch.start, batch.start + batch.size)
        absent = [ABSENT] * batch.size
        for j, name in enumerate(numeric):
            column = batch.columns.get(name, absent)
            values.numeric[rows, j] = np.fromiter(map(_number, column), np.float64, batch.size)
        for j, name in enumerate(categorical):
            column, shared = batch.columns.get(name, absent), texts[j]
            values.categorical[rows, j] = [
                None if text is None else shared.setdefault(text, text)
                for text in map(_category, column)
            ]
        if paired is not None:
            predictions = batch.columns.get(paired[0], absent)
            labels = batch.columns.get(paired[1], absent)
            kept = labelled_pairs(zip(predictions, labels, strict=True))
            values.labelled += len(kept)
            values.pairs += kept[: max(0, max_rows - len(values.pairs))]
    return values


def _all_numbers(values: list[Any]) -> bool:
    """Whether every value present is a number (a boolean is not)."""
    kinds = set(map(type, values))
    if kinds <= _NUMBERS:
        return True
    return all(
        v is None or v is ABSENT or (isinstance(v, int | float) and not isinstance(v, bool))
        for v in values
    )


_NUMBERS = frozenset({int, float, type(None), type(ABSENT)})


def labelled_pairs(pairs: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """The (prediction, label) pairs holding both, each a finite number, text or a
    boolean: what a reference performance is built from."""
    return [pair for pair in pairs if _is_value(pair[0]) and _is_value(pair[1])]


def _is_value(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | bool | int)


def _number(value: object) -> float:
    """A value of a column `_all_numbers` found numeric: a number, or NaN (null, absent)."""
    if isinstance(value, float):
        return value
    if value is None or value is ABSENT:
        return math.nan
    if isinstance(value, int):
        return float(value)
    raise TypeError(f"not a number: {value!r}")  # the first pass saw none in this column


def _category(value: object) -> str | None:
    if value is None or value is ABSENT:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def load_profile(path: Path) -> ReferenceProfile:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read profile ({exc.strerror})") from None
    return supported(ReferenceProfile.from_bytes(data, source=str(path)), str(path))


def supported(profile: ReferenceProfile, source: str) -> ReferenceProfile:
    """``profile``, if its size (and its reference performance's) is in the range the
    thresholds are validated for."""
    if profile.n_rows < MIN_REFERENCE_ROWS:
        raise ProfileError(
            f"{source}: {profile.n_rows} reference rows; monitord's thresholds are validated "
            f"from {MIN_REFERENCE_ROWS} rows (benchmarks/calibration.py): build the reference "
            "from more data"
        )
    labelled = len(profile.performance_pairs)
    if 0 < labelled < MIN_REFERENCE_ROWS:
        raise ProfileError(
            f"{source}: {labelled} reference (prediction, label) pairs; a reference "
            f"performance needs at least {MIN_REFERENCE_ROWS}: build it from more labelled rows"
        )
    return profile


def save_profile(profile: ReferenceProfile, path: Path) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(path, profile.to_bytes())


def replace_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all (a temporary file, synced, renamed
    over it): a reader or a crash never meets half a file. Refuses a ``path`` that is
    there but not a regular file: renaming over a device or a directory would replace it."""
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, "it exists and is not a regular file", str(path))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def profile_for(path: Path, model: str, version: str) -> ReferenceProfile:
    """The profile in ``path``, which must be ``model``'s ``version``'s (a profile of
    another would test the version against another model's data)."""
    profile = load_profile(path)
    if (profile.model, profile.model_version) != (model, version):
        raise ProfileError(
            f"{path}: holds the profile of {profile.model}/{profile.model_version}, not "
            f"{model}/{version}; build one with `monitord reference build --model {model} "
            f"--version {version}`"
        )
    return profile


def profile_loader(config: Config) -> ProfileLoader:
    """Load a model version's profile from config (explicit file or profile_dir), or None.

    One that cannot be used (checked at startup; a file of profile_dir may change later)
    is logged and the version warms up: one bad file must not stop every model."""

    def load(model: str, version: str) -> ReferenceProfile | None:
        path = config.profile_path(model, version)
        if path is None:
            return None
        try:
            return profile_for(path, model, version)
        except ProfileError as exc:
            log.error(
                "%s/%s: reference profile not used, warming up instead: %s", model, version, exc
            )
            return None

    return load


__all__ = [
    "RESERVED",
    "load_profile",
    "profile_from_batches",
    "profile_from_file",
    "profile_from_rows",
    "profile_loader",
    "save_profile",
    "supported",
]
