"""Reference profiles on disk: build one from a data file, load and save them safely."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from detectors.profile import ProfileError, ReferenceProfile, build_profile
from monitord.config import MIN_REFERENCE_ROWS, Config
from monitord.events import PREDICTION
from monitord.monitor import ProfileLoader
from monitord.tabular import DataError, Row

RESERVED = ("model", "model_version", "event_id", "timestamp", "label")


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
    """A profile of ``rows``; the prediction column is monitored as ``@prediction``. With
    ``label_column``, the profile also holds the reference performance: the (prediction,
    label) pairs of the rows that have both, in order (the first ``max_rows``)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    pairs = [] if label_column is None else _pairs(rows, columns, prediction_column, label_column)
    numeric: list[str] = []
    categorical: list[str] = []
    for column in columns:
        if column in RESERVED or column == label_column:
            continue
        values = [row.get(column) for row in rows]
        present = [v for v in values if v is not None]
        kinds = {isinstance(v, int | float) and not isinstance(v, bool) for v in present}
        (numeric if kinds == {True} else categorical).append(column)
    names = {c: (PREDICTION if c == prediction_column else c) for c in columns}
    numeric_values = np.array(
        [[_number(row.get(c)) for c in numeric] for row in rows], dtype=np.float64
    ).reshape(len(rows), len(numeric))
    categorical_values = np.array(
        [[_category(row.get(c)) for c in categorical] for row in rows], dtype=object
    ).reshape(len(rows), len(categorical))
    return build_profile(
        model,
        version,
        [names[c] for c in numeric],
        numeric_values,
        [names[c] for c in categorical],
        categorical_values,
        n_bins=n_bins,
        max_rows=max_rows,
        performance_pairs=pairs,
    )


def _pairs(
    rows: list[Row], columns: dict[str, None], prediction_column: str | None, label_column: str
) -> list[tuple[Any, Any]]:
    """The (prediction, label) pairs of the rows holding both (a finite number, text or a
    boolean each): the reference performance."""
    for name, option in ((label_column, "label"), (prediction_column, "prediction")):
        if name is None or name not in columns:
            raise DataError(
                f"{option} column {name!r}: no row has it; a reference performance needs each "
                "row's prediction and label (--prediction-column, --label-column)"
            )
    assert prediction_column is not None
    pairs = [(row.get(prediction_column), row.get(label_column)) for row in rows]
    kept = labelled_pairs(pairs)
    if len(kept) < MIN_REFERENCE_ROWS:
        raise DataError(
            f"label column {label_column!r}: {len(kept)} rows have a prediction and a label; a "
            f"reference performance needs at least {MIN_REFERENCE_ROWS}"
        )
    return kept


def labelled_pairs(pairs: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """The (prediction, label) pairs holding both, each a finite number, text or a
    boolean: what a reference performance is built from."""
    return [pair for pair in pairs if _is_value(pair[0]) and _is_value(pair[1])]


def _is_value(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str | bool | int)


def _number(value: object) -> float:
    return float("nan") if value is None else float(value)  # type: ignore[arg-type]


def _category(value: object) -> str | None:
    if value is None:
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
    over it): a reader or a crash never meets half a file."""
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


def profile_loader(config: Config) -> ProfileLoader:
    """Load a model version's profile from config (explicit file or profile_dir), or None."""

    def load(model: str, version: str) -> ReferenceProfile | None:
        path = config.profile_path(model, version)
        return None if path is None else load_profile(path)

    return load


__all__ = [
    "RESERVED",
    "load_profile",
    "profile_from_rows",
    "profile_loader",
    "save_profile",
    "supported",
]
