"""Many models in one daemon: steady events/s, warm-up events/s and memory per model
version, on the real (embedded) broker.

For each fleet size (1, 10, 100 and 1,000 models of 50 numeric features, every model
version new to the daemon, warm-up 200 events and windows of 100 so every model is past
its warm-up), the events go round-robin over the models onto a fresh topic; a fresh child
process runs the daemon over it (`checkpoint.store = "none"`, as e2e.py's "checkpoints
off"). The child reports its events/s while versions warm up and calibrate (from its first
batch until every version detects: rows that came while a version was calibrated are
held and detected over by then, so every event counted was processed), its steady
events/s after that, and its resident memory at the end; memory per model version is the
growth from 1 to 100 models. The 1- and 100-model runs are repeated in turn
(``--rounds``, default 3) and their medians compared: one run's rate moves by several
per cent with the machine.

    python benchmarks/scale.py --quick    # about 5 minutes on 2 cores
    python benchmarks/scale.py            # twice the events per model

Last line: ``RESULT mb_per_model_version=<x> rate_100_vs_1=<x> warmup_1000_vs_steady=<x>``.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson

# `python benchmarks/scale.py` puts benchmarks/ first on sys.path, where `import detectors`
# (through monitord) would find benchmarks/detectors.py instead of the package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from connectors.broker import EmbeddedBroker
from connectors.kafka import KafkaProducerSettings, KafkaSink, ensure_topics

FEATURES = [f"f{j:02d}" for j in range(50)]
WARMUP, WINDOW = 200, 100
CHILD = """
import sys, tempfile, time
from monitord.config import parse_config
from monitord.daemon import limit_blas_threads, tune_garbage_collector
from monitord.service import build_kafka_daemon

bootstrap, topic = sys.argv[1], sys.argv[2]
total, models, warmup, window = map(int, sys.argv[3:7])
tune_garbage_collector()
limit_blas_threads()
with tempfile.TemporaryDirectory(prefix="monitord-scale-") as state_dir:
    config = parse_config({
        "kafka": {"bootstrap_servers": bootstrap, "input_topics": [topic],
                  "group_id": f"scale-{time.time_ns()}",
                  "consumer": {"max_poll_records": 20_000, "fetch_max_bytes": 64 << 20,
                               "max_partition_fetch_bytes": 4 << 20}},
        "detection": {"warmup_events": warmup, "window_size": window},
        "limits": {"max_models": 100_000, "max_versions_per_model": 10},
        "checkpoint": {"store": "none"},
        "state_dir": state_dir,
    })
    daemon = build_kafka_daemon(config)
    try:
        while daemon.stats.events == 0:
            daemon.step(0.5)  # the group join is not part of the measurement
        start, start_events = time.perf_counter(), daemon.stats.events
        warm = None
        while True:
            versions = daemon.monitor.versions.values()
            if warm is None and len(versions) == models and not any(v.warming_up for v in versions):
                warm = (time.perf_counter(), daemon.stats.events)
            if daemon.stats.events >= total:
                break
            daemon.step(0.5)
        end = time.perf_counter()
        assert warm is not None, "some version never left its warm-up"
        rss_mb = int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
        warmed = warm[0] - start
        warmup_rate = (warm[1] - start_events) / warmed if warmed > 0 else float("nan")
        steady_rate = (total - warm[1]) / (end - warm[0])
        print(warmup_rate, steady_rate, rss_mb)
    finally:
        daemon.close()
"""


def produce(bootstrap: str, topic: str, models: int, per_model: int, seed: int = 1) -> int:
    """``per_model`` Gaussian events for each of ``models`` models, round-robin."""
    rng = np.random.default_rng(seed)
    sink = KafkaSink(bootstrap, settings=KafkaProducerSettings(linger_ms=20, batch_size=1 << 20))
    total, step = models * per_model, 20_000
    for first in range(0, total, step):
        rows = rng.normal(size=(min(step, total - first), len(FEATURES))).round(6)
        for i, row in enumerate(rows.tolist(), first):
            event = {
                "model": f"model-{i % models:04d}",
                "model_version": "1",
                "event_id": f"e{i}",
                "features": dict(zip(FEATURES, row, strict=True)),
                "prediction": row[0],
            }
            sink.send(topic, b"", orjson.dumps(event))
        sink.flush(60)
    sink.close()
    return total


def run_daemon(bootstrap: str, topic: str, total: int, models: int) -> tuple[float, float, float]:
    """(warm-up events/s, steady events/s, RSS MB) of a fresh daemon process over ``topic``."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, bootstrap, topic, *map(str, (total, models, WARMUP, WINDOW))],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"daemon over {models} models failed:\n{done.stderr[-3000:]}")
    warmup, steady, rss = map(float, done.stdout.split())
    return warmup, steady, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events per model")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs over 1 and 100 models (default 3)"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: give at least 1")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    scale = 1 if args.quick else 2
    # Events per model: the warm-up, then enough windows for a steady rate; the small
    # fleets get more per model so every run has about as many steady events.
    # From 10 models on, the loop reads on while a worker calibrates the new versions
    # (`calibration.workers`): every version detects only some warm-ups' worth of events
    # later, and the steady rate needs events after that.
    plans = {1: 150_000, 10: 15_000, 100: 3_000, 1000: 2 * WARMUP + 8 * WINDOW}
    # The two fleets of rate_100_vs_1 run in turn, round after round (a run's rate moves
    # by several per cent with the machine): each fleet's medians.
    order = [1, 100] * args.rounds + [10, 1000]
    runs: dict[int, list[tuple[float, float, float]]] = {models: [] for models in plans}
    print(f"{'models':>6} {'events':>8} {'warm-up ev/s':>13} {'steady ev/s':>12} {'RSS MB':>7}")
    with EmbeddedBroker() as broker:
        totals = {}
        for models, per_model in plans.items():
            topic = f"scale-{models}"
            ensure_topics(broker.bootstrap, {topic: 1})
            totals[models] = produce(broker.bootstrap, topic, models, per_model * scale)
        for models in order:
            runs[models].append(
                run_daemon(broker.bootstrap, f"scale-{models}", totals[models], models)
            )
            warmup, steady, rss = runs[models][-1]
            print(
                f"{models:>6} {totals[models]:>8} {warmup:>13.0f} {steady:>12.0f} {rss:>7.0f}",
                flush=True,
            )
    results = {
        models: tuple(statistics.median(run[i] for run in found) for i in range(3))
        for models, found in runs.items()
    }
    if args.rounds > 1:
        for models in (1, 100):
            rates = [run[1] for run in runs[models]]
            print(
                f"{models:>6} models: steady median {results[models][1]:.0f} "
                f"[{min(rates):.0f}-{max(rates):.0f}], RSS median {results[models][2]:.0f} MB"
            )
    per_version = (results[100][2] - results[1][2]) / 99
    print(
        f"RESULT mb_per_model_version={per_version:.2f} "
        f"rate_100_vs_1={results[100][1] / results[1][1]:.2f} "
        f"warmup_1000_vs_steady={results[1000][0] / results[1000][1]:.2f}"
    )


if __name__ == "__main__":
    main()
