"""End-to-end throughput against the raw Kafka consumer, in one process, on one topic.

Produces 20-feature inference events to an embedded broker, then reads the same topic four
ways: a tuned raw kafka-python consumer (no processing), the same consumer plus batch JSON
decoding into arrays (the floor any JSON pipeline pays), and the daemon end to end, once
without checkpoints (`checkpoint.store = "none"`: offsets committed every batch) and once
with the default local store (a checkpoint every 100k events or 10 s). Each reader runs once
per round, in alternating order; events/s are medians over the rounds, with their spread.
Prints events/s and RSS for each and the ratios; the last line is the RESULT summary, whose
daemon figure is the default configuration's (checkpoints on). Every reader is timed from
the moment its first records are in hand (a consumer's group join or first fetch is not
part of it) to the last record processed.

With ``--labels`` every event is labelled by a record on a second, co-partitioned topic
(``{"event_id", "label"}``, produced after the events): every reader then reads both
topics, the floor decodes the label records too (id and label out of each), and the
daemon joins every label to its prediction and monitors performance. Events/s counts
inference events; each reader's time covers both topics.

    python benchmarks/e2e.py [--quick] [--rounds N] [--labels] [--client confluent]

``--quick`` takes about a minute. ``--client confluent`` runs the daemon on confluent-kafka
(`kafka.client`, the optional extra) and measures the raw reader and the floor with a
tuned raw confluent-kafka consumer instead: each client against its own floor.

``--baseline REV`` (a refactoring's before and after) runs the daemon twice per round, each
in a child process on the same broker: on this checkout's code and on commit REV's (a
temporary worktree), in alternating order next to the in-process floor; it prints both
daemons' share of the floor and, per round, the new over the old.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import math
import operator
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaConsumer, TopicPartition

try:
    import confluent_kafka
except ImportError:  # the optional extra: only --client confluent needs it
    confluent_kafka = None  # type: ignore[assignment]

# `python benchmarks/e2e.py` puts benchmarks/ first on sys.path, where `import detectors`
# (through monitord) would find benchmarks/detectors.py instead of the package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from connectors.broker import EmbeddedBroker
from connectors.kafka import (
    KafkaConsumerSettings,
    KafkaProducerSettings,
    KafkaSink,
    crc32c_accelerated,
    ensure_topics,
)
from connectors.stream import Polled, Source
from monitord.config import parse_config
from monitord.daemon import Daemon, limit_blas_threads, tune_garbage_collector
from monitord.service import build_kafka_daemon

_spec = importlib.util.spec_from_file_location(
    "benchmark_worktree", Path(__file__).resolve().with_name("worktree.py")
)
assert _spec is not None
assert _spec.loader is not None
worktree = importlib.util.module_from_spec(_spec)  # benchmarks/worktree.py, for --baseline
_spec.loader.exec_module(worktree)

FEATURES = [f"f{j:02d}" for j in range(20)]
# kafka-python fetches a partition again only once its buffered records are all polled:
# max_poll_records above one fetch's worth keeps a fetch in flight while a batch is processed.
FETCH = {
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
    "max_poll_records": 100_000,
    "fetch_max_wait_ms": 100,
}


LABELS = "bench-labels"


def produce_labels(bootstrap: str, n: int, seed: int = 2) -> None:
    """A label for every event: the prediction's value plus noise (a regression)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(scale=0.1, size=n)
    values = np.random.default_rng(1).normal(size=(n, len(FEATURES)))[:, 0] + noise
    sink = KafkaSink(bootstrap, settings=KafkaProducerSettings(linger_ms=20, batch_size=1 << 20))
    for i, label in enumerate(values.tolist()):
        sink.send(LABELS, b"bench", orjson.dumps({"event_id": f"e{i}", "label": label}))
    sink.flush(60)
    sink.close()


def produce(bootstrap: str, topic: str, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, len(FEATURES)))
    values[n // 2 :, :10] += 0.3  # a shift in half of the features at mid-stream
    sink = KafkaSink(bootstrap, settings=KafkaProducerSettings(linger_ms=20, batch_size=1 << 20))
    step = 50_000  # rows made Python objects at a time: the peak RSS is the readers'
    for first in range(0, n, step):
        for i, row in enumerate(values[first : first + step].tolist(), first):
            event = {
                "model": "bench",
                "model_version": "1",
                "event_id": f"e{i}",
                "features": dict(zip(FEATURES, row, strict=True)),
                "prediction": row[0],
            }
            sink.send(topic, b"bench", orjson.dumps(event))
        sink.flush(60)
    sink.close()


def raw_consume(
    bootstrap: str,
    topics: list[str],
    n: int,
    handle: Callable[[str, list[bytes]], None],
    client: str = "kafka-python",
) -> float:
    """Seconds for a group-less consumer of ``client`` to read ``n`` records of ``topics``,
    passing each batch on with its topic."""
    if client == "confluent":
        return raw_confluent_consume(bootstrap, topics, n, handle)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **FETCH)
    partitions = [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic))
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    seen, start = 0, math.inf  # from the first records in hand, as `daemon_consume`
    while seen < n:
        polled = consumer.poll(timeout_ms=500)
        if polled:
            start = min(start, time.perf_counter())
        for tp, records in polled.items():
            handle(tp.topic, [r.value for r in records])
            seen += len(records)
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


_TOPIC, _VALUE = operator.methodcaller("topic"), operator.methodcaller("value")


def raw_confluent_consume(
    bootstrap: str, topics: list[str], n: int, handle: Callable[[str, list[bytes]], None]
) -> float:
    """`raw_consume` on confluent-kafka: the same fetch sizes, batches of up to
    ``max_poll_records`` messages, each run of one topic passed on with its topic."""
    assert confluent_kafka is not None, "--client confluent: pip install 'monitord[confluent]'"
    from connectors.confluent import fetch_config  # noqa: PLC0415 (needs the extra)

    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-raw-{time.time_ns()}",  # required, unused: assign() below
            "enable.auto.commit": False,
            # The daemon's fetch settings (its fetch queue backoff too: without it, one
            # run in two or three waited up to a second for a fetch, a bimodal floor).
            **fetch_config(
                KafkaConsumerSettings(
                    fetch_max_bytes=FETCH["fetch_max_bytes"],
                    max_partition_fetch_bytes=FETCH["max_partition_fetch_bytes"],
                    fetch_max_wait_ms=FETCH["fetch_max_wait_ms"],
                )
            ),
        }
    )
    metadata = consumer.list_topics(timeout=10)
    consumer.assign(
        [
            confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
            for topic in topics
            for p in sorted(metadata.topics[topic].partitions)
        ]
    )
    batch = FETCH["max_poll_records"]
    seen, start = 0, math.inf  # from the first records in hand, as `daemon_consume`
    while seen < n:
        # As ConfluentSource polls: what is fetched, else wait for one message and top up
        # (consume(batch, timeout) would wait for a whole batch).
        messages = consumer.consume(batch, 0) or consumer.consume(1, 0.5)
        if len(messages) == 1:
            messages += consumer.consume(batch - 1, 0)
        if messages:
            start = min(start, time.perf_counter())
        for topic, run in itertools.groupby(messages, key=_TOPIC):
            handle(topic, list(map(_VALUE, run)))
        seen += len(messages)
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


_FEATURE_VALUES = operator.itemgetter(*FEATURES)


def decode_to_arrays(topic: str, values: list[bytes]) -> None:
    """The floor: parse each event and pull its features into one float array per batch
    (a label record: its id and label into a list)."""
    loads, get = orjson.loads, _FEATURE_VALUES
    if topic == LABELS:
        [(label["event_id"], label["label"]) for label in map(loads, values)]
        return
    np.array([get(loads(v)["features"]) for v in values], dtype=np.float64)


def joined(daemon: Daemon) -> int:
    """Labels joined so far (each is one row of its version's performance stream)."""
    return sum(version.rows for version in daemon.performance.versions.values())


def daemon_consume(
    bootstrap: str, topic: str, n: int, store: str, labels: bool, client: str = "kafka-python"
) -> float:
    """Seconds for the daemon to process ``n`` records, from its first polled batch in hand.

    ``store`` is `checkpoint.store`; checkpoint intervals are the defaults; ``client`` is
    `kafka.client`. Each run starts
    from an empty state directory: a checkpoint left by an earlier run would seek past
    this run's records.
    """
    with tempfile.TemporaryDirectory(prefix="monitord-bench-") as state_dir:
        config = parse_config(
            {
                "kafka": {
                    # Named only when not the default: a --baseline tree from before
                    # kafka.client existed refuses the key.
                    **({"client": client} if client != "kafka-python" else {}),
                    "bootstrap_servers": bootstrap,
                    "input_topics": [topic],
                    "group_id": f"bench-{time.time_ns()}",
                    "consumer": {
                        **FETCH,
                        "session_timeout_ms": 6000,
                        "heartbeat_interval_ms": 1000,
                    },
                },
                "detection": {"warmup_events": 5000, "window_size": 1000},
                "checkpoint": {"store": store},
                "state_dir": state_dir,
                # The labels come after every event: each prediction waits for its label
                # (the default 200,000 per partition would evict most of a full run's).
                "labels": {"topics": [LABELS] if labels else [], "max_pending": max(n, 200_000)},
            }
        )
        records = 2 * n if labels else n
        daemon = build_kafka_daemon(config)
        first_records_at = _clock_first_records(daemon.source)
        try:
            while daemon.stats.events < records or (labels and joined(daemon) < n):
                daemon.step(0.5)
            # From the first records in hand (the group join is not part of the
            # measurement), their processing included.
            elapsed = time.perf_counter() - first_records_at()
        finally:
            daemon.close()
    return elapsed


def _clock_first_records(source: Source) -> Callable[[], float]:
    """When ``source``'s first poll with records returned (a clock of `time.perf_counter`).

    The clock used to start after the daemon had processed its first batch, and the time
    was scaled to all records as if each cost the same: with labels, a first batch of
    mostly label records (which the gate only holds: cheap) left the costly inference
    events to the measured part, one run in two (56k or 68k events/s, for the same code).
    """
    poll = source.poll
    stamps: list[float] = []

    def timed(timeout_s: float, max_records: int) -> Polled:
        polled = poll(timeout_s, max_records)
        if polled and not stamps:
            stamps.append(time.perf_counter())
        return polled

    setattr(source, "poll", timed)  # noqa: B010 (the daemon's reader polls this object)
    return lambda: stamps[0]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


READERS = {
    "raw consumer": "raw",
    "consumer + decode": "floor",
    "daemon, checkpoints off": "daemon_off",
    "daemon, checkpoints on": "daemon",
}


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):9.0f}  [{min(values):.0f}-{max(values):.0f}]"


def daemon_child(tree: Path, bootstrap: str, topic: str, n: int, labels: bool) -> float:
    """`daemon_consume` (checkpoints on) in a child process on the code in ``tree``."""
    arguments = ["--child", bootstrap, topic, str(n), *(["--labels"] if labels else [])]
    return float(worktree.run_in(tree, Path(__file__).resolve(), arguments).split()[-1])


def against_baseline(rev: str, n: int, rounds: int, labels: bool) -> None:
    """The daemon on this checkout and on ``rev``, each as a share of the same floor."""
    here = Path(__file__).resolve()
    with EmbeddedBroker() as broker, worktree.checked_out(rev, here) as old_tree:
        topic = "bench-events"
        topics = [topic, LABELS] if labels else [topic]
        ensure_topics(broker.bootstrap, dict.fromkeys(topics, 1))
        produce(broker.bootstrap, topic, n)
        if labels:
            produce_labels(broker.bootstrap, n)
        bootstrap, total = broker.bootstrap, n * len(topics)
        runs: dict[str, Callable[[], float]] = {
            "floor": lambda: raw_consume(bootstrap, topics, total, decode_to_arrays),
            "new": lambda: daemon_child(here.parents[1], bootstrap, topic, n, labels),
            "old": lambda: daemon_child(old_tree, bootstrap, topic, n, labels),
        }
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for round_ in range(rounds):
            for name in list(runs) if round_ % 2 == 0 else list(runs)[::-1]:
                rates[name].append(n / runs[name]())
            print(
                f"round {round_ + 1}: floor {rates['floor'][-1]:.0f}  new {rates['new'][-1]:.0f}"
                f"  old ({rev}) {rates['old'][-1]:.0f} events/s; new/old "
                f"{rates['new'][-1] / rates['old'][-1]:.2f}",
                flush=True,
            )
    floor, new, old = (statistics.median(rates[name]) for name in runs)
    print(
        f"RESULT new_vs_decode_floor={new / floor:.2f} old_vs_decode_floor={old / floor:.2f} "
        f"new_vs_old={new / old:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k events instead of 1M")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each reader (default 5)")
    parser.add_argument("--labels", action="store_true", help="every event labelled on a topic")
    parser.add_argument("--baseline", metavar="REV", help="also the daemon of commit REV")
    parser.add_argument(
        "--client",
        choices=("kafka-python", "confluent"),
        default="kafka-python",
        help="the Kafka client of the daemon and of its floor (kafka.client)",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)  # bootstrap topic n
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds: give at least 1")
    n = 200_000 if args.quick else 1_000_000
    if args.child:  # one daemon run for --baseline, in this process: its seconds
        tune_garbage_collector()
        limit_blas_threads()
        bootstrap, topic, count = args.child
        print(daemon_consume(bootstrap, topic, int(count), "local", args.labels))
        return
    if args.client == "confluent" and confluent_kafka is None:
        parser.error("--client confluent: pip install 'monitord[confluent]'")
    if args.baseline:
        if args.client != "kafka-python":
            parser.error("--baseline: compares kafka-python daemons only")
        tune_garbage_collector()
        limit_blas_threads()
        against_baseline(args.baseline, n, args.rounds, args.labels)
        return
    # The daemon tunes the collector at startup (`monitord run`); every reader here gets
    # the same setting, so the ratios compare code, not GC settings.
    tune_garbage_collector()
    limit_blas_threads()  # as `monitord run` does
    print(f"gc thresholds {gc.get_threshold()} for every reader")
    print(
        f"crc32c accelerated: {crc32c_accelerated()}; events: {n}; features: {len(FEATURES)}; "
        f"rounds: {args.rounds}; labels: {'on a second topic' if args.labels else 'none'}; "
        f"client: {args.client}"
    )
    # SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C, so the broker is stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with EmbeddedBroker() as broker:
        topic = "bench-events"
        topics = [topic, LABELS] if args.labels else [topic]
        ensure_topics(broker.bootstrap, dict.fromkeys(topics, 1))
        started = time.perf_counter()
        produce(broker.bootstrap, topic, n)
        if args.labels:
            produce_labels(broker.bootstrap, n)
        print(f"produced in {time.perf_counter() - started:.1f} s")
        total, labels, client = n * len(topics), args.labels, args.client
        bootstrap = broker.bootstrap

        def ignore(topic: str, batch: list[bytes]) -> None:
            pass

        runs: dict[str, Callable[[], float]] = {
            "raw": lambda: raw_consume(bootstrap, topics, total, ignore, client),
            "floor": lambda: raw_consume(bootstrap, topics, total, decode_to_arrays, client),
            "daemon_off": lambda: daemon_consume(bootstrap, topic, n, "none", labels, client),
            "daemon": lambda: daemon_consume(bootstrap, topic, n, "local", labels, client),
        }
        rates: dict[str, list[float]] = {name: [] for name in runs}
        rss: dict[str, float] = {}
        for round_ in range(args.rounds):
            # Alternate the order so that a slow stretch of a shared machine hits every
            # reader alike.
            for name in list(runs) if round_ % 2 == 0 else list(runs)[::-1]:
                rates[name].append(n / runs[name]())
                rss.setdefault(name, rss_mb())  # peak so far, after each reader's first run
            print(
                f"round {round_ + 1}: "
                + "  ".join(f"{name} {rates[name][-1]:.0f}" for name in runs)
                + " events/s"
            )
    for label, name in READERS.items():
        print(f"{label:24s} {spread(rates[name])} events/s   peak rss {rss[name]:6.0f} MB")
    raw, floor, off, daemon = (statistics.median(rates[name]) for name in READERS.values())
    on_vs_off = [on / off_ for on, off_ in zip(rates["daemon"], rates["daemon_off"], strict=True)]
    print(
        "checkpoint on vs off per round: "
        + " ".join(f"{ratio:.2f}" for ratio in on_vs_off)
        + f"; of the medians {daemon / off:.2f}"
    )
    print(
        f"RESULT events_per_s={daemon:.0f} vs_raw_consumer={daemon / raw:.2f} "
        f"vs_decode_floor={daemon / floor:.2f} rss_mb={rss_mb():.0f}"
    )


if __name__ == "__main__":
    main()
