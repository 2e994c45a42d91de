"""The daemon loop: poll, decode, monitor, decide, publish, flush, checkpoint, commit.

One cycle (`Daemon.step`) handles one polled batch end to end. Every output and dead letter
of a batch is flushed before the batch counts as processed. With a checkpoint store, the
state of each partition's model versions is saved every ``checkpoint.interval_events`` events
or ``interval_s`` seconds, on revocation and on close, and input offsets are committed only
after the checkpoint covering them; on assignment the state is restored and the partition
read from the checkpoint's offset, so detector state folds each record exactly once while
outputs are at-least-once with deterministic ids. Without a store, offsets are committed
after every batch. `drain()` runs cycles until the source is empty: the same loop, for tests
and replays.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable

from threadpoolctl import threadpool_limits

from connectors.sqlite import StorageUnavailable
from connectors.stream import ConnectorError, Polled, Sink, Source, TopicPartition, flatten
from monitord.audit import record_held
from monitord.batch_output import BACKOFF_S, BatchOutput, back_off
from monitord.batch_reader import PROBE_INTERVAL_S, BatchReader
from monitord.calibrations import Calibrations
from monitord.checkpoint import CheckpointStore
from monitord.checkpointer import STORING_CHECKPOINTS, Checkpointer
from monitord.config import Config
from monitord.event_flow import EventFlow
from monitord.events import BadRecord, Decoder, decode
from monitord.label_flow import LabelFlow
from monitord.labels import LabelJoin
from monitord.metrics import DaemonMetrics
from monitord.monitor import LateReferences, Monitor, ProfileLoader
from monitord.outputs import Publisher
from monitord.partitions import Partitions, next_offsets
from monitord.performance import Performance
from monitord.policy import Decisions, Output, Policy
from monitord.readiness import HealthReport, Unobserved
from monitord.retrain import DecisionRecorder
from monitord.state_dir import StateDirFaults
from monitord.stats import Stats
from monitord.status import daemon_status
from monitord.version_states import VersionStates

log = logging.getLogger(__name__)

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


BLAS_THREADS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
"""Variables by which an operator sets BLAS threads: given any, `limit_blas_threads` defers."""


def limit_blas_threads() -> None:
    """Run BLAS (the OpenBLAS of numpy and of scipy) on the calling thread; call once at
    process start, after numpy and scipy are imported.

    The daemon's BLAS calls are small (dot products over a window or a miss history), and
    OpenBLAS hands any above a few thousand elements to a thread per core. On a busy node,
    where a sidecar shares the cores with the model it watches, those threads wait for a
    core: on two busy cores, the ten lag products of a 20,000-row miss history took 5-22 ms
    with OpenBLAS's threads and 0.04-0.2 ms without. An operator's own setting
    (`BLAS_THREADS_ENV`) is left alone.
    """
    if any(name in os.environ for name in BLAS_THREADS_ENV):
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # for a BLAS library loaded later
    threadpool_limits(1, user_api="blas")


def _decided(recorder: DecisionRecorder | None, decisions: Decisions) -> list[Output]:
    """The policy's outputs, once the requests it held back are logged and recorded."""
    record_held(decisions.held, recorder)
    return decisions.outputs


class Daemon:
    """The loop over a source: `step` handles one batch, `run` and `drain` repeat it.

    Its collaborators do the work and own the state: `BatchReader` reads a batch,
    `EventFlow` and `LabelFlow` fold it, `BatchOutput` publishes and flushes it, and
    `Checkpointer` stores it; `Partitions` holds the offsets, `VersionStates` each model
    version's state.
    """

    def __init__(
        self,
        config: Config,
        source: Source,
        dead_letters: Sink,
        publishers: list[Publisher],
        load_profile: ProfileLoader,
        store: CheckpointStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        health: HealthReport | None = None,
        metrics: DaemonMetrics | None = None,
        registry: LateReferences | None = None,
        recorder: DecisionRecorder | None = None,
        stopping: threading.Event | None = None,
        internal_partitions: int = 0,
    ) -> None:
        """``registry``: late references and their provenance (closed here); ``recorder``:
        the audit log of held-back retrain requests; ``stopping``: an owner's event that
        stops the loop; ``internal_partitions``: with ``kafka.repartition``, the internal
        topic's partition count (labels wait for forwards to those read here; 0: none)."""
        self.config, self.source = config, source
        workers = Calibrations(config.calibration.workers)
        self.monitor = Monitor(config, load_profile, registry, workers)
        self.decode: Decoder = decode  # replay swaps in its by-column decoder
        self.registry = registry
        self.joins = LabelJoin(config.labels, config.events, config.limits.max_name_chars)
        self.performance = Performance(config, load_profile)
        self.recorder = recorder
        policy = Policy.from_config(config)
        self.versions = versions = VersionStates(self.monitor, policy, self.performance)
        self.stats, self.metrics = Stats(), metrics
        self.stopping = stopping or threading.Event()  # set to stop: the batch finishes
        self.health: HealthReport = health or Unobserved()
        internal = config.kafka.internal_topic if config.kafka.repartition else ""
        self.partitions = parts = Partitions(internal, internal_partitions if internal else 0)
        self._state_dir = faults = StateDirFaults(self.health)
        self.output = BatchOutput(
            config, publishers, dead_letters, self.health, faults, self.stopping
        )
        self.checkpoints = Checkpointer(
            store,
            config.checkpoint,
            parts,
            self.versions,
            self.joins,
            source,
            health=self.health,
            state_dir=faults,
            stats=self.stats,
            metrics=metrics,
            clock=clock,
        )
        limit = config.kafka.consumer.max_poll_records
        self.reader = BatchReader(
            source, limit, parts, self.checkpoints, self.health, metrics, clock
        )
        self.label_flow = LabelFlow(self.joins, source, parts, self.monitor, self.performance)
        self.event_flow = EventFlow(config, versions, self.label_flow, parts, self.stats, metrics)
        self._closed = False

    @property
    def policy(self) -> Policy:
        return self.versions.policy

    @policy.setter
    def policy(self, policy: Policy) -> None:  # replay swaps in its tallying policy
        self.versions.policy = policy

    @property
    def store(self) -> CheckpointStore | None:
        return self.checkpoints.store

    def step(self, timeout_s: float = 0.5) -> tuple[int, list[Output]]:
        """Process one polled batch; returns how many records it held and its outputs."""
        moved = self.reader.reset_positions()
        if moved:
            self.checkpoint(moved)
        polled = self.reader.poll(timeout_s)
        if not polled and not self.label_flow.due():
            return 0, self._idle()
        started = time.perf_counter()
        batch, count = self.reader.batch(polled)
        if batch is None:
            return count, []  # to be read again: not idle
        return self._process(batch, count, started)

    def _idle(self) -> list[Output]:
        """A poll without records: what is due regardless, and a probe of the broker."""
        self.output.delivered([], [])  # a burst's summary of dead letters, if due
        # Scheduled and manual retrain requests; models gone quiet.
        due: list[Output] = [
            *_decided(self.recorder, self.policy.due(time.time())),
            *_decided(self.recorder, self.event_flow.volume_alerts()),
        ]
        self._deliver(due)
        # Nothing to read: versions being calibrated detect over their held rows now (a
        # drained daemon has every output), not at the next batch.
        due += self.checkpoint() if self.checkpoints.due() else self._settle()
        self.checkpoints.commit_restored()
        self.reader.probe()
        return due

    def _process(self, batch: Polled, polled: int, started: float) -> tuple[int, list[Output]]:
        """Fold ``polled`` records, decide, deliver, mark them processed (checkpoint or commit)."""
        requested = _decided(self.recorder, self.policy.due(time.time()))
        events, labels = self.joins.split(batch)
        if self.joins.topics:
            self.joins.read(events)
        to_monitor, forwarded, bad = self.event_flow.repartition(events)
        # The decoder reads one list: partition after partition, each in offset order.
        decoded = self.decode(flatten(to_monitor), self.config.events, self.monitor.columns_for)
        bad += decoded.bad
        evaluations, pairs = self.event_flow.monitor(decoded, bad)
        labelled = self.label_flow.fold(events, labels, pairs)
        bad += labelled.bad
        evaluations += labelled.evaluations
        outputs = (
            _decided(self.recorder, self.policy.decide(evaluations))
            + requested
            + _decided(self.recorder, self.event_flow.volume_alerts())
        )
        if not self.output.deliver(outputs, bad, forwarded):
            return polled, outputs  # stopping: the batch is processed again on restart
        self._count(polled, bad, outputs)
        processed = next_offsets(events)
        processed.update(self.label_flow.offsets(labels, labelled.turned_away))
        self.partitions.processed(processed)
        settled: list[Output] = []
        if self.store is None:
            self.source.commit(processed)
        else:
            self.checkpoints.count(polled)
            if self.checkpoints.due():
                settled = self.checkpoint()
        if self.metrics is not None:
            self.metrics.evaluations(evaluations)
            self.metrics.outputs(outputs)
            self.metrics.bad_records(Counter(b.reason for b in bad))
            self.label_flow.report(self.metrics, labelled.pairs)
            self.metrics.lag(self.partitions.lag(self.source.end_offsets()))
            self.metrics.batch(polled, time.perf_counter() - started)
        return polled, outputs + settled

    def _count(self, n_records: int, bad: list[BadRecord], outputs: list[Output]) -> None:
        """Count a delivered batch, and log its outputs and dead letters."""
        self.output.delivered(outputs, bad)
        self.stats.count(n_records, bad, outputs)

    def checkpoint(self, partitions: set[TopicPartition] | None = None) -> list[Output]:
        """Store the state of ``partitions`` (default: all) that moved, then commit them;
        versions being calibrated are settled first (held rows are not state): returns
        the outputs that made.

        Call only between batches: everything folded into the state must be flushed.
        """
        outputs = self._settle()
        if not self.output.undelivered:
            self.checkpoints.save(partitions)
        return outputs

    def _settle(self) -> list[Output]:
        """Detect over rows held for calibrations (`EventFlow.settle`); deliver the outputs."""
        evaluations = self.event_flow.settle()
        if not evaluations:
            return []
        if self.metrics is not None:
            self.metrics.evaluations(evaluations)
        outputs = _decided(self.recorder, self.policy.decide(evaluations))
        self._deliver(outputs)
        return outputs

    def _deliver(self, outputs: list[Output]) -> None:
        """Deliver and count outputs decided between batches."""
        if outputs and self.output.deliver(outputs, []):
            self._count(0, [], outputs)
            if self.metrics is not None:
                self.metrics.outputs(outputs)

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Rebalance callback: restore each partition's state and read on from its offset."""
        names = _names(partitions)
        log.info("partitions assigned: %s", ", ".join(names) or "none", extra={"partitions": names})
        self.partitions.rebalanced(partitions)
        self.checkpoints.assigned(partitions)

    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Rebalance callback: checkpoint what moved, then forget the partitions' state."""
        names = _names(partitions)
        log.info("partitions revoked: %s", ", ".join(names), extra={"partitions": names})
        self.partitions.rebalanced(partitions)
        try:
            self.checkpoint(partitions)
        except (ConnectorError, OSError) as exc:
            # Every stored checkpoint pairs state with its offset: the new owner restores an
            # older one and processes again, with the same output ids.
            log.error(
                "checkpoint on revocation of %s failed: %s", sorted(map(str, partitions)), exc
            )
        self.versions.drop(partitions)
        # A pause outlives a rebalance that keeps the partition; its gate state does not.
        self.source.resume(partitions & self.joins.gate.turned_away)
        self.joins.drop(partitions)
        self.partitions.forget(partitions)

    def run(self) -> None:
        """Cycle until `stopping` is set (a signal handler only sets it).

        A broker that is down or stalled is waited out with backoff (reported not ready),
        never a reason to exit.
        """
        attempt = 0
        while not self.stopping.is_set():
            try:
                self.step()
                attempt = 0
                self._state_dir.works("writing state")
            except ConnectorError as exc:
                if not exc.retriable:
                    raise
                if isinstance(exc, StorageUnavailable):
                    self._state_dir.failed("writing state", exc)
                else:
                    self.health.set_condition("broker", False, str(exc))
                back_off(attempt, str(exc), self.health, self.stopping)
                attempt += 1
            self.health.heartbeat()

    def status(self) -> dict[str, object]:
        """What /status shows (`monitord.status`); called from the admin thread."""
        return daemon_status(
            self.stats, self.source, self.monitor, self.policy, self.performance, self.joins
        )

    @property
    def clean(self) -> bool:
        """False while a processed batch's outputs are undelivered (lost on exit: replayed)."""
        return not self.output.undelivered

    def drain(self, idle_polls: int = 1, timeout_s: float = 0.0) -> list[Output]:
        """Cycle until ``idle_polls`` consecutive polls return nothing; all outputs."""
        outputs: list[Output] = []
        idle = 0
        while idle < idle_polls:
            polled, batch = self.step(timeout_s)
            idle = 0 if polled else idle + 1
            outputs += batch
        return outputs

    def close(self) -> None:
        """Checkpoint, leave the group, then release outputs; safe to call more than once."""
        first = not self._closed
        self._closed = True
        if first:
            log.info("shutting down: checkpointing, leaving the consumer group, flushing outputs")
        self.checkpoint()
        self.monitor.close()
        self.source.close()  # revokes every partition: nothing left to checkpoint
        self.output.close(first)
        self.checkpoints.close()
        if self.registry is not None:
            self.registry.close()
        if first:
            _log_stopped(self.stats, self.clean)


def _log_stopped(stats: Stats, clean: bool) -> None:
    log.info(
        "stopped: %d records, %d alerts fired, %d resolved, %d retrain requests, %d dead letters%s",
        stats.events,
        stats.alerts_firing,
        stats.alerts_resolved,
        stats.triggers,
        sum(stats.bad_records.values()),
        "" if clean else "; the last batch's outputs were not delivered",
        extra={"records": stats.events, "clean": clean},
    )


def _names(partitions: set[TopicPartition]) -> list[str]:
    return [str(tp) for tp in sorted(partitions, key=lambda tp: (tp.topic, tp.partition))]


__all__ = [
    "BACKOFF_S",
    "GC_THRESHOLDS",
    "PROBE_INTERVAL_S",
    "STORING_CHECKPOINTS",
    "Daemon",
    "HealthReport",
    "Stats",
    "limit_blas_threads",
    "tune_garbage_collector",
]
