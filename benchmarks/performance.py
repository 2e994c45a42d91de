"""Model performance monitoring: concept changes seen from delayed labels, next to river.

Every stream runs through the daemon as it runs in production: inference events on one
topic of a `MemorySource`, label records on another (``labels.topics``), default
configuration otherwise. Events come one per second; each label record is sent ``d``
seconds after its prediction (plus half a second), ``d`` uniform in ``0..max_delay``
events, and label records are in time order, so labels reach the daemon shuffled against
their predictions; 2 % of predictions never get a label and 1 % get a second record (the
same label, its own delay). Features are stationary; only the concept (what the label is
given the features) changes, at known rows:

- ``sea``: river's SEA generator, noise 0.1, variants 0 -> 3 -> 0 -> 2 (thresholds 8, 9.5,
  8, 7); the model is variant 0's rule ``x0 + x1 > 8``: error 0.10, 0.21, 0.10, 0.16;
- ``agrawal``: river's Agrawal generator (perturbation 0.05), classification functions
  7 -> 4 -> 7 -> 0; the model a river Hoeffding tree trained on 20,000 rows of function 7,
  then frozen: error about 0.01, 0.21, 0.01, 0.67;
- ``regression``: five standard normal features, ``y = x . beta + N(0, 1)`` with beta
  changing by 1.0, back, then by 0.7 (Euclidean); the model is the first beta: share of
  errors above the reference's 90th percentile 0.10, 0.25, 0.10, 0.18.

A concept switch that leaves the model's error rate where it was is invisible to any
detector of the error stream; the schedules above avoid it. Label delays up to ``max_delay``
rows smear every change over that many labelled rows (labels of earlier predictions keep
coming), so a change counts as *detected* when a firing ``MonitordPerformanceDegraded`` or
``MonitordErrorRateChange`` has its row (`Alert.row`, a row of the performance stream) in
``[start, start + max_delay + 5,000)``, ``start`` the first labelled row of a post-change
prediction, and before the next change's start; its delay is counted in labelled rows from
``start``. As in ``benchmarks/power.py``, the first change of a stream that alarmed in the
stationary stretch before it is not detected (an alarm that came anyway says nothing of
this change), and alarms there are false alarms. river's ADWIN (delta 0.002, as monitord's
``detection.adwin_delta``) runs in the same process over the same error stream: each
labelled row's miss (a class not the label; a regression error above the 90th percentile
of the first ``performance.warmup_labels`` rows' errors) in the order the daemon joined
labels (label record order, first record per event; checked against the daemon's counts).

False alarms are counted on the stationary stretches: the stretch before each change
stream's first change and stationary streams of five kinds, several seeds each:

- ``sea``, ``agrawal``: as above with one concept, labels delayed up to 10,000 events;
- ``sea-ar``: SEA's rule on features that are an AR(1) at 0.98 (uniform marginals), label
  noise near the boundary (``x0 + x1 + N(0, 1) > 8``): misses come in runs; labels delayed
  up to 10 events, so the runs survive into the join order (a long delay shuffles them away);
- ``regression-t2``: independent features, Student-t noise with 2 degrees of freedom;
- ``regression-ar``: AR(1) features at 0.9, AR(1) noise at 0.9 with t(3) innovations;
  labels delayed up to 10 events.

At the default budget (1 false alarm per 1,000,000 labelled rows) a run this short expects
less than one false alarm of the window test, so counting them says little. Each
stationary stream is therefore run a second time with ``performance.false_alarm_budget_labels``
scaled so that ``TARGET_ALARMS`` firing ``MonitordPerformanceDegraded`` are expected over all
of them (about Poisson(30): a ratio of 2 is well outside its noise), and the table shows
observed / expected. ``MonitordErrorRateChange`` (an ADWIN over the error stream, at a fixed
delta) does not follow the budget: its alarms are counted at the defaults, per million
labelled rows, beside river's on the same stretches. ``false_alarms_per_M`` in the RESULT is
every firing performance alert of the default run on the stationary stretches per million
of their labelled rows. ``join_events_per_s`` is inference events plus label records over
the wall clock of `Daemon.drain` (summed over streams; a worker's first drain is preceded
by an untimed one so no compilation is counted).

    python benchmarks/performance.py [--quick | --smoke]

The default runs 10 seeds per change stream and 10 stationary streams of 100,000 events per
kind; ``--quick`` 5 seeds and 6 of 40,000 (under 2 minutes on 2 cores); ``--smoke`` one of
each, shorter, with labels delayed up to 2,000 events (for the test suite). The last line
is ``RESULT detected=<share> median_delay_rows=<x> river_adwin_delay_rows=<x>
false_alarms_per_M=<x> join_events_per_s=<x>``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from scipy import special
from scipy.signal import lfilter

# `python benchmarks/performance.py` puts benchmarks/ first on sys.path, where
# benchmarks/detectors.py would shadow the `detectors` package (see calibration.py).
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from connectors.memory import MemorySink, MemorySource  # noqa: E402
from connectors.stream import Record  # noqa: E402
from monitord.alerts import ERROR_CHANGE_DETECTOR, PERFORMANCE_DETECTOR, Alert  # noqa: E402
from monitord.config import parse_config  # noqa: E402
from monitord.daemon import Daemon, limit_blas_threads  # noqa: E402
from monitord.outputs import KafkaPublisher  # noqa: E402

Array = npt.NDArray[np.float64]

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z; event i is at T0 + i seconds
INFERENCE, LABELS, MODEL = "inference", "labels", "m"
MISSING, DUPLICATED = 0.02, 0.01
AFTER_RAMP = 5_000  # labelled rows a detector gets once every new label is post-change
TARGET_ALARMS = 30.0
SEA_NOISE = 0.1
SEA_THRESHOLDS = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}  # river's SEA variants
AGRAWAL_PERTURBATION = 0.05
TRAIN_ROWS = 20_000
BETAS = np.array(
    [
        [1.0, -0.5, 0.8, 0.0, 0.3],
        [1.8, 0.1, 0.8, 0.0, 0.3],  # |change| 1.0
        [1.0, -0.5, 0.3, 0.5, 0.3],  # |change| 0.71
    ]
)
SCHEDULES = {"sea": (0, 3, 0, 2), "agrawal": (7, 4, 7, 0), "regression": (0, 1, 0, 2)}
STATIONARY = {  # kind -> its delay (events) of labels
    "sea": 10_000,
    "agrawal": 10_000,
    "sea-ar": 10,
    "regression-t2": 10_000,
    "regression-ar": 10,
}
DETECTORS = {PERFORMANCE_DETECTOR: "degraded", ERROR_CHANGE_DETECTOR: "error change"}


@dataclass(frozen=True)
class Mode:
    seeds: int  # per change stream
    segment: int  # events per concept
    max_delay: int  # of the change streams' labels
    stationary_seeds: int
    stationary_events: int


MODES = {
    "smoke": Mode(1, 8_000, 2_000, 1, 10_000),
    "quick": Mode(5, 20_000, 10_000, 6, 40_000),
    "full": Mode(10, 20_000, 10_000, 10, 100_000),
}


@dataclass(frozen=True)
class Task:
    kind: str
    seed: int
    schedule: tuple[int, ...]  # concepts, one per segment
    segment: int
    max_delay: int
    scaled_budget: float | None = None  # also run with this budget (stationary streams)

    @property
    def stationary(self) -> bool:
        return len(self.schedule) == 1


@dataclass(frozen=True)
class Generated:
    """A stream's events: features, the fixed model's prediction, the true label."""

    features: list[dict[str, float]]
    predictions: list[Any]
    labels: list[Any]
    changes: list[int]  # event rows where a new concept starts


@dataclass
class Outcome:
    task: Task
    rows: int  # labelled rows: the error stream
    starts: list[int]  # per change, the error-stream row of its first post-change label
    monitord: list[tuple[int, str]]  # firing performance alerts: (row, detector)
    river: list[int]  # river ADWIN's detection rows
    scaled: list[tuple[int, str]]  # with the scaled budget (stationary streams)
    block: int  # rows per block mean of monitord's error-stream ADWIN
    miss_rate: float  # of the reference rows
    records: int
    drain_s: float


# -- streams ------------------------------------------------------------------------------


def _ar1(rng: np.random.Generator, n: int, columns: int, phi: float) -> Array:
    """``(n, columns)`` stationary AR(1) series with unit variance (burnt in)."""
    burn = 2_000 if phi > 0 else 0
    white = rng.standard_normal((n + burn, columns))
    series: Array = lfilter([math.sqrt(1.0 - phi * phi)], [1.0, -phi], white, axis=0)
    return series[burn:]


def _river_segments(
    factory: Any, schedule: tuple[int, ...], segment: int
) -> tuple[list[dict[str, float]], list[int], list[int]]:
    features: list[dict[str, float]] = []
    labels: list[int] = []
    changes: list[int] = []
    for k, concept in enumerate(schedule):
        if k:
            changes.append(len(labels))
        for x, y in itertools.islice(factory(concept, k), segment):
            features.append({str(name): float(value) for name, value in x.items()})
            labels.append(int(y))
    return features, labels, changes


def sea(seed: int, schedule: tuple[int, ...], segment: int) -> Generated:
    from river.datasets import synth  # noqa: PLC0415

    features, labels, changes = _river_segments(
        lambda variant, k: synth.SEA(variant=variant, noise=SEA_NOISE, seed=1000 * seed + k),
        schedule,
        segment,
    )
    threshold = SEA_THRESHOLDS[schedule[0]]
    predictions = [int(x["0"] + x["1"] > threshold) for x in features]
    return Generated(features, predictions, labels, changes)


def agrawal(seed: int, schedule: tuple[int, ...], segment: int) -> Generated:
    from river import tree  # noqa: PLC0415
    from river.datasets import synth  # noqa: PLC0415

    def data(function: int, k: int) -> Any:
        return synth.Agrawal(
            classification_function=function,
            seed=1000 * seed + k,
            perturbation=AGRAWAL_PERTURBATION,
        )

    model: Any = tree.HoeffdingTreeClassifier()
    for x, y in itertools.islice(data(schedule[0], 999), TRAIN_ROWS):
        model.learn_one(x, y)
    features, labels, changes = _river_segments(data, schedule, segment)
    predictions = [int(model.predict_one(x)) for x in features]
    return Generated(features, predictions, labels, changes)


def regression(
    seed: int, schedule: tuple[int, ...], segment: int, noise: str = "normal"
) -> Generated:
    rng = np.random.default_rng([seed, len(noise)])
    n = segment * len(schedule)
    phi = 0.9 if noise == "ar" else 0.0
    x = _ar1(rng, n, BETAS.shape[1], phi)
    if noise == "t2":
        eps = rng.standard_t(2, n)
    elif noise == "ar":
        innovations = rng.standard_t(3, n + 2_000) / math.sqrt(3.0)
        eps = lfilter([math.sqrt(1.0 - phi * phi)], [1.0, -phi], innovations)[2_000:]
    else:
        eps = rng.standard_normal(n)
    beta = BETAS[np.repeat(np.array(schedule), segment)]
    y = np.einsum("ij,ij->i", x, beta) + eps
    predictions = x @ BETAS[schedule[0]]
    features = [{f"x{j}": float(v) for j, v in enumerate(row)} for row in x.tolist()]
    changes = [segment * k for k in range(1, len(schedule))]
    return Generated(features, predictions.tolist(), y.tolist(), changes)


def sea_ar(seed: int, n: int, phi: float = 0.98) -> Generated:
    """SEA's rule on AR(1) features with uniform [0, 10] marginals, noisy near the boundary."""
    rng = np.random.default_rng([seed, 17])
    u = 10.0 * special.ndtr(_ar1(rng, n, 3, phi))
    total = u[:, 0] + u[:, 1]
    labels = (total + rng.standard_normal(n) > SEA_THRESHOLDS[0]).astype(int)
    predictions = (total > SEA_THRESHOLDS[0]).astype(int)
    features = [{f"x{j}": float(v) for j, v in enumerate(row)} for row in u.tolist()]
    return Generated(features, predictions.tolist(), labels.tolist(), [])


def generate(task: Task) -> Generated:
    kind, seed, schedule, segment = task.kind, task.seed, task.schedule, task.segment
    if kind == "sea":
        return sea(seed, schedule, segment)
    if kind == "agrawal":
        return agrawal(seed, schedule, segment)
    if kind == "sea-ar":
        return sea_ar(seed, segment)
    noise = kind.partition("-")[2] or "normal"
    return regression(seed, schedule, segment, noise)


# -- records, the error stream ------------------------------------------------------------


def records(
    stream: Generated, max_delay: int, rng: np.random.Generator
) -> tuple[list[Record], list[Record], npt.NDArray[np.int64], int]:
    """Inference records, label records (time order), the events in the order the daemon
    joins their labels, and how many label records are duplicates."""
    n = len(stream.labels)
    inference = [
        Record(
            INFERENCE,
            0,
            i,
            MODEL.encode(),
            orjson.dumps(
                {
                    "model": MODEL,
                    "event_id": f"e{i}",
                    "timestamp": T0 + i,
                    "features": features,
                    "prediction": prediction,
                }
            ),
            (T0 + i) * 1000,
        )
        for i, (features, prediction) in enumerate(
            zip(stream.features, stream.predictions, strict=True)
        )
    ]
    labelled = np.flatnonzero(rng.random(n) >= MISSING)
    again = labelled[rng.random(labelled.size) < DUPLICATED]
    events = np.concatenate([labelled, again])
    times = events + rng.integers(0, max_delay + 1, events.size) + 0.5  # seconds after T0
    order = np.lexsort((events, times))
    events, times = events[order], times[order]
    labels = [
        Record(
            LABELS,
            0,
            k,
            MODEL.encode(),
            orjson.dumps(
                {
                    "model": MODEL,
                    "event_id": f"e{i}",
                    "label": stream.labels[i],
                    "timestamp": T0 + t,
                }
            ),
            round((T0 + t) * 1000),
        )
        for k, (i, t) in enumerate(zip(events.tolist(), times.tolist(), strict=True))
    ]
    _, first = np.unique(events, return_index=True)
    return inference, labels, events[np.sort(first)], int(again.size)


def misses(stream: Generated, joined: npt.NDArray[np.int64], warmup: int) -> Array:
    """The error stream: 1.0 where a joined row misses (regression: its absolute error is
    above the 90th percentile of the first ``warmup`` rows')."""
    predictions = np.asarray(stream.predictions, dtype=np.float64)[joined]
    labels = np.asarray(stream.labels, dtype=np.float64)[joined]
    if isinstance(stream.predictions[0], int):
        wrong: Array = (predictions != labels).astype(np.float64)
        return wrong
    errors = np.abs(predictions - labels)
    large: Array = (errors > np.quantile(errors[:warmup], 0.9)).astype(np.float64)
    return large


# -- runs ---------------------------------------------------------------------------------


def drain(
    settings: dict[str, Any], inference: list[Record], labels: list[Record]
) -> tuple[Daemon, list[Alert], float]:
    """The daemon over both topics until idle: itself, its firing performance alerts and
    the wall clock of `Daemon.drain`."""
    sink = MemorySink()
    daemon = Daemon(
        parse_config(settings),
        MemorySource([*inference, *labels]),
        sink,
        [KafkaPublisher(sink, "alerts", "retrain")],
        lambda model, version: None,
    )
    started = time.perf_counter()
    outputs = daemon.drain(idle_polls=3)
    seconds = time.perf_counter() - started
    alerts = [
        o
        for o in outputs
        if isinstance(o, Alert) and o.status == "firing" and o.detector in DETECTORS
    ]
    return daemon, alerts, seconds


def run(task: Task) -> Outcome:
    """One stream through the daemon (twice with a scaled budget) and river's ADWIN."""
    from river import drift  # noqa: PLC0415

    stream = generate(task)
    rng = np.random.default_rng([task.seed, 99, len(task.kind)])
    inference, labels, joined, duplicates = records(stream, task.max_delay, rng)
    settings: dict[str, Any] = {"labels": {"topics": [LABELS]}}
    daemon, alerts, seconds = drain(settings, inference, labels)
    config = daemon.config
    performance = daemon.performance.versions[MODEL, "unversioned"]
    counts = daemon.joins.counts
    found = (performance.rows, counts[MODEL, "joined"], counts["", "duplicate"])
    if found != (joined.size, joined.size, duplicates):
        raise RuntimeError(
            f"{task}: the daemon joined {found[1]} rows ({found[2]} duplicates), its stream "
            f"holds {found[0]}; the benchmark expected {joined.size} ({duplicates})"
        )
    errors = misses(stream, joined, config.performance.warmup_labels)
    river_adwin: Any = drift.ADWIN  # untyped
    adwin = river_adwin(delta=config.detection.adwin_delta)
    river = []
    for row, miss in enumerate(errors.tolist()):
        adwin.update(miss)
        if adwin.drift_detected:
            river.append(row)
    scaled: list[Alert] = []
    if task.scaled_budget is not None:
        budget = {"false_alarm_budget_labels": task.scaled_budget}
        _, scaled, _ = drain({**settings, "performance": budget}, inference, labels)
    starts = [int(np.argmax(joined >= change)) for change in stream.changes]
    assert performance.reference is not None
    assert performance.adwin is not None
    return Outcome(
        task,
        int(joined.size),
        starts,
        [(a.row, a.detector) for a in alerts],
        river,
        [(a.row, a.detector) for a in scaled],
        performance.adwin.block,
        performance.reference.miss_rate,
        len(inference) + len(labels),
        seconds,
    )


def _warm(_: object = None) -> None:
    """One untimed drain per worker: numba kernels load (or compile) outside the timing."""
    run(Task("sea", 0, (0,), 3_000, 100))


def tasks(mode: Mode) -> list[Task]:
    out = [
        Task(kind, seed, schedule, mode.segment, mode.max_delay)
        for kind, schedule in SCHEDULES.items()
        for seed in range(mode.seeds)
    ]
    kinds = len(STATIONARY) * mode.stationary_seeds
    monitored = kinds * (mode.stationary_events * (1.0 - MISSING) - 1_000)
    budget = monitored / TARGET_ALARMS
    for kind, delay in STATIONARY.items():
        concept = SCHEDULES.get(kind, (0,))[:1]
        out += [
            Task(
                kind,
                100 + seed,
                concept,
                mode.stationary_events,
                min(delay, mode.max_delay),
                budget,
            )
            for seed in range(mode.stationary_seeds)
        ]
    return out


# -- scoring ------------------------------------------------------------------------------


def judged(alarms: Iterable[int], outcome: Outcome) -> tuple[list[float | None], int, int]:
    """Per change its delay in rows (None: not detected); false alarms and the rows of the
    stationary stretch they came in (before the first change starts)."""
    rows = sorted(alarms)
    starts = outcome.starts
    quiet_until = starts[0] if starts else outcome.rows
    false_alarms = sum(r < quiet_until for r in rows)
    horizon = outcome.task.max_delay + AFTER_RAMP
    delays: list[float | None] = []
    for k, start in enumerate(starts):
        until = min(start + horizon, starts[k + 1] if k + 1 < len(starts) else outcome.rows)
        hits = [r - start for r in rows if start <= r < until]
        seen = bool(hits) and not (k == 0 and false_alarms)
        delays.append(float(hits[0]) if seen else None)
    return delays, false_alarms, quiet_until


@dataclass
class Tally:
    changes: int = 0
    delays: list[float] = field(default_factory=list)  # of the changes detected (rows)
    false_alarms: int = 0
    stationary_rows: int = 0

    def add(self, judgement: tuple[list[float | None], int, int]) -> None:
        delays, false_alarms, rows = judgement
        self.changes += len(delays)
        self.delays += [d for d in delays if d is not None]
        self.false_alarms += false_alarms
        self.stationary_rows += rows

    def merge(self, other: Tally) -> None:
        self.changes += other.changes
        self.delays += other.delays
        self.false_alarms += other.false_alarms
        self.stationary_rows += other.stationary_rows

    @property
    def share(self) -> float:
        return len(self.delays) / self.changes if self.changes else math.nan

    @property
    def median_delay(self) -> float:
        return float(np.median(self.delays)) if self.delays else math.nan

    @property
    def per_million(self) -> float:
        return 1e6 * self.false_alarms / max(self.stationary_rows, 1)


def _rows(alarms: list[tuple[int, str]], detector: str | None = None) -> list[int]:
    return [row for row, d in alarms if detector is None or d == detector]


def _blocks(group: list[Outcome]) -> str:
    return "/".join(str(b) for b in sorted({o.block for o in group}))


def report_streams(outcomes: list[Outcome]) -> tuple[Tally, Tally]:
    """The per-stream table at the defaults; monitord's and river's tallies over all."""
    ours_all, theirs_all = Tally(), Tally()
    differences: dict[bool, list[float]] = {True: [], False: []}  # by block == 1
    print(
        f"{'stream (runs)':<30}{'block':>14}{'changes':>8}{'monitord':>17}{'river ADWIN':>17}"
        f"{'stationary':>11}{'false alarms per M rows':>38}"
    )
    print(
        f"{'':<30}{'':>14}{'':>8}{'detected delay':>17}{'detected delay':>17}{'rows':>11}"
        f"{'degraded  error change  river ADWIN':>38}"
    )
    for kind in [*SCHEDULES, *(k for k in STATIONARY if k not in SCHEDULES)]:
        for stationary in (False, True):
            group = [o for o in outcomes if o.task.kind == kind and o.task.stationary == stationary]
            if not group:
                continue
            ours, theirs = Tally(), Tally()
            by_detector = {d: Tally() for d in DETECTORS}
            for outcome in group:
                mine = judged(_rows(outcome.monitord), outcome)
                river = judged(outcome.river, outcome)
                ours.add(mine)
                theirs.add(river)
                for detector, tally in by_detector.items():
                    tally.add(judged(_rows(outcome.monitord, detector), outcome))
                differences[outcome.block == 1] += [
                    a - b
                    for a, b in zip(mine[0], river[0], strict=True)
                    if a is not None and b is not None
                ]
            ours_all.merge(ours)
            theirs_all.merge(theirs)
            name = f"{kind}{' stationary' if stationary else ''} ({len(group)})"
            print(
                f"{name:<30}{_blocks(group):>14}{ours.changes:>8}"
                f"{ours.share:>9.2f}{ours.median_delay:>8.0f}"
                f"{theirs.share:>9.2f}{theirs.median_delay:>8.0f}"
                f"{ours.stationary_rows:>11}"
                f"{by_detector[PERFORMANCE_DETECTOR].per_million:>10.1f}"
                f"{by_detector[ERROR_CHANGE_DETECTOR].per_million:>14.1f}"
                f"{theirs.per_million:>14.1f}"
            )
    print("changes both detected, monitord's delay minus river ADWIN's:")
    for single, label in ((True, "single rows (block 1)"), (False, "block means")):
        found = differences[single]
        median = float(np.median(found)) if found else math.nan
        print(
            f"  monitord's error-stream ADWIN on {label}: {len(found)} changes, median "
            f"{median:.0f} rows, monitord earlier in {sum(d < 0 for d in found)}, "
            f"later in {sum(d > 0 for d in found)}"
        )
    return ours_all, theirs_all


def report_budget(outcomes: list[Outcome], mode: Mode, warmup: int) -> float:
    """The stationary streams with the scaled budget; observed / expected over all."""
    print(
        "stationary streams, performance.false_alarm_budget_labels scaled to expect "
        f"{TARGET_ALARMS:.0f} MonitordPerformanceDegraded in all:"
    )
    print(
        f"{'stream':<16}{'label delay':>12}{'rows':>10}{'block':>16}{'miss rate':>10}"
        f"{'expected':>10}{'observed':>10}{'ratio':>7}"
    )
    observed = expected = 0.0
    for kind, delay in STATIONARY.items():
        group = [o for o in outcomes if o.task.kind == kind and o.task.stationary]
        budget = group[0].task.scaled_budget or math.inf
        exp = sum(max(o.rows - warmup, 0) for o in group) / budget
        obs = sum(len(_rows(o.scaled, PERFORMANCE_DETECTOR)) for o in group)
        observed, expected = observed + obs, expected + exp
        print(
            f"{kind:<16}{f'0-{min(delay, mode.max_delay)}':>12}{sum(o.rows for o in group):>10}"
            f"{_blocks(group):>16}{np.mean([o.miss_rate for o in group]):>10.3f}"
            f"{exp:>10.1f}{obs:>10.0f}{obs / exp:>7.2f}"
        )
    ratio = observed / expected
    print(f"{'all':<16}{'':>48}{expected:>10.1f}{observed:>10.0f}{ratio:>7.2f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="5 seeds, shorter stationary runs")
    size.add_argument("--smoke", action="store_true", help="the smallest run (for tests)")
    args = parser.parse_args()
    limit_blas_threads()  # as `monitord run` does
    mode = MODES["smoke" if args.smoke else "quick" if args.quick else "full"]
    started = time.perf_counter()
    todo = sorted(tasks(mode), key=lambda t: -t.segment * len(t.schedule))
    workers = min(os.cpu_count() or 1, len(todo))
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_warm) as pool:
        outcomes = pool.map(run, todo, chunksize=1)
    ours, theirs = report_streams(outcomes)
    print()
    report_budget(outcomes, mode, parse_config({}).performance.warmup_labels)
    records = sum(o.records for o in outcomes)
    seconds = sum(o.drain_s for o in outcomes)
    print()
    print(
        f"{len(outcomes)} streams, {records:,} records through the daemon in {seconds:.0f} s "
        f"of drain; {time.perf_counter() - started:.0f} s in all on {workers} workers"
    )
    print(
        f"RESULT detected={ours.share:.2f} median_delay_rows={ours.median_delay:.0f} "
        f"river_adwin_delay_rows={theirs.median_delay:.0f} "
        f"false_alarms_per_M={ours.per_million:.2f} join_events_per_s={records / seconds:.0f}"
    )


if __name__ == "__main__":
    main()
