"""Every column's null laws at its effective sizes, and the thresholds they give.

`ColumnLaws` applies `detectors.nulls` to one profile: the effective sizes of each column
(its dependence widened by its own uncertainty and pooled, `detectors.dependence`), which
columns can be calibrated at all, and for a window of ``rows`` rows the threshold of every
test and column at a per-test level. `detectors.calibration` chooses the levels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.buckets import CategoryBuckets
from detectors.dependence import MIN_EFFECTIVE_ROWS
from detectors.detection import FloatArray, IntArray, read_only
from detectors.nulls import (
    PERSISTENT,
    CountLaws,
    TailLaw,
    ks_isf,
    out_of_range_isf,
    rate_count_isf,
)
from detectors.profile import ReferenceProfile
from detectors.psi import SHARE_FLOOR
from detectors.resampling import chi2_and_psi

MAX_COUNT_CELLS = 4_000_000
"""Simulated windows x buckets of one categorical count law, at most."""


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Every test's thresholds for windows of ``rows`` rows: a column drifts where its
    statistic exceeds its threshold. ``None`` for a test left out; ``inf`` for a column that
    cannot be calibrated. Shapes ``(p,)`` numeric and ``(c,)`` categorical, in profile order;
    rates (missing, out of range, unseen) are shares of the window, as the tests report."""

    rows: int
    per_evaluation_alpha: float
    per_test_alpha: float  # level of each distribution test (KS, PSI, chi-square)
    quality_alpha: float  # level of each data-quality test
    ks: FloatArray | None = None
    psi: FloatArray | None = None
    psi_categorical: FloatArray | None = None
    chi2: FloatArray | None = None
    missing: FloatArray | None = None
    missing_categorical: FloatArray | None = None
    out_of_range: FloatArray | None = None
    unseen: FloatArray | None = None


class ColumnLaws:
    """Every column's null laws (`detectors.nulls`) at its effective sizes."""

    def __init__(
        self, profile: ReferenceProfile, chosen: frozenset[str], alpha: float, seed: int
    ) -> None:
        self.profile, self.chosen = profile, chosen
        p, c = len(profile.numeric_names), len(profile.categorical_names)
        self.p, self.c = p, c
        self.missing = np.concatenate(
            [profile.numeric_missing_rate, profile.categorical_missing_rate]
        )
        # Every law below sees the estimate widened by its own uncertainty, for the depth
        # of the tails these tests are set at: about -log(alpha / M) (dependence docstring).
        columns = p * len(chosen & {"ks", "psi", "missing", "out_of_range"}) + c * len(
            chosen & {"chi2", "psi", "missing", "unseen"}
        )
        depth = -math.log(min(alpha / max(columns, 1), 0.5))
        estimate = profile.dependence.pooled()
        dependence = estimate.tail_equivalent(depth)
        self.dependence = dependence
        # Columns the estimate calls persistent get AR(1) windows in the count laws; for the
        # others the inflation is spread over the buckets (nulls.simulate_counts): the
        # uncertainty of an estimate of 1, or a weak dependence the gate let through.
        self.persistent = estimate.inflation[:, -1] > PERSISTENT
        observed = profile.n_rows * (1.0 - self.missing)
        self.reference_effective = np.asarray(observed / dependence.at(profile.n_rows))
        self.calibratable = self.reference_effective >= MIN_EFFECTIVE_ROWS
        # KS compares a window with the profile's row sample: every row up to `max_rows`,
        # beyond it a random subsample, whose distribution function errs by the reference's
        # error plus its own (1/s - 1/n for s of n rows drawn without replacement).
        sampled = profile.sample_sizes.astype(np.float64)
        with np.errstate(divide="ignore"):
            subsampling = np.maximum(1.0 / sampled - 1.0 / observed[:p], 0.0)
            self.ks_reference_effective = np.asarray(
                1.0 / (1.0 / self.reference_effective[:p] + subsampling)
            )
        self.block_length = estimate.block_length(limit=max(profile.numeric_rows.shape[0] // 4, 1))
        self._counts = CountLaws(seed)
        self.buckets = CategoryBuckets.from_counts(profile.category_counts)
        self.tests = {
            "ks": p if "ks" in chosen else 0,
            "psi": p if "psi" in chosen else 0,
            "psi_categorical": c if "psi" in chosen else 0,
            "chi2": c if "chi2" in chosen else 0,
            "missing": p if "missing" in chosen else 0,
            "missing_categorical": c if "missing" in chosen else 0,
            "out_of_range": p if "out_of_range" in chosen else 0,
            "unseen": c if "unseen" in chosen else 0,
        }
        numeric_ok = int(self.calibratable[:p].sum())
        categorical_ok = int(self.calibratable[p:].sum())
        counted = {
            name: numeric_ok if n == p else categorical_ok for name, n in self.tests.items() if n
        }
        self.n_distribution_tests = sum(
            counted.get(name, 0) for name in ("ks", "psi", "psi_categorical", "chi2")
        )
        self.n_quality_tests = sum(counted.values()) - self.n_distribution_tests
        self.n_tests = self.n_distribution_tests + self.n_quality_tests

    def rebind(self, profile: ReferenceProfile) -> None:
        """Laws made in another process from a copy of ``profile``: read ``profile`` itself,
        and the count laws this process shares (a copy of each per version otherwise)."""
        self.profile = profile
        self._counts.share()

    def window(self, rows: int) -> tuple[FloatArray, FloatArray]:
        """``(p + c,)`` expected observed values of a window of ``rows`` rows, and its
        inflation."""
        return np.maximum(rows * (1.0 - self.missing), 1.0), self.dependence.at(rows)

    def numeric_psi_laws(self, rows: int) -> list[TailLaw | None]:
        observed, tau = self.window(rows)
        laws: list[TailLaw | None] = []
        for j in range(self.p):
            if not self.calibratable[j]:
                laws.append(None)
                continue
            shares = self.profile.bin_fractions[j]
            laws.append(
                self._counts.laws(
                    ("psi",),
                    shares,
                    float(self.reference_effective[j]),
                    round(observed[j]),
                    float(tau[j]),
                    _psi_of_counts(shares),
                    persistent=bool(self.persistent[j]),
                )[0]
            )
        return laws

    def categorical_laws(self, rows: int) -> tuple[list[TailLaw | None], list[TailLaw | None]]:
        """Per categorical feature, the law of chi-square and that of PSI."""
        observed, tau = self.window(rows)
        chi2_laws: list[TailLaw | None] = []
        psi_laws: list[TailLaw | None] = []
        for f in range(self.c):
            j = self.p + f
            if not self.calibratable[j]:
                chi2_laws.append(None)
                psi_laws.append(None)
                continue
            counts = np.asarray(self.profile.category_counts[f], dtype=np.float64)
            shares = np.append(counts, self._unseen_events(f)) / (
                counts.sum() + self._unseen_events(f)
            )
            chi2_law, psi_law = self._counts.laws(
                ("categorical", tuple(counts.tolist())),
                shares,
                float(self.reference_effective[j]),
                round(observed[j]),
                float(tau[j]),
                _categorical_statistics(self.profile.category_counts[f]),
                draws=max(1024, min(16_384, MAX_COUNT_CELLS // shares.shape[0])),
                persistent=bool(self.persistent[j]),
            )
            chi2_laws.append(chi2_law)
            psi_laws.append(psi_law)
        return chi2_laws, psi_laws

    def _unseen_events(self, f: int) -> float:
        """Reference values standing for categories it lacks (Good-Turing): its singletons
        and the values of categories cut from the vocabulary."""
        counts = self.profile.category_counts[f]
        observed = self.profile.n_rows * (1.0 - self.profile.categorical_missing_rate[f])
        cut = max(observed - float(counts.sum()), 0.0)
        return float((counts == 1).sum() + cut)

    def distribution_columns(self) -> npt.NDArray[np.bool_]:
        """Which columns of the bootstrap's statistics (tests in name order: chi2, ks, psi,
        psi_categorical) belong to calibratable columns."""
        p, ok = self.p, self.calibratable
        parts = [
            ok[:p] if name in ("ks", "psi") else ok[p:]
            for name in ("chi2", "ks", "psi", "psi_categorical")
            if self.tests[name]
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.bool_)

    def thresholds(self, rows: int, alpha: float, level: float, quality: float) -> Thresholds:
        """Every chosen test's thresholds for windows of ``rows`` rows: ``level`` per
        distribution test and ``quality`` per data-quality test, chosen so that the family
        meets ``alpha`` per evaluation (`detectors.calibration`)."""
        observed, tau = self.window(rows)
        effective = observed / tau
        p, ok = self.p, self.calibratable
        values: dict[str, FloatArray] = {}
        if self.tests["ks"]:
            values["ks"] = ks_isf(level, self.ks_reference_effective, effective[:p])
        if self.tests["psi"]:
            values["psi"] = _law_thresholds(self.numeric_psi_laws(rows), level)
        if self.tests["chi2"] or self.tests["psi_categorical"]:
            chi2_laws, psi_laws = self.categorical_laws(rows)
            if self.tests["chi2"]:
                values["chi2"] = _law_thresholds(chi2_laws, level)
            if self.tests["psi_categorical"]:
                values["psi_categorical"] = _law_thresholds(psi_laws, level)
        rows_f = float(rows)
        if self.tests["missing"] or self.tests["missing_categorical"]:
            missing_effective = self.profile.n_rows / self.dependence.at(self.profile.n_rows)
            counts = rate_count_isf(
                quality, self.missing, missing_effective, np.full(self.missing.shape, rows_f), tau
            )
            if self.tests["missing"]:
                values["missing"] = counts[:p] / rows_f
            if self.tests["missing_categorical"]:
                values["missing_categorical"] = counts[p:] / rows_f
        if self.tests["out_of_range"]:
            outside = out_of_range_isf(
                quality, self.reference_effective[:p], effective[:p], tau[:p]
            )
            values["out_of_range"] = outside / observed[:p]
        if self.tests["unseen"]:
            unseen = np.array([self._unseen_events(f) for f in range(self.c)])
            totals = np.maximum(self.buckets.reference_totals + unseen, 1.0)
            counts = rate_count_isf(
                quality, unseen / totals, self.reference_effective[p:], observed[p:], tau[p:]
            )
            values["unseen"] = counts / observed[p:]
        columns = {"ks": ok[:p], "psi": ok[:p], "missing": ok[:p], "out_of_range": ok[:p]}
        frozen = {
            name: read_only(np.where(columns.get(name, ok[p:]), value, np.inf))
            for name, value in values.items()
        }
        return Thresholds(
            rows=rows,
            per_evaluation_alpha=alpha,
            per_test_alpha=level,
            quality_alpha=quality,
            **frozen,
        )


def _law_thresholds(laws: list[TailLaw | None], level: float) -> FloatArray:
    return np.array([np.inf if law is None else law.isf(level) for law in laws], dtype=np.float64)


def _psi_of_counts(shares: FloatArray) -> Callable[[IntArray], tuple[FloatArray, ...]]:
    reference = np.maximum(shares, SHARE_FLOOR)

    def psi(counts: IntArray) -> tuple[FloatArray, ...]:
        totals = np.maximum(counts.sum(axis=1, keepdims=True), 1)
        window = np.maximum(counts / totals, SHARE_FLOOR)
        return (np.asarray(((window - reference) * np.log(window / reference)).sum(axis=1)),)

    return psi


def _categorical_statistics(
    counts: npt.NDArray[np.integer],
) -> Callable[[IntArray], tuple[FloatArray, ...]]:
    """Chi-square and PSI of simulated window counts against the actual reference counts,
    exactly as `detectors.chi2` and `detectors.psi` compute them (unseen bucket last)."""
    buckets = CategoryBuckets.from_counts([counts])
    reference = buckets.reference_counts

    def statistics(window: IntArray) -> tuple[FloatArray, ...]:
        tiled = np.broadcast_to(reference, window.shape)
        chi2, psi = chi2_and_psi(np.asarray(tiled), window.astype(np.float64), buckets)
        return chi2[:, 0], psi[:, 0]

    return statistics


__all__ = ["MAX_COUNT_CELLS", "ColumnLaws", "Thresholds"]
