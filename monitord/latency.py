"""Inference latency per model version: each window's p50 and p99 against the reference,
and against an absolute SLO.

Events carrying ``events.latency`` (milliseconds; default field ``latency_ms``) feed their
version's latency stream. Its first ``detection.warmup_events`` values are the reference;
then every ``detection.window_size`` values make a window. A window is tested two ways:

- **against the reference** (``MonitordLatencyDegraded``): its share of values above the
  reference's p99, against the calibrated beta-binomial law of a rate (the reference's own
  sampling error and serial dependence included, `detectors.performance`), at the window's
  share of the false-alarm budget: a p99 that moved, told apart from a noisy one;
- **against the SLO** (``MonitordLatencySLO``, when ``performance.latency_slo_ms`` is set):
  its p99 above the SLO, an operator's threshold with no statistics in it.

Each window's p50 and p99 and the reference's are its evidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import orjson
from pydantic import NonNegativeInt

from connectors.stream import Record
from detectors.detection import Detection, FloatArray, State
from detectors.performance import PerformanceReference, Scoring
from monitord.alerts import LATENCY_DEGRADED_DETECTOR, LATENCY_DETECTOR, stable_id
from monitord.monitor import Evaluation, OffsetRange
from monitord.state import Document

TAIL_QUANTILE = 0.99
"""A window's values above this quantile of the reference are its tail."""

Ranges = dict[tuple[str, int], tuple[int, int]]


class LatencyState(Document):
    """A version's latency stream beside its arrays (reference and window values)."""

    rows: NonNegativeInt
    window_first_row: NonNegativeInt
    ranges: tuple[tuple[str, int, int, int], ...] = ()  # the window's offsets per partition


class VersionLatency:
    """One model version's latency stream (module docstring)."""

    def __init__(
        self,
        model: str,
        version: str,
        warmup: int,
        window_size: int,
        level: float,
        slo_ms: float | None,
    ) -> None:
        self.model, self.version = model, version
        self.warmup, self.window_size, self.level, self.slo_ms = warmup, window_size, level, slo_ms
        self.reference_values: list[float] = []
        self.reference: PerformanceReference | None = None
        self.reference_id = ""
        self._limit = 0
        self.window: list[float] = []
        self.window_first_row = 0
        self.rows = 0
        self._ranges: Ranges = {}
        self._times: list[float] = []

    def update(
        self, values: FloatArray, times: FloatArray, records: Sequence[Record]
    ) -> list[Evaluation]:
        """Fold the latencies of monitored events (NaN: none given) in event order."""
        evaluations = []
        for i in np.flatnonzero(np.isfinite(values) & (values >= 0)).tolist():
            value, record = float(values[i]), records[i]
            self.rows += 1
            if self.reference is None:
                self.reference_values.append(value)
                if len(self.reference_values) == self.warmup:
                    self._build()
                continue
            if not self.window:
                self.window_first_row = self.rows - 1
            self.window.append(value)
            self._times.append(float(times[i]))
            key = (record.topic, record.partition)
            low, high = self._ranges.get(key, (record.offset, record.offset))
            self._ranges[key] = (min(low, record.offset), max(high, record.offset))
            if len(self.window) == self.window_size:
                evaluations += self._test(record)
                self.window, self._ranges, self._times = [], {}, []
        return evaluations

    def _build(self) -> None:
        values = self.reference_values
        self.reference = PerformanceReference.build(
            Scoring("regression", ""), values, [0.0] * len(values), TAIL_QUANTILE
        )
        self.reference_id = stable_id("latency", self.model, self.version, orjson.dumps(values))
        self._limit = self.reference.miss_limit(self.window_size, self.level)

    def _test(self, record: Record) -> list[Evaluation]:
        reference = self.reference
        assert reference is not None
        window = np.asarray(self.window)
        n = window.shape[0]
        above = reference.scoring.miss_above
        tail = int((window > above).sum())
        p50, p99 = (float(v) for v in np.quantile(window, [0.5, TAIL_QUANTILE]))
        reference_p50, reference_p99 = np.quantile(self.reference_values, [0.5, TAIL_QUANTILE])
        evidence = (
            ("latency_p50_ms", p50),
            ("latency_p99_ms", p99),
            ("reference_latency_p50_ms", float(reference_p50)),
            ("reference_latency_p99_ms", float(reference_p99)),
            ("tail_share", tail / n),
        )
        tests = [
            (
                LATENCY_DEGRADED_DETECTOR,
                "latency_tail_share",
                tail / n,
                self._limit / n,
                tail > self._limit,
            )
        ]
        if self.slo_ms is not None:
            tests.append((LATENCY_DETECTOR, "latency_p99_ms", p99, self.slo_ms, p99 > self.slo_ms))
        offsets = tuple(
            OffsetRange(t, p, low, high) for (t, p), (low, high) in sorted(self._ranges.items())
        )
        return [
            Evaluation(
                self.model,
                self.version,
                self.reference_id,
                (feature,),
                Detection(
                    detector,
                    self.window_first_row,
                    self.rows - 1,
                    np.array([statistic]),
                    np.array([threshold]),
                    np.array([drifted]),
                    None,
                    np.array([n], dtype=np.int64),
                ),
                offsets,
                record,
                min(self._times),
                max(self._times),
                evidence=evidence,
            )
            for detector, feature, statistic, threshold, drifted in tests
        ]

    def snapshot(self) -> tuple[LatencyState, State]:
        state = LatencyState(
            rows=self.rows,
            window_first_row=self.window_first_row,
            ranges=tuple((t, p, low, high) for (t, p), (low, high) in self._ranges.items()),
        )
        return state, {
            "reference": np.asarray(self.reference_values, dtype=np.float64),
            "window": np.asarray(self.window, dtype=np.float64),
            "times": np.asarray(self._times, dtype=np.float64),
        }

    def restore(self, state: LatencyState, arrays: State) -> None:
        self.reference_values = [float(v) for v in arrays["reference"]]
        self.reference = None
        if len(self.reference_values) >= self.warmup:
            self._build()
        self.window = [float(v) for v in arrays["window"]]
        self._times = [float(v) for v in arrays["times"]]
        self.rows, self.window_first_row = state.rows, state.window_first_row
        self._ranges = {(t, p): (low, high) for t, p, low, high in state.ranges}


def latencies(values: Sequence[object]) -> FloatArray:
    """Latency values of events as floats (NaN where absent or not a number)."""
    out = np.full(len(values), math.nan)
    for i, value in enumerate(values):
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                out[i] = value
            except OverflowError:  # an integer beyond any float: no latency
                continue
    return out


__all__ = ["TAIL_QUANTILE", "LatencyState", "VersionLatency", "latencies"]
