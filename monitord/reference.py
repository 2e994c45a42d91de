"""Reference profiles on disk: build one from a data file, load and save them safely."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from detectors.profile import ProfileError, ReferenceProfile, build_profile
from monitord.config import MIN_REFERENCE_ROWS, Config
from monitord.events import PREDICTION
from monitord.monitor import ProfileLoader
from monitord.tabular import Row

RESERVED = ("model", "model_version", "event_id", "timestamp", "label")


def profile_from_rows(
    rows: list[Row],
    model: str,
    version: str,
    *,
    prediction_column: str | None = "prediction",
    n_bins: int = 10,
    max_rows: int = 5000,
) -> ReferenceProfile:
    """A profile of ``rows``; the prediction column is monitored as ``@prediction``."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    numeric: list[str] = []
    categorical: list[str] = []
    for column in columns:
        if column in RESERVED:
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
    )


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
    """``profile``, if its size is in the range the thresholds are validated for."""
    if profile.n_rows < MIN_REFERENCE_ROWS:
        raise ProfileError(
            f"{source}: {profile.n_rows} reference rows; monitord's thresholds are validated "
            f"from {MIN_REFERENCE_ROWS} rows (benchmarks/calibration.py): build the reference "
            "from more data"
        )
    return profile


def save_profile(profile: ReferenceProfile, path: Path) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(profile.to_bytes())
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
