"""Detector throughput, detection delay and false alarms against scipy, river and numpy.

One process, one workload: 200,000 rows x 20 equicorrelated (0.6) Gaussian features, three
of them rounded to 0.1 (ties), a 5,000-row reference from the same distribution, and a
+0.5 sd shift in features 0-9 from row 100,000. Tumbling 1,000-row windows. Each monitord
detector runs next to its baseline on the same data: scipy ``ks_2samp`` per feature and
window, a plain numpy per-feature PSI loop, river's ADWIN / KSWIN / PageHinkley per value,
and ``np.sum`` over the same array (the memory-bandwidth ceiling). Then the calibrated
KS+PSI rule runs on fresh stationary data from the reference distribution to measure its
false-alarm rate against the configured budget, next to a naive per-feature KS p < 0.05
rule. The last line is the RESULT summary.

    python benchmarks/detectors.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from river import drift
from scipy.stats import ks_2samp

# This script shares its name with the `detectors` package, and `python benchmarks/detectors.py`
# puts benchmarks/ first on sys.path, where `import detectors` would find the script itself.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from detectors import (
    ADWIN,
    CountWindow,
    Detection,
    KSTest,
    PSITest,
    ReferenceProfile,
    WindowedDetector,
    WindowTest,
    build_profile,
    ks_pvalues,
)
from detectors.calibration import Calibration, FalseAlarmBudget, WindowPlan, calibrate
from detectors.detection import FloatArray
from detectors.psi import SHARE_FLOOR

N_FEATURES = 20
SHIFTED = range(10)  # features shifted from SHIFT_ROW on
ROUNDED = [17, 18, 19]  # rounded to one decimal: ~60 distinct values, ties in KS and PSI
CORRELATION = 0.6  # every pair of features, through one common factor
REFERENCE_ROWS = 5000
STREAM_ROWS = 200_000
SHIFT_ROW = 100_000
SHIFT_SD = 0.5
WINDOW = 1000
BATCH = 10_000
WORKLOAD_BUDGET = 1_000_000  # the daemon's default false-alarm budget (events)
FA_BUDGET = 50_000  # alpha = 0.02 per window: enough expected alarms to measure a rate
NAIVE_LEVEL = 0.05
KSWIN_FEATURES = (0, 10)  # one shifted, one not
NAMES = [f"f{j:02d}" for j in range(N_FEATURES)]

T = TypeVar("T")
Flags = list[tuple[int, int]]  # (stream row, feature) of every drift flag
RiverFactory = Callable[[], Any]  # river ships no type hints
Runner = Callable[[], list[Detection]]


def correlated_rows(rng: np.random.Generator, n: int) -> FloatArray:
    common = rng.standard_normal((n, 1))
    rows = math.sqrt(CORRELATION) * common
    rows = rows + math.sqrt(1 - CORRELATION) * rng.standard_normal((n, N_FEATURES))
    rows[:, ROUNDED] = np.round(rows[:, ROUNDED], 1)
    return rows


@dataclass(frozen=True)
class Measured(Generic[T]):
    seconds: float
    peak_mb: float | None
    result: T


def measure(run: Callable[[], T], repeats: int, memory: bool = True) -> Measured[T]:
    """Best of ``repeats`` wall times, then the tracemalloc peak of one more (untimed) run."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    peak = None
    if memory:
        tracemalloc.start()
        run()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return Measured(min(seconds), peak, result)


@dataclass(frozen=True)
class Row:
    name: str
    measured: Measured[Any]
    flags: Flags
    note: str = ""
    values: int = STREAM_ROWS * N_FEATURES

    @property
    def rate(self) -> float:
        return self.values / self.measured.seconds

    def delay(self) -> int | None:
        """Rows from SHIFT_ROW to the first flag on a shifted feature at or after it."""
        hits = [row for row, f in self.flags if f in SHIFTED and row >= SHIFT_ROW]
        return min(hits) - SHIFT_ROW if hits else None

    def false_alarms(self) -> int:
        return sum(f not in SHIFTED or row < SHIFT_ROW for row, f in self.flags)


def flags_of(detections: Iterable[Detection]) -> Flags:
    return [(d.row, int(f)) for d in detections for f in np.flatnonzero(d.drifted)]


def statistics_of(detections: list[Detection], name: str) -> FloatArray:
    """``(n_windows, p)`` statistics of test ``name``, one row per window."""
    return np.array([d.statistic for d in detections if d.detector == name])


def batched_run(detector: WindowedDetector | ADWIN, stream: FloatArray) -> Runner:
    """A run of ``detector`` over ``stream`` in batches of BATCH rows, from a fresh state."""

    def run() -> list[Detection]:
        detector.reset()
        out: list[Detection] = []
        for start in range(0, stream.shape[0], BATCH):
            out.extend(detector.update(stream[start : start + BATCH]))
        return out

    return run


def windowed(tests: Sequence[WindowTest]) -> WindowedDetector:
    return WindowedDetector(tests, CountWindow(N_FEATURES, WINDOW))


def scipy_ks(reference: FloatArray, stream: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``(n_windows, p)`` statistics and p-values, one ``ks_2samp`` call per feature and window."""
    n_windows, p = stream.shape[0] // WINDOW, stream.shape[1]
    columns = [np.ascontiguousarray(reference[:, f]) for f in range(p)]
    statistic, p_value = np.empty((n_windows, p)), np.empty((n_windows, p))
    for w in range(n_windows):
        window = stream[w * WINDOW : (w + 1) * WINDOW]
        for f in range(p):
            result = ks_2samp(columns[f], window[:, f])
            statistic[w, f], p_value[w, f] = result.statistic, result.pvalue
    return statistic, p_value


def numpy_psi(profile: ReferenceProfile, stream: FloatArray) -> FloatArray:
    """``(n_windows, p)`` PSI: per feature and window, bin with searchsorted, then the formula.

    ``searchsorted(side="left")`` counts the interior edges strictly below a value: the
    profile's binning rule (``np.histogram`` puts a value equal to an edge in the upper bin).
    """
    n_windows, p = stream.shape[0] // WINDOW, stream.shape[1]
    n_bins = profile.bin_fractions.shape[1]
    inner = [np.ascontiguousarray(profile.bin_edges[f, 1:-1]) for f in range(p)]
    expected = [np.maximum(profile.bin_fractions[f], SHARE_FLOOR) for f in range(p)]
    out = np.empty((n_windows, p))
    for w in range(n_windows):
        window = stream[w * WINDOW : (w + 1) * WINDOW]
        for f in range(p):
            column = window[:, f]
            counts = np.bincount(np.searchsorted(inner[f], column), minlength=n_bins)
            actual = np.maximum(counts / column.shape[0], SHARE_FLOOR)
            out[w, f] = np.sum((actual - expected[f]) * np.log(actual / expected[f]))
    return out


def river_run(
    factory: RiverFactory, stream: FloatArray, features: Iterable[int], first_row: int = 0
) -> Flags:
    """One river detector per feature, fed value by value; ``stream`` starts at ``first_row``."""
    flags: Flags = []
    for f in features:
        detector = factory()
        for i, x in enumerate(stream[:, f].tolist(), start=first_row):
            detector.update(x)
            if detector.drift_detected:
                flags.append((i, f))
    return flags


def window_flags(drifted: np.ndarray[Any, np.dtype[np.bool_]]) -> Flags:
    """Flags of an ``(n_windows, p)`` decision array: window ``w`` ends at row (w + 1) W - 1."""
    return [((int(w) + 1) * WINDOW - 1, int(f)) for w, f in zip(*np.nonzero(drifted), strict=True)]


def naive_critical_h(n_ref: int, n_win: int) -> int:
    """Smallest h with exact p(D = h / lcm) < NAIVE_LEVEL: the naive rule is D >= h / lcm."""
    lcm = math.lcm(n_ref, n_win)

    def p_value(h: int) -> float:
        return float(ks_pvalues(np.array([h / lcm]), np.array([n_ref]), np.array([n_win]))[0])

    low, high = 0, lcm  # p(low) >= level > p(high); p falls as h grows
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if p_value(mid) >= NAIVE_LEVEL else (low, mid)
    return high


def numeric_tests(profile: ReferenceProfile, cal: Calibration) -> tuple[KSTest, PSITest]:
    assert cal.ks is not None
    assert cal.psi is not None
    ks = KSTest(profile.sorted_sample, cal.ks)
    return ks, PSITest(profile.bin_edges, profile.bin_fractions, cal.psi)


@dataclass(frozen=True)
class FalseAlarms:
    windows: int
    calibrated: int  # windows in which any KS or PSI test on any feature alarmed
    naive: int  # windows in which any feature had KS p < NAIVE_LEVEL
    naive_flags: int  # (window, feature) pairs with KS p < NAIVE_LEVEL
    per_draw: list[float]  # calibrated alarms / expected, per reference draw
    alpha: float

    @property
    def ratio(self) -> float:
        return self.calibrated / (self.windows * self.alpha)


def stationary_false_alarms(draws: int, windows: int, h_crit: int) -> FalseAlarms:
    """Calibrated KS+PSI vs naive KS on fresh stationary data, pooled over reference draws."""
    plan, budget = WindowPlan(WINDOW, WINDOW), FalseAlarmBudget(FA_BUDGET)
    calibrated = naive = naive_flags = 0
    per_draw, alpha, lcm = [], 0.0, math.lcm(REFERENCE_ROWS, WINDOW)
    for draw in range(draws):
        rng = np.random.default_rng(1000 + draw)
        profile = build_profile("fa", str(draw), NAMES, correlated_rows(rng, REFERENCE_ROWS))
        cal = calibrate(profile, plan, budget, tests=("ks", "psi"), seed=draw)
        alpha = cal.per_evaluation_alpha
        detector = windowed(numeric_tests(profile, cal))
        alarms = 0
        for start in range(0, windows, 100):
            rows = correlated_rows(rng, min(100, windows - start) * WINDOW)
            by_window: dict[int, bool] = {}
            for d in detector.update(rows):
                by_window[d.row] = by_window.get(d.row, False) or d.any_drift
                if d.detector == "ks":
                    assert (d.n_observed == WINDOW).all()
                    hits = int((np.rint(d.statistic * lcm) >= h_crit).sum())
                    naive += hits > 0
                    naive_flags += hits
            alarms += sum(by_window.values())
        per_draw.append(alarms / (windows * alpha))
        calibrated += alarms
    return FalseAlarms(draws * windows, calibrated, naive, naive_flags, per_draw, alpha)


def print_table(rows: list[Row], ceiling: float) -> None:
    print(
        f"\n{'detector':<40}{'values/s':>12}{'of np.sum':>11}{'peak MB':>9}"
        f"{'delay':>8}{'false':>7}  notes"
    )
    for r in rows:
        delay, peak = r.delay(), r.measured.peak_mb
        print(
            f"{r.name:<40}{r.rate / 1e6:10.2f} M{100 * r.rate / ceiling:10.2f}%"
            f"{'-' if peak is None else f'{peak:.1f}':>9}"
            f"{'-' if delay is None else delay:>8}{r.false_alarms():>7}  {r.note}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, reference draws")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    draws, fa_windows = (8, 2000) if args.quick else (16, 4000)
    kswin_half = 5000 if args.quick else 50_000  # KSWIN rows on each side of the shift
    started = time.perf_counter()

    rng = np.random.default_rng(7)
    reference = correlated_rows(rng, REFERENCE_ROWS)
    stream = correlated_rows(rng, STREAM_ROWS)
    stream[SHIFT_ROW:, SHIFTED] += SHIFT_SD
    values = stream.size
    profile = build_profile("bench", "1", NAMES, reference)
    plan = WindowPlan(WINDOW, WINDOW)
    cal = calibrate(profile, plan, FalseAlarmBudget(WORKLOAD_BUDGET), tests=("ks", "psi"))
    ks_test, psi_test = numeric_tests(profile, cal)
    print(
        f"workload: {STREAM_ROWS:,} rows x {N_FEATURES} features (correlation {CORRELATION}, "
        f"features {ROUNDED} rounded), reference {REFERENCE_ROWS:,} rows, +{SHIFT_SD} sd in "
        f"features 0-{SHIFTED[-1]} from row {SHIFT_ROW:,}; tumbling {WINDOW:,}-row windows, "
        f"batches of {BATCH:,} rows"
    )
    print(
        f"monitord thresholds: calibrated KS+PSI, budget {WORKLOAD_BUDGET:,} events "
        f"(per-test level {cal.per_test_alpha:.2e}, {cal.effective_tests:.1f} effective of "
        f"{cal.n_tests} tests)"
    )

    ks_p_test = KSTest(profile.sorted_sample, ks_test.thresholds, p_values=True)
    # Warm-up: numba kernels compile (or load from their cache) on the first call.
    batched_run(windowed([ks_test, psi_test, ks_p_test]), stream[:WINDOW])()
    batched_run(ADWIN(N_FEATURES), stream[:WINDOW])()

    def run_windowed(tests: Sequence[WindowTest], runs: int = repeats) -> Measured[list[Detection]]:
        return measure(batched_run(windowed(tests), stream), runs, memory=runs > 1)

    ceiling = measure(stream.sum, 20, memory=False)
    rows = [Row("np.sum (memory-bandwidth ceiling)", ceiling, [])]
    ks = run_windowed([ks_test])
    rows.append(Row("monitord KSTest", ks, flags_of(ks.result), "calibrated thresholds"))
    scipy = measure(lambda: scipy_ks(reference, stream), 1)
    sp_stat, sp_p = scipy.result
    sp_flags = window_flags(sp_p < NAIVE_LEVEL)
    rows.append(Row("scipy ks_2samp per feature+window", scipy, sp_flags, "'auto', p < 0.05"))
    ks_p = run_windowed([ks_p_test], runs=1)
    rows.append(Row("monitord KSTest p_values=True", ks_p, flags_of(ks_p.result), "1 run"))
    psi = run_windowed([psi_test])
    rows.append(Row("monitord PSITest", psi, flags_of(psi.result), "calibrated thresholds"))
    loop = measure(lambda: numpy_psi(profile, stream), repeats)
    rows.append(Row("numpy per-feature PSI loop", loop, window_flags(loop.result > 0.1), "> 0.1"))
    both = run_windowed([ks_test, psi_test])
    rows.append(Row("monitord KS+PSI, one window", both, flags_of(both.result), "as the daemon"))
    adwin = measure(batched_run(ADWIN(N_FEATURES), stream), repeats)
    rows.append(Row("monitord ADWIN", adwin, flags_of(adwin.result), "defaults"))
    features = range(N_FEATURES)
    river_adwin = measure(lambda: river_run(drift.ADWIN, stream, features), repeats)
    rows.append(Row("river ADWIN per value", river_adwin, river_adwin.result, "defaults"))
    hinkley = measure(lambda: river_run(drift.PageHinkley, stream, features), 1)
    rows.append(Row("river PageHinkley per value", hinkley, hinkley.result, "defaults, 1 run"))
    lo, hi = SHIFT_ROW - kswin_half, SHIFT_ROW + kswin_half
    kswin = measure(
        lambda: river_run(lambda: drift.KSWIN(seed=1), stream[lo:hi], KSWIN_FEATURES, lo), 1
    )
    subset = f"defaults, 1 run; only features {KSWIN_FEATURES}, rows {lo:,}-{hi - 1:,}"
    n_kswin = len(KSWIN_FEATURES) * (hi - lo)
    rows.append(Row("river KSWIN per value", kswin, kswin.result, subset, n_kswin))
    print_table(rows, values / ceiling.seconds)
    print(
        "values/s: best of timed runs over the whole stream (3 runs in --quick, 5 otherwise, "
        "unless noted); peak MB: tracemalloc peak of one more, untimed run (Python and numpy "
        "allocations only: not river's Rust heap nor numba's; the input array is excluded); "
        f"delay: rows from row {SHIFT_ROW:,} to the first flag on a shifted feature; false: "
        "flags (row, feature) on unshifted features or before the shift"
    )

    # Agreement with the baselines.
    ks_identical = np.array_equal(statistics_of(ks.result, "ks"), sp_stat)
    p_identical = np.array_equal(np.array([d.p_value for d in ks_p.result]), sp_p)
    monitord_psi = statistics_of(psi.result, "psi")
    psi_identical = np.array_equal(monitord_psi, loop.result)
    psi_diff = float(np.abs(monitord_psi - loop.result).max())
    mine = {f: [r for r, g in flags_of(adwin.result) if g == f] for f in features}
    theirs = {f: [r for r, g in river_adwin.result if g == f] for f in features}
    adwin_identical = mine == theirs
    h_crit, lcm = naive_critical_h(REFERENCE_ROWS, WINDOW), math.lcm(REFERENCE_ROWS, WINDOW)
    naive_same = np.array_equal(np.rint(sp_stat * lcm) >= h_crit, sp_p < NAIVE_LEVEL)
    print(f"\nKS statistics bit-identical to scipy ks_2samp ({sp_stat.size} tests): {ks_identical}")
    print(f"KS p-values (p_values=True) identical to scipy's: {p_identical}")
    print(f"PSI identical to the numpy loop: {psi_identical} (max |difference| {psi_diff:.3g})")
    print(
        f"ADWIN detection rows identical to river's, feature by feature: {adwin_identical} "
        f"({sum(map(len, mine.values()))} detections, {sum(map(len, theirs.values()))} in river)"
    )
    print(
        f"naive KS rule p < {NAIVE_LEVEL} is D >= {h_crit}/{lcm} for {REFERENCE_ROWS:,} vs "
        f"{WINDOW:,} values; agrees with scipy's p-values on all workload tests: {naive_same}"
    )
    assert ks_identical, "monitord KS statistics differ from scipy's"
    assert psi_diff <= 1e-12, "monitord PSI differs from the numpy loop"
    assert naive_same, "the naive critical value disagrees with scipy's p-values"

    fa = stationary_false_alarms(draws, fa_windows, h_crit)
    events = fa.windows * WINDOW
    per_million = 1e6 / events
    print(
        f"\nfalse alarms on fresh stationary correlated data: {draws} reference draws x "
        f"{fa_windows:,} tumbling windows ({events:,} events), budget {FA_BUDGET:,} events "
        f"between false alarms = alpha {fa.alpha:g} per window"
    )
    print(f"  ratio measured / configured per reference draw: {np.round(fa.per_draw, 2).tolist()}")
    print(
        f"  calibrated KS+PSI: {fa.calibrated} alarming windows, expected {fa.windows * fa.alpha:g}"
        f" -> {fa.calibrated * per_million:.1f} per 1,000,000 events (configured "
        f"{1e6 / FA_BUDGET:g}); pooled ratio {fa.ratio:.2f}"
    )
    print(
        f"  naive per-feature KS p < {NAIVE_LEVEL}: {fa.naive} alarming windows -> "
        f"{fa.naive * per_million:.0f} per 1,000,000 events ({fa.naive / fa.windows:.1%} of "
        f"windows; {fa.naive_flags * per_million:.0f} feature flags per 1,000,000 events)"
    )
    print(f"total time {time.perf_counter() - started:.1f} s")
    print(
        f"RESULT ks_vs_scipy={scipy.seconds / ks.seconds:.1f} "
        f"psi_vs_loop={loop.seconds / psi.seconds:.2f} "
        f"adwin_vs_river={river_adwin.seconds / adwin.seconds:.2f} "
        f"adwin_identical={str(adwin_identical).lower()} "
        f"fa_budget_ratio={fa.ratio:.2f}"
    )


if __name__ == "__main__":
    main()
