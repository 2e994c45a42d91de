"""Detection power at the default budget: what a user sees, next to river's detectors.

Each scenario is a stream of 8 correlated features plus the prediction
(`benchmarks.streams`), AR(1) dependence ``phi`` 0 or 0.9, that runs through the daemon
exactly as `monitord replay` does, with the default configuration (no profile: the first
``warmup_events`` rows are captured as the reference). After ``STATIONARY`` more rows one
change hits features 0-2 (and so the prediction):

- ``mean 0.5`` / ``mean 1``: an abrupt shift of 0.5 or 1 standard deviation;
- ``gradual 0.5`` / ``gradual 1``: the same shift reached linearly over 1,000 rows;
- ``variance x2``: their variance doubles;
- ``categories``: half the features are categorical and their mix moves (the latent value
  behind the categories shifts by 0.7 sd).

A change is *detected* when the first firing alert (feature, model-level or change) after
it comes within ``HORIZON`` rows, and nothing alarmed in the stationary stretch before it:
a detector that alarms all the time has told nobody about this change (the classical
reading, where a run that alarms before the change is a false-alarm run). Its delay is
counted in windows (monitord) or rows from the change to that alert. Alarms before the
change are false alarms, reported per 100,000 stationary rows. ``successive`` is one stream
of five changes 2,000 rows apart (features 0-2 step to 1, -0.2, 1.2, 0 and 1.5 sd): recall
is the share of its changes followed by a firing alert before the next one.

river's ADWIN and PageHinkley (defaults) run on every numeric column z-scored with the
reference rows' mean and standard deviation (categorical columns: the reference
frequency rank of the category), one detector per column; any column's detection counts.

    python benchmarks/power.py [--quick] [--baseline REV]

``--baseline REV`` also runs monitord at commit REV (a temporary worktree, in a
subprocess) on the same streams. The last line is ``RESULT detected_iid=<share>
detected_ar=<share> median_delay_windows=<x> successive_recall=<share>``.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson

# `python benchmarks/power.py` puts benchmarks/ first on sys.path, where
# benchmarks/detectors.py would shadow the `detectors` package (see calibration.py).
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

from connectors.memory import MemorySink, MemorySource  # noqa: E402
from connectors.stream import Record  # noqa: E402
from monitord.config import Config, parse_config  # noqa: E402
from monitord.daemon import Daemon  # noqa: E402
from monitord.outputs import JsonLinesPublisher  # noqa: E402

FEATURES = 8
CHANGED = slice(0, 3)
STATIONARY = 6000
HORIZON = 3000
RAMP = 1000
SUCCESSIVE_LEVELS = (1.0, -0.2, 1.2, 0.0, 1.5)
SUCCESSIVE_GAP = 2000
SCENARIOS = ("mean 0.5", "mean 1", "gradual 0.5", "gradual 1", "variance x2", "categories")
PHIS = (0.0, 0.9)


@dataclass
class Run:
    """Alarm rows of one detector on one stream, and where its changes are."""

    changes: list[int]
    alarms: list[int]
    window: int = 1

    def detected(self, change: int, until: int, quiet_since: int | None = None) -> int | None:
        """Rows from ``change`` to the first alarm in ``[change, until)``, or None; also None
        when something alarmed in ``[quiet_since, change)``."""
        if quiet_since is not None and any(quiet_since <= row < change for row in self.alarms):
            return None
        hits = [row - change for row in self.alarms if change <= row < until]
        return min(hits) if hits else None

    @property
    def false_alarms(self) -> int:
        return sum(row < self.changes[0] for row in self.alarms)


@dataclass
class Tally:
    streams: int = 0
    detected: int = 0
    false_alarms: int = 0
    stationary_rows: int = 0
    delays: list[float] = field(default_factory=list)

    def add(self, run: Run, until: int, stationary: int) -> None:
        self.streams += 1
        delay = run.detected(run.changes[0], until, quiet_since=run.changes[0] - stationary)
        if delay is not None:
            self.detected += 1
            self.delays.append(delay / run.window)
        self.false_alarms += run.false_alarms
        self.stationary_rows += stationary

    @property
    def share(self) -> float:
        return self.detected / max(self.streams, 1)

    @property
    def false_per_100k(self) -> float:
        return 1e5 * self.false_alarms / max(self.stationary_rows, 1)


def make(scenario: str, phi: float, seed: int, warmup: int) -> tuple[Any, list[int]]:
    """A stream with its change rows (the successive stream has five)."""
    index = SCENARIOS.index(scenario) if scenario in SCENARIOS else len(SCENARIOS)
    rng = np.random.default_rng([seed, int(phi * 10), index])
    start = warmup + STATIONARY
    if scenario == "successive":
        rows = start + SUCCESSIVE_GAP * len(SUCCESSIVE_LEVELS)
        x = streams.latent(rng, rows, FEATURES, phi)
        changes = [start + SUCCESSIVE_GAP * i for i in range(len(SUCCESSIVE_LEVELS))]
        ends = [*changes[1:], rows]
        for change, end, level in zip(changes, ends, SUCCESSIVE_LEVELS, strict=True):
            x[change:end, CHANGED] += level
        return streams.make_stream("gaussian", x, rng), changes
    rows = start + HORIZON
    x = streams.latent(rng, rows, FEATURES, phi)
    kind = "categorical" if scenario == "categories" else "gaussian"
    target = slice(FEATURES // 2, FEATURES // 2 + 3) if kind == "categorical" else CHANGED
    if scenario.startswith("mean") or scenario == "categories":
        size = 0.7 if scenario == "categories" else float(scenario.split()[1])
        x[start:, target] += size
    elif scenario.startswith("gradual"):
        size = float(scenario.split()[1])
        ramp = np.minimum(np.arange(rows - start) / RAMP, 1.0)[:, None]
        x[start:, target] += size * ramp
    elif scenario == "variance x2":
        x[start:, target] *= math.sqrt(2.0)
    return streams.make_stream(kind, x, rng), [start]


def events(stream: Any) -> list[bytes]:
    """The inference events a producer would send: one per second from 2026-01-01."""
    out = []
    n_numeric = len(stream.numeric_names) - 1  # the prediction is last
    for i in range(stream.n_rows):
        features: dict[str, Any] = {}
        for j in range(n_numeric):
            value = stream.numeric[i, j]
            features[stream.numeric_names[j]] = None if np.isnan(value) else float(value)
        for j, name in enumerate(stream.categorical_names):
            features[name] = stream.categorical[i, j]
        out.append(
            orjson.dumps(
                {
                    "model": "m",
                    "model_version": "1",
                    "timestamp": 1_767_225_600 + i,
                    "features": features,
                    "prediction": float(stream.numeric[i, -1]),
                }
            )
        )
    return out


def monitord_run(config: Config, stream: Any, changes: list[int]) -> Run:
    """The daemon over the stream (as `monitord replay` runs it); firing alert rows."""
    records = [Record("t", 0, i, b"m", v, 0) for i, v in enumerate(events(stream))]
    out = io.BytesIO()
    daemon = Daemon(
        config,
        MemorySource(records),
        MemorySink(),
        [JsonLinesPublisher(out, owned=False)],
        lambda model, version: None,
    )
    daemon.drain()
    alarms = sorted(
        int(o["row"])
        for o in map(json.loads, out.getvalue().splitlines())
        if o.get("kind") == "alert" and o.get("status") == "firing"
    )
    return Run(changes, alarms, config.detection.window_size)


def river_runs(stream: Any, changes: list[int], warmup: int) -> dict[str, Run]:
    from river import drift  # noqa: PLC0415 (only the in-process run needs river)

    columns = [stream.numeric[:, j] for j in range(stream.numeric.shape[1])]
    for j in range(stream.categorical.shape[1]):
        values = stream.categorical[:, j].astype(str)
        names, counts = np.unique(values[:warmup], return_counts=True)
        rank = {name: r for r, name in enumerate(names[np.argsort(-counts)])}
        columns.append(np.array([rank.get(v, len(rank)) for v in values], dtype=np.float64))
    runs = {}
    for name, factory in (
        ("river ADWIN[z]", drift.ADWIN),
        ("river PageHinkley[z]", drift.PageHinkley),
    ):
        alarms: set[int] = set()
        for column in columns:
            reference = column[:warmup][np.isfinite(column[:warmup])]
            scale = reference.std() or 1.0
            z = (column - reference.mean()) / scale
            detector: Any = factory()
            for i, value in enumerate(z.tolist()):
                if math.isfinite(value):
                    detector.update(value)
                    if detector.drift_detected and i >= warmup:
                        alarms.add(i)
        runs[name] = Run(changes, sorted(alarms))
    return runs


def run_all(quick: bool, with_river: bool, settings: dict[str, Any]) -> dict[str, Any]:
    """Every scenario's tallies (per detector) and the successive stream's recall."""
    config = parse_config(settings)
    warmup = config.detection.warmup_events
    seeds = range(6 if quick else 20)
    tallies: dict[str, dict[str, Tally]] = {}
    for scenario in SCENARIOS:
        for phi in PHIS:
            key = f"{scenario} phi {phi}"
            for seed in seeds:
                stream, changes = make(scenario, phi, seed, warmup)
                runs = {"monitord": monitord_run(config, stream, changes)}
                if with_river:
                    runs.update(river_runs(stream, changes, warmup))
                for name, run in runs.items():
                    tally = tallies.setdefault(key, {}).setdefault(name, Tally())
                    tally.add(run, changes[0] + HORIZON, changes[0] - warmup)
    recalls: dict[str, list[float]] = {}
    for phi in PHIS:
        for seed in seeds:
            stream, changes = make("successive", phi, seed, warmup)
            runs = {"monitord": monitord_run(config, stream, changes)}
            if with_river:
                runs.update(river_runs(stream, changes, warmup))
            for name, run in runs.items():
                found = [
                    run.detected(change, until) is not None
                    for change, until in zip(changes, [*changes[1:], 10**12], strict=True)
                ]
                recalls.setdefault(f"{name} phi {phi}", []).append(float(np.mean(found)))
    return {
        "tallies": {k: {n: asdict(t) for n, t in v.items()} for k, v in tallies.items()},
        "recalls": recalls,
    }


def baseline(rev: str, quick: bool, sets: list[str]) -> dict[str, Any]:
    """monitord at commit ``rev`` on the same streams (`benchmarks/worktree.py`)."""
    arguments = ["--json", *(["--quick"] if quick else []), *(f"--set={s}" for s in sets)]
    result: dict[str, Any] = json.loads(worktree.run_at(rev, Path(__file__).resolve(), arguments))
    return result


def _tally(fields: dict[str, Any]) -> Tally:
    return Tally(**fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 streams per scenario, not 20")
    parser.add_argument("--baseline", metavar="REV", help="also run monitord at commit REV")
    parser.add_argument("--json", action="store_true", help="monitord only, as JSON")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=JSON",
        help="a config value other than the default, e.g. detection.window_size=500",
    )
    args = parser.parse_args()
    settings: dict[str, Any] = {}
    for item in args.set:
        path, _, value = item.partition("=")
        section, key = path.split(".", 1)
        settings.setdefault(section, {})[key] = json.loads(value)
    started = time.perf_counter()
    if args.json:
        print(json.dumps(run_all(args.quick, with_river=False, settings=settings)))
        return
    old = baseline(args.baseline, args.quick, args.set) if args.baseline else None
    new = run_all(args.quick, with_river=True, settings=settings)
    detectors = ["monitord", "river ADWIN[z]", "river PageHinkley[z]"]
    names = [*detectors, *(["monitord before"] if old is not None else [])]
    print(f"{'scenario':<22}" + "".join(f"{d:>30}" for d in names))
    print(f"{'':<22}" + "   detected  delay  false/100k" * len(names))
    shares: dict[float, list[float]] = {0.0: [], 0.9: []}
    delays: list[float] = []
    for key, by_detector in new["tallies"].items():
        cells = []
        for name in detectors:
            tally = _tally(by_detector[name])
            delay = float(np.median(tally.delays)) if tally.delays else math.nan
            cells.append(f"{tally.share:>11.2f} {delay:>6.1f} {tally.false_per_100k:>11.1f}")
            if name == "monitord":
                shares[0.9 if key.endswith("0.9") else 0.0].append(tally.share)
                delays += tally.delays
        if old is not None:
            tally = _tally(old["tallies"][key]["monitord"])
            delay = float(np.median(tally.delays)) if tally.delays else math.nan
            cells.append(f"{tally.share:>11.2f} {delay:>6.1f} {tally.false_per_100k:>11.1f}")
        print(f"{key:<22}" + "".join(f"{c:>30}" for c in cells))
    for key, values in new["recalls"].items():
        before = ""
        if old is not None and key in old["recalls"]:
            before = f" (before: {np.mean(old['recalls'][key]):.2f})"
        print(f"successive recall, {key}: {np.mean(values):.2f}{before}")
    recall = float(np.mean(new["recalls"]["monitord phi 0.0"]))
    print(f"{time.perf_counter() - started:.0f} s")
    print(
        f"RESULT detected_iid={np.mean(shares[0.0]):.2f} detected_ar={np.mean(shares[0.9]):.2f} "
        f"median_delay_windows={np.median(delays) if delays else math.nan:.1f} "
        f"successive_recall={recall:.2f}"
    )


if __name__ == "__main__":
    main()
