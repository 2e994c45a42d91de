"""False alarms against the budget, on stationary streams users really send.

Each *cell* is one kind of stream (`benchmarks.streams`: Gaussian, heavy-tailed,
discrete/tied, categorical, seasonal), a reference size, a window size, a number of
correlated features and an AR(1) dependence. Per cell, several references are drawn (the
budget holds on average over references, so one draw would measure only its own luck);
each reference is profiled as `monitord reference build` does, the daemon's own
`DetectorSuite` is built on it with every default test on and a budget scaled to the cell,
and the stream that follows the reference in time is fed through it. A false alarm is a
window in which any test on any column exceeded its threshold, or a row at which ADWIN cut.

The budget is scaled so that `TARGET_ALARMS` false alarms are expected per cell: a
calibrated cell then counts about Poisson(30) (sd 18 %, more with the spread between
references), so a ratio of 3 is many standard deviations away and cannot be noise, while a
cell with ratio near 0 shows a test that is too quiet. Per-test levels are then about 1e-3:
deep enough that the tail laws, not the body, decide.

    python benchmarks/calibration.py [--quick] [--baseline REV] [--only KIND]

``--baseline REV`` runs the same cells on the code of commit REV (a temporary git worktree,
in a subprocess), so each line shows the old and the new ratio.

Then the *default path*: stationary streams of 200,000 events of 20 correlated features
(AR(1) 0) through the daemon with its default configuration and no profile (the warm-up
capture), at the default budget; the firing alerts a user would see, against the budget's
expected count. The last line is ``RESULT worst_fa_ratio=<x> median_fa_ratio=<x>
cells=<n>`` over the grid.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

# `python benchmarks/calibration.py` puts benchmarks/ first on sys.path, where
# benchmarks/detectors.py would shadow the `detectors` package: the packages come from the
# tree under test (PYTHONPATH, then the venv) and `streams` from this folder by path.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _sibling(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", HERE / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


streams, worktree = _sibling("streams"), _sibling("worktree")

from detectors.profile import build_profile  # noqa: E402
from monitord.suite import DetectorSuite  # noqa: E402

try:  # `--baseline` runs this script on older trees, where the settings had another name
    from monitord.config import DetectionSettings
except ImportError:
    from monitord.config import Detection as DetectionSettings  # type: ignore[attr-defined,no-redef]

KINDS, latent, make_stream = streams.KINDS, streams.latent, streams.make_stream

REFERENCES = (50, 300, 2000)
WINDOWS = (25, 50, 100, 1000)
FEATURES = (1, 8, 20)
PHIS = (0.0, 0.5, 0.9)
TARGET_ALARMS = 30.0
BATCH = 4096


@dataclass(frozen=True)
class Cell:
    kind: str
    reference: int
    window: int
    features: int
    phi: float

    @property
    def label(self) -> str:
        return (
            f"{self.kind:<11} ref {self.reference:>4} win {self.window:>4} "
            f"feat {self.features:>2} phi {self.phi:.1f}"
        )


@dataclass(frozen=True)
class Outcome:
    alarms: int
    expected: float
    evaluations: int
    adwin_rows: int
    seconds: float
    by_test: dict[str, int]  # alarming windows in which each test flagged a column

    @property
    def ratio(self) -> float:
        return self.alarms / self.expected


def grid(quick: bool) -> list[Cell]:
    """The core grid (Gaussian) and every other kind on a smaller one."""
    cells = [
        Cell("gaussian", r, w, f, phi)
        for r in REFERENCES
        for w in WINDOWS
        for f in FEATURES
        for phi in PHIS
    ]
    for kind in KINDS[1:]:
        cells += [
            Cell(kind, r, w, 8, phi)
            for r in REFERENCES
            for w in (25, 100, 1000)
            for phi in ((0.5,) if quick else (0.0, 0.5, 0.9))
        ]
    return cells


def plan_for(cell: Cell, quick: bool) -> tuple[int, int]:
    """(references, windows per reference) of a cell.

    While the window is small next to the reference, a reference's windows alarm nearly
    independently: a few references with many windows each measure the rate. Once the
    window reaches half the reference, the reference's own error dominates the statistic,
    so a reference's windows alarm nearly all or none: the average over references needs
    many references, with a few windows each.
    """
    scale = 1 if quick else 3
    if 2 * cell.window >= cell.reference:
        return (32 if cell.reference <= 300 else 16) * scale, 4
    draws = {50: 16, 300: 8, 2000: 4}[cell.reference] * scale
    return draws, math.ceil(800 * scale / draws)


def run_cell(cell: Cell, index: int, quick: bool) -> Outcome:
    draws, per_draw = plan_for(cell, quick)
    alpha = TARGET_ALARMS / (draws * per_draw)
    budget = cell.window / alpha
    settings = DetectionSettings(window_size=cell.window, false_alarm_budget_events=budget)
    alarms = evaluations = adwin_rows = 0
    by_test: dict[str, int] = {}
    start = time.perf_counter()
    for draw in range(draws):
        rng = np.random.default_rng([index, draw, int(cell.phi * 10), cell.reference])
        rows = cell.reference + per_draw * cell.window
        stream = make_stream(cell.kind, latent(rng, rows, cell.features, cell.phi), rng)
        reference = stream.rows(0, cell.reference)
        profile = build_profile(
            "model",
            "1",
            reference.numeric_names,
            reference.numeric,
            reference.categorical_names,
            reference.categorical,
            n_bins=settings.psi_bins,
        )
        suite = DetectorSuite(profile, settings)
        window_alarms: dict[int, bool] = {}
        cuts: set[int] = set()
        for lo in range(cell.reference, rows, BATCH):
            hi = min(lo + BATCH, rows)
            times = np.arange(lo, hi, dtype=np.float64)
            batch = stream.rows(lo, hi)
            for _, result in suite.update(batch.numeric, batch.categorical, times):
                if result.detector == "adwin":
                    if result.any_drift:
                        cuts.add(result.row)
                else:
                    window_alarms[result.row] = (
                        window_alarms.get(result.row, False) or result.any_drift
                    )
                    if result.any_drift:
                        by_test[result.detector] = by_test.get(result.detector, 0) + 1
        alarms += sum(window_alarms.values()) + len(cuts)
        evaluations += len(window_alarms)
        adwin_rows += len(cuts)
    return Outcome(
        alarms=alarms,
        expected=evaluations * alpha,
        evaluations=evaluations,
        adwin_rows=adwin_rows,
        seconds=time.perf_counter() - start,
        by_test=by_test,
    )


def default_path(streams_count: int) -> tuple[int, float]:
    """(rows at which alerts fired, expected false alarms) over ``streams_count`` streams."""
    import orjson  # noqa: PLC0415

    from connectors.memory import MemorySink, MemorySource  # noqa: PLC0415
    from connectors.stream import Record  # noqa: PLC0415
    from monitord.config import parse_config  # noqa: PLC0415
    from monitord.daemon import Daemon  # noqa: PLC0415
    from monitord.outputs import JsonLinesPublisher  # noqa: PLC0415

    config = parse_config({})
    events = 200_000
    fired = 0
    for seed in range(streams_count):
        rng = np.random.default_rng([seed, 200_000])
        rows = latent(rng, events, 20, 0.0)
        records = [
            Record(
                "t",
                0,
                i,
                b"m",
                orjson.dumps(
                    {
                        "model": "m",
                        "timestamp": 1_767_225_600 + i,
                        "features": {f"x{j}": v for j, v in enumerate(row)},
                    }
                ),
                0,
            )
            for i, row in enumerate(rows.tolist())
        ]
        out = io.BytesIO()
        publisher = JsonLinesPublisher(out, owned=False)
        Daemon(config, MemorySource(records), MemorySink(), [publisher], lambda m, v: None).drain()
        outputs = [json.loads(line) for line in out.getvalue().splitlines()]
        # One false alarm is one alarming evaluation, whatever it fires: distinct rows.
        fired += len({o["row"] for o in outputs if o.get("status") == "firing"})
    monitored = streams_count * (events - config.detection.warmup_events)
    return fired, monitored / config.detection.false_alarm_budget_events


def run_grid(quick: bool, only: str | None) -> Iterator[tuple[Cell, Outcome]]:
    """Every selected cell's outcome, in grid order; cells run on every CPU."""
    jobs = [
        (cell, index, quick)
        for index, cell in enumerate(grid(quick))
        if not only or cell.kind == only
    ]
    with multiprocessing.get_context("spawn").Pool(os.cpu_count() or 1) as pool:
        yield from zip((job[0] for job in jobs), pool.imap(_run_job, jobs), strict=True)


def _run_job(job: tuple[Cell, int, bool]) -> Outcome:
    return run_cell(*job)


def baseline(rev: str, quick: bool, only: str | None) -> dict[str, Outcome]:
    """The same grid on the code of ``rev`` (`benchmarks/worktree.py`)."""
    arguments = ["--json", *(["--quick"] if quick else []), *(["--only", only] if only else [])]
    out = worktree.run_at(rev, Path(__file__).resolve(), arguments)
    return {label: Outcome(**fields) for label, fields in json.loads(out).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer references and windows")
    parser.add_argument("--baseline", metavar="REV", help="also run the code of commit REV")
    parser.add_argument("--only", choices=KINDS, help="only the cells of one kind of stream")
    parser.add_argument("--json", action="store_true", help="print outcomes as JSON only")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.json:
        outcomes = {cell.label: asdict(o) for cell, o in run_grid(args.quick, args.only)}
        print(json.dumps(outcomes))
        return
    old = baseline(args.baseline, args.quick, args.only) if args.baseline else {}
    results = {}
    print(f"{'cell':<48} {'alarms':>6} {'expected':>8} {'ratio':>6} {'old':>6}  by test")
    for cell, outcome in run_grid(args.quick, args.only):
        results[cell.label] = outcome
        before = old.get(cell.label)
        was = f"{before.ratio:6.2f}" if before else "     -"
        tests = " ".join(f"{name}:{n}" for name, n in sorted(outcome.by_test.items()))
        adwin = f" adwin:{outcome.adwin_rows}" if outcome.adwin_rows else ""
        print(
            f"{cell.label:<48} {outcome.alarms:>6} {outcome.expected:>8.1f} "
            f"{outcome.ratio:>6.2f} {was}  {tests}{adwin}",
            flush=True,
        )
    ratios = np.array([o.ratio for o in results.values()])
    if old:
        old_ratios = np.array([o.ratio for o in old.values()])
        print(
            f"baseline {args.baseline}: worst {old_ratios.max():.2f}, "
            f"median {np.median(old_ratios):.2f}"
        )
    if not args.only:
        fired, expected = default_path(5 if args.quick else 20)
        print(
            f"default path (no profile, default configuration, stationary 20 correlated "
            f"features): alerts fired at {fired} rows, {expected:.2f} false alarms budgeted"
        )
    print(f"{len(ratios)} cells in {time.perf_counter() - started:.0f} s")
    print(
        f"RESULT worst_fa_ratio={ratios.max():.2f} median_fa_ratio={np.median(ratios):.2f} "
        f"cells={len(ratios)}"
    )


if __name__ == "__main__":
    main()
