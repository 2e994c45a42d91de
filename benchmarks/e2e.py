"""End-to-end throughput against the raw Kafka consumer, in one process, on one topic.

Produces 20-feature inference events to an embedded broker, then reads the same topic three
ways: a tuned raw kafka-python consumer (no processing), the same consumer plus batch JSON
decoding into arrays (the floor any JSON pipeline pays), and the daemon end to end. Prints
events/s and RSS for each and the ratios; the last line is the RESULT summary.

    python benchmarks/e2e.py [--quick]
"""

from __future__ import annotations

import argparse
import gc
import operator
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
from kafka import KafkaConsumer, TopicPartition

# `python benchmarks/e2e.py` puts benchmarks/ first on sys.path, where `import detectors`
# (through monitord) would find benchmarks/detectors.py instead of the package.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from connectors.broker import EmbeddedBroker
from connectors.kafka import KafkaProducerSettings, KafkaSink, crc32c_accelerated, ensure_topics
from monitord.config import parse_config
from monitord.daemon import tune_garbage_collector
from monitord.service import build_kafka_daemon

FEATURES = [f"f{j:02d}" for j in range(20)]
# kafka-python fetches a partition again only once its buffered records are all polled:
# max_poll_records above one fetch's worth keeps a fetch in flight while a batch is processed.
FETCH = {
    "fetch_max_bytes": 64 * 1024 * 1024,
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
    "max_poll_records": 100_000,
    "fetch_max_wait_ms": 100,
}


def produce(bootstrap: str, topic: str, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, len(FEATURES)))
    values[n // 2 :, :10] += 0.3  # a shift in half of the features at mid-stream
    sink = KafkaSink(bootstrap, settings=KafkaProducerSettings(linger_ms=20, batch_size=1 << 20))
    for i, row in enumerate(values.tolist()):
        event = {
            "model": "bench",
            "model_version": "1",
            "event_id": f"e{i}",
            "features": dict(zip(FEATURES, row, strict=True)),
            "prediction": row[0],
        }
        sink.send(topic, b"bench", orjson.dumps(event))
        if i % 50_000 == 49_999:
            sink.flush(60)
    sink.flush(60)
    sink.close()


def raw_consume(bootstrap: str, topic: str, n: int, handle: Callable[[list[bytes]], None]) -> float:
    """Seconds for a group-less consumer to read ``n`` records, passing each batch on."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **FETCH)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    seen, start = 0, time.perf_counter()
    while seen < n:
        for records in consumer.poll(timeout_ms=500).values():
            handle([r.value for r in records])
            seen += len(records)
    elapsed = time.perf_counter() - start
    consumer.close()
    return elapsed


_FEATURE_VALUES = operator.itemgetter(*FEATURES)


def decode_to_arrays(values: list[bytes]) -> None:
    """The floor: parse each event and pull its features into one float array per batch."""
    loads, get = orjson.loads, _FEATURE_VALUES
    np.array([get(loads(v)["features"]) for v in values], dtype=np.float64)


def daemon_consume(bootstrap: str, topic: str, n: int) -> float:
    """Seconds for the daemon to process ``n`` records, from its first polled batch."""
    config = parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topics": [topic],
                "group_id": f"bench-{time.time_ns()}",
                "consumer": {**FETCH, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
            },
            "detection": {"warmup_events": 5000, "window_size": 1000},
        }
    )
    daemon = build_kafka_daemon(config)
    while daemon.stats.events == 0:
        daemon.step(0.5)  # the group join is not part of the measurement
    start_events, start = daemon.stats.events, time.perf_counter()
    while daemon.stats.events < n:
        daemon.step(0.5)
    elapsed = time.perf_counter() - start
    daemon.close()
    return elapsed * n / (n - start_events)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200k events instead of 1M")
    args = parser.parse_args()
    n = 200_000 if args.quick else 1_000_000
    # The daemon tunes the collector at startup (`monitord run`); all three readers here get
    # the same setting, so the ratios compare code, not GC settings.
    tune_garbage_collector()
    print(f"gc thresholds {gc.get_threshold()} for all three readers")
    print(f"crc32c accelerated: {crc32c_accelerated()}; events: {n}; features: {len(FEATURES)}")
    with EmbeddedBroker() as broker:
        topic = "bench-events"
        ensure_topics(broker.bootstrap, {topic: 1})
        started = time.perf_counter()
        produce(broker.bootstrap, topic, n)
        print(f"produced in {time.perf_counter() - started:.1f} s")
        raw = n / raw_consume(broker.bootstrap, topic, n, lambda batch: None)
        print(f"raw consumer        {raw:10.0f} events/s   peak rss {rss_mb():6.0f} MB")
        floor = n / raw_consume(broker.bootstrap, topic, n, decode_to_arrays)
        print(f"consumer + decode   {floor:10.0f} events/s   peak rss {rss_mb():6.0f} MB")
        daemon = n / daemon_consume(broker.bootstrap, topic, n)
        rss = rss_mb()
        print(f"daemon end to end   {daemon:10.0f} events/s   peak rss {rss:6.0f} MB")
    print(
        f"RESULT events_per_s={daemon:.0f} vs_raw_consumer={daemon / raw:.2f} "
        f"vs_decode_floor={daemon / floor:.2f} rss_mb={rss:.0f}"
    )


if __name__ == "__main__":
    main()
