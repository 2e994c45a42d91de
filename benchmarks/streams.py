"""Synthetic monitored streams for the calibration and power benchmarks.

Every stream is a stationary process unless a change is injected: ``n_features`` columns
correlated 0.6 through a common factor, each factor and noise an AR(1) series with lag-1
correlation ``phi`` (unit variance), turned into one of a few *kinds* of columns, plus the
model's prediction (a logistic score of the features) as the last numeric column, named as
the daemon names it. Feature 0 misses 2 % of its values at random.

- ``gaussian``: the process itself;
- ``heavy``: Student-t marginals with 2 degrees of freedom (infinite variance);
- ``discrete``: counts (``floor(exp(0.8 x))``, about a dozen values) and halves
  (``round(2 x) / 2``), alternately: ties everywhere;
- ``categorical``: half the features categorical, six categories of unequal frequency plus
  rare ones ("r0".."r19", about 0.6 % together) that a short reference may never see;
- ``seasonal``: a sine of period `SEASON` rows (amplitude 1, a phase per feature) on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special, stats
from scipy.signal import lfilter

KINDS = ("gaussian", "heavy", "discrete", "categorical", "seasonal")
CORRELATION = 0.6
MISSING = 0.02
SEASON = 48
BURN_IN = 500
PREDICTION = "@prediction"  # monitord.events.PREDICTION, spelled out: old trees lack it here
_LEVELS = np.array(["a", "b", "c", "d", "e", "f"], dtype=object)
_LEVEL_EDGES = np.array([-0.9, -0.2, 0.4, 1.0, 1.6])  # six categories of unequal frequency


@dataclass(frozen=True)
class Stream:
    """Rows of one stream: numeric ``(n, p)`` (NaN missing), categorical ``(n, c)`` objects."""

    numeric: npt.NDArray[np.float64]
    categorical: npt.NDArray[np.object_]
    numeric_names: tuple[str, ...]
    categorical_names: tuple[str, ...]

    def rows(self, start: int, stop: int) -> Stream:
        return Stream(
            self.numeric[start:stop],
            self.categorical[start:stop],
            self.numeric_names,
            self.categorical_names,
        )

    @property
    def n_rows(self) -> int:
        return int(self.numeric.shape[0])


def latent(
    rng: np.random.Generator, n: int, n_features: int, phi: float
) -> npt.NDArray[np.float64]:
    """``(n, n_features)`` stationary AR(1) columns, unit variance, correlated 0.6."""
    gain = math.sqrt(1.0 - phi * phi)
    shocks = rng.standard_normal((n + BURN_IN, n_features + 1))
    series = lfilter([gain], [1.0, -phi], shocks, axis=0)[BURN_IN:]
    common, own = series[:, :1], series[:, 1:]
    return np.asarray(math.sqrt(CORRELATION) * common + math.sqrt(1 - CORRELATION) * own)


def make_stream(
    kind: str,
    latent_rows: npt.NDArray[np.float64],
    rng: np.random.Generator,
    first_row: int = 0,
) -> Stream:
    """The columns of ``kind`` built from latent rows (``first_row``: their time index)."""
    n, f = latent_rows.shape
    x = latent_rows.copy()
    if kind == "seasonal":
        t = np.arange(first_row, first_row + n)[:, None]
        phase = np.arange(f)[None, :] * 0.7
        x = x + np.sin(2 * math.pi * t / SEASON + phase)
    numeric_columns = x
    categorical = np.empty((n, 0), dtype=object)
    categorical_names: tuple[str, ...] = ()
    if kind == "heavy":
        numeric_columns = stats.t.ppf(special.ndtr(x), 2)
    elif kind == "discrete":
        counts = np.floor(np.exp(0.8 * x))
        halves = np.round(2 * x) / 2
        numeric_columns = np.where(np.arange(f) % 2 == 0, counts, halves)
    elif kind == "categorical":
        split = max(f // 2, 1) if f > 1 else 0
        numeric_columns = x[:, :split] if split else x[:, :0]
        categorical = _categories(x[:, split:], rng)
        categorical_names = tuple(f"c{j}" for j in range(categorical.shape[1]))
    elif kind not in KINDS:
        raise ValueError(f"kind: one of {KINDS}, got {kind!r}")
    numeric_columns = np.array(numeric_columns, dtype=np.float64)
    if numeric_columns.shape[1]:
        missing = rng.random(n) < MISSING
        numeric_columns[missing, 0] = np.nan
    score = special.expit(x.mean(axis=1) + 0.5 * rng.standard_normal(n))
    numeric = np.column_stack([numeric_columns, score])
    names = (*(f"x{j}" for j in range(numeric_columns.shape[1])), PREDICTION)
    return Stream(numeric, categorical, names, categorical_names)


def _categories(x: npt.NDArray[np.float64], rng: np.random.Generator) -> npt.NDArray[np.object_]:
    codes = np.searchsorted(_LEVEL_EDGES, x)
    values = _LEVELS[codes].astype(object)
    rare = x > 2.5
    values[rare] = np.array([f"r{k}" for k in range(20)], dtype=object)[
        rng.integers(0, 20, int(rare.sum()))
    ]
    return np.asarray(values)
