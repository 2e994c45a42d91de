"""The daemon loop: poll, decode, monitor, decide, publish, flush, commit.

One cycle (`Daemon.step`) handles one polled batch end to end. Input offsets are committed
only after every output and dead letter of the batch is flushed, so a crash replays the
batch rather than losing it (at-least-once in, deterministic output ids out). `drain()` runs
cycles until the source is empty: the same loop, for tests and replays.
"""

from __future__ import annotations

import gc
import threading
from collections import Counter
from dataclasses import dataclass, field

from connectors.stream import Record, Sink, Source, TopicPartition
from monitord.alerts import Alert
from monitord.config import Config
from monitord.events import BadRecord, decode
from monitord.monitor import Monitor, ProfileLoader
from monitord.outputs import Publisher
from monitord.policy import Output, Policy

ERROR_HEADERS = ("monitord.error.reason", "monitord.error.detail")
SOURCE_HEADERS = ("monitord.source.topic", "monitord.source.partition", "monitord.source.offset")


GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector() -> None:
    """Collect cycles less often; call once at process start, after imports.

    Every event allocates a handful of short-lived objects (its parsed JSON, row tuples,
    a record), none in reference cycles. At CPython's default threshold (700 allocations)
    the cyclic collector runs every few events and its older generations walk every live
    batch, which measured at a quarter of the daemon's time. `gc.freeze` also takes the
    objects created at startup (modules, config, compiled kernels) out of every future scan.
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclass
class Stats:
    """Counters a status line or the metrics endpoint reads."""

    events: int = 0
    bad_records: Counter[str] = field(default_factory=Counter)
    alerts_firing: int = 0
    alerts_resolved: int = 0
    triggers: int = 0
    per_model: Counter[str] = field(default_factory=Counter)


class Daemon:
    def __init__(
        self,
        config: Config,
        source: Source,
        dead_letters: Sink,
        publishers: list[Publisher],
        load_profile: ProfileLoader,
    ) -> None:
        self.config = config
        self.source = source
        self.dead_letters = dead_letters
        self.publishers = publishers
        self.monitor = Monitor(config, load_profile)
        self.policy = Policy(config.alerts, config.policy, config.config_hash)
        self.stats = Stats()
        self.stopping = threading.Event()

    def step(self, timeout_s: float = 0.5) -> tuple[int, list[Output]]:
        """Process one polled batch; returns how many records it held and its outputs."""
        limit = self.config.kafka.consumer.max_poll_records
        records = self.source.poll(timeout_s, limit)
        if not records:
            return 0, []
        # Top the batch up with what is already fetched (no waiting), so the per-batch flush
        # and commit are paid once per large batch rather than once per fetch.
        while len(records) < limit:
            more = self.source.poll(0.0, limit - len(records))
            if not more:
                break
            records += more
        decoded = decode(records, self.config.events, self.monitor.columns_for)
        bad = list(decoded.bad)
        evaluations = []
        for group in decoded.groups.values():
            update = self.monitor.update(group)
            evaluations += update.evaluations
            bad += update.bad
            self.stats.per_model[group.model] += len(group) - len(update.bad)
        outputs = self.policy.decide(evaluations)
        self._dead_letter(bad)
        for publisher in self.publishers:
            publisher.publish(outputs)
        for publisher in self.publishers:
            publisher.flush()
        self.dead_letters.flush(30.0)
        self.source.commit(_next_offsets(records))
        self._count(len(records), bad, outputs)
        return len(records), outputs

    def run(self) -> None:
        """Cycle until `stopping` is set (a signal handler only sets it)."""
        while not self.stopping.is_set():
            self.step()

    def drain(self, idle_polls: int = 1, timeout_s: float = 0.0) -> list[Output]:
        """Cycle until ``idle_polls`` consecutive polls return nothing; all outputs."""
        outputs: list[Output] = []
        idle = 0
        while idle < idle_polls:
            polled, batch = self.step(timeout_s)
            idle = 0 if polled else idle + 1
            outputs += batch
        return outputs

    def _dead_letter(self, bad: list[BadRecord]) -> None:
        topic = self.config.kafka.dead_letter_topic
        for item in bad:
            record = item.record
            headers = [
                *record.headers,
                (ERROR_HEADERS[0], item.reason.encode()),
                (ERROR_HEADERS[1], item.detail.encode()[:1000]),
                (SOURCE_HEADERS[0], record.topic.encode()),
                (SOURCE_HEADERS[1], str(record.partition).encode()),
                (SOURCE_HEADERS[2], str(record.offset).encode()),
            ]
            self.dead_letters.send(topic, record.key, record.value or b"", headers)

    def _count(self, n_records: int, bad: list[BadRecord], outputs: list[Output]) -> None:
        self.stats.events += n_records
        self.stats.bad_records.update(b.reason for b in bad)
        for output in outputs:
            if isinstance(output, Alert):
                if output.status == "firing":
                    self.stats.alerts_firing += 1
                else:
                    self.stats.alerts_resolved += 1
            else:
                self.stats.triggers += 1

    def close(self) -> None:
        """Leave the group, then release outputs; safe to call more than once."""
        self.source.close()
        for publisher in self.publishers:
            publisher.close()
        self.dead_letters.close()


def _next_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    # Commit the NEXT offset to read: having processed 40..42 of a partition, commit 43.
    # A partition's records arrive in offset order, so the last one seen is the highest.
    last = {(r.topic, r.partition): r.offset for r in records}
    return {TopicPartition(t, p): offset + 1 for (t, p), offset in last.items()}
