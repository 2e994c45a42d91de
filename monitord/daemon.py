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
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from threadpoolctl import threadpool_limits

from connectors.sqlite import StorageUnavailable
from connectors.stream import (
    CommitFailed,
    ConnectorError,
    DeliveryFailed,
    Record,
    Sink,
    Source,
    TopicPartition,
    one_partition,
)
from detectors.detection import sub_state
from detectors.profile import ReferenceProfile
from monitord.alerts import Alert
from monitord.audit import record_held
from monitord.checkpoint import Checkpoint, CheckpointError, CheckpointStore, VersionState
from monitord.config import Config
from monitord.dead_letter import (
    FRAMING_BYTES,
    DeadLetterLog,
    dead_letter,
    producer_request_bytes,
)
from monitord.events import BadRecord, Decoder, EventGroup, decode
from monitord.labels import Joined, LabelJoin
from monitord.latency import latencies
from monitord.metrics import DaemonMetrics
from monitord.monitor import (
    Evaluation,
    LateReferences,
    Monitor,
    MonitorState,
    MonitorUpdate,
    ProfileLoader,
)
from monitord.outputs import FLUSH_TIMEOUT_S, Publisher, log_outputs
from monitord.performance import Performance
from monitord.policy import Decisions, Output, Policy, PolicyState
from monitord.provenance import Provenance
from monitord.repartition import Forward, SourceOffsets, forwards
from monitord.retrain import DecisionRecorder
from monitord.volume import VolumeWatch

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


class HealthReport(Protocol):
    """What the loop tells the admin endpoint (`monitord.admin.Health`)."""

    def heartbeat(self) -> None: ...

    def set_condition(self, name: str, ok: bool, reason: str = "") -> None: ...

    def watch(self, name: str, problem: Callable[[], str | None]) -> None: ...


class _Unobserved:
    def heartbeat(self) -> None:
        pass

    def set_condition(self, name: str, ok: bool, reason: str = "") -> None:
        pass

    def watch(self, name: str, problem: Callable[[], str | None]) -> None:
        pass


BACKOFF_S = (0.5, 10.0)
"""First and longest wait between retries while the broker or an output is unreachable."""

PROBE_INTERVAL_S = 5.0
"""How often an idle loop checks that the broker still answers (readiness)."""

STORING_CHECKPOINTS = "storing checkpoints"
"""The state_dir fault of a checkpoint that could not be stored (retried every interval)."""


@dataclass
class Stats:
    """Counters a status line or the metrics endpoint reads."""

    events: int = 0
    bad_records: Counter[str] = field(default_factory=Counter)
    alerts_firing: int = 0
    alerts_resolved: int = 0
    triggers: int = 0
    per_model: Counter[str] = field(default_factory=Counter)
    checkpoints: int = 0
    last_checkpoint: float = 0.0  # wall clock of the last stored checkpoint


class Daemon:
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
    ) -> None:
        """``registry``: references that come after a version's first sight, and their
        provenance (`monitord.registry`); the daemon closes it. ``recorder``: where the
        retrain requests the policy holds back are recorded (the audit log)."""
        self.config = config
        self.source = source
        self.dead_letters = dead_letters
        self.publishers = publishers
        self.store = store
        self.monitor = Monitor(config, load_profile, registry)
        self.decode: Decoder = decode  # replay swaps in its by-column decoder
        self.registry = registry
        self.joins = LabelJoin(config.labels, config.events, config.limits.max_name_chars)
        self.volume = VolumeWatch(config.volume)
        self.performance = Performance(config, load_profile)
        self._dirty: set[TopicPartition] = set()  # state changed, offset maybe not
        self._label_next: dict[TopicPartition, int] = {}  # label partitions: next to poll
        self.recorder = recorder
        self.policy = Policy.from_config(config)
        self.stats = Stats()
        self.stopping = threading.Event()
        self._clock = clock
        self._processed: dict[TopicPartition, int] = {}  # next offset after folded records
        self._checkpointed: dict[TopicPartition, int] = {}
        self._saved_profiles: set[str] = set()
        self._events_since_checkpoint = 0
        self._last_checkpoint = clock()
        self._uncommitted: dict[TopicPartition, int] = {}  # checkpointed, commit pending
        self._undelivered = False  # a batch's outputs are not flushed: no checkpoint then
        self._last_probe = clock() - PROBE_INTERVAL_S  # probe at the first quiet poll
        self._generation = 0  # rebalances seen, to drop records held across one
        self._touched: set[TopicPartition] = set()  # partitions a rebalance moved meanwhile
        self._unrestored: set[TopicPartition] = set()  # assigned, checkpoint not loaded yet
        self.health: HealthReport = health or _Unobserved()
        # Asked at each /readyz from the admin thread: a dead broker shows within a second
        # even while the loop waits on it (a commit or a flush can block for 30 s).
        self.health.watch("broker", source.unreachable)
        self.health.watch("assigned", self._missing_topics)
        self.metrics = metrics
        kafka = config.kafka
        self._internal = kafka.internal_topic if kafka.repartition else None
        self._sources = SourceOffsets()
        self._state_faults: dict[str, str] = {}  # what fails in state_dir, and why
        self._dead_letter_log = DeadLetterLog(kafka.dead_letter_topic)
        self._closed = False

    def step(self, timeout_s: float = 0.5) -> tuple[int, list[Output]]:
        """Process one polled batch; returns how many records it held and its outputs."""
        limit = self.config.kafka.consumer.max_poll_records
        self._reset_positions()
        records = self.source.poll(timeout_s, limit)
        if not records and not self._labels_due():
            self._dead_letter_log.update([], time.monotonic())  # a burst's summary, if due
            # Scheduled and manual retrain requests; models gone quiet.
            due: list[Output] = [*self._decided(self.policy.due(time.time())), *self._volume()]
            if due and self._deliver(due, []):
                self._count(0, [], due)
                if self.metrics is not None:
                    self.metrics.outputs(due)
            if self._checkpoint_due():
                self.checkpoint()
            if self._clock() - self._last_probe >= PROBE_INTERVAL_S:
                self._last_probe = self._clock()
                self.source.probe(PROBE_INTERVAL_S)  # raises while the broker is away
                self.health.set_condition("broker", True)
            return 0, due
        self._last_probe = self._clock()
        started = time.perf_counter()
        # Top the batch up with what is already fetched (no waiting), so the per-batch flush
        # and commit are paid once per large batch rather than once per fetch.
        generation, self._touched = self._generation, set()
        while len(records) < limit:
            try:
                more = self.source.poll(0.0, limit - len(records))
            except ConnectorError as exc:
                # What was polled is this consumer's now: process it, report the rest.
                log.warning("topping up a batch failed: %s", exc)
                break
            if self._generation != generation:
                self._rewind([*records, *more])
                return len(records) + len(more), []  # polled, to be read again: not idle
            if not more:
                break
            records += more
        if self._unrestored:
            polled = len(records)
            records = self._hold_unrestored(records)
            if not records:
                return polled, []  # read again once restored: not idle
        requested = self._decided(self.policy.due(time.time()))
        records, label_records = self.joins.split(records)
        if self.joins.topics:
            self.joins.read(records)
        to_monitor, forwarded, bad = records, list[Forward](), list[BadRecord]()
        if self._internal is not None:
            to_monitor, forwarded, bad = self._repartition(records)
        decoded = self.decode(to_monitor, self.config.events, self.monitor.columns_for)
        bad += decoded.bad
        evaluations = []
        metrics = self.metrics
        pairs: list[Joined] = []
        for group in decoded.groups.values():
            update = self.monitor.update(group)
            evaluations += update.evaluations
            bad += update.bad
            if update.retired:
                self._retire(update.retired)
            if update.refused:  # no series nor counts for what a limit keeps out
                continue
            joined, latency = self._predictions(group, update)
            pairs += joined
            evaluations += latency
            good = len(group) - len(update.bad)
            self.stats.per_model[group.model] += good
            self.volume.seen(group.model, group.version, good, group.records[-1], time.time())
            if metrics is not None:
                metrics.model_events(
                    group.model,
                    group.version,
                    good,
                    update.newest_time,
                    update.late,
                    update.untimed,
                )
                metrics.columns_not_monitored(group.model, group.version, update.not_monitored)
        # This batch is read: a partition it read to its end holds no label back.
        read = {
            tp: n
            for part in (records, label_records)
            if part
            for tp, n in _next_offsets(part).items()
        }
        label_pairs, label_bad, turned_away = self._labels(label_records, read)
        bad += label_bad
        evaluations += self._performance(pairs + label_pairs)
        last = (label_records or records)[-1:]
        if self.joins.topics and last:
            # Due once every label up to then is read: both kinds of partition are past it.
            verdicts = self.joins.sweep(self._read_past_ms(read))
            evaluations += self.performance.coverage(verdicts, last[0])
            self._touched_versions({(model, version) for model, version, _ in verdicts})
        outputs = self._decided(self.policy.decide(evaluations)) + requested + self._volume()
        polled = len(records) + len(label_records)
        if not self._deliver(outputs, bad, forwarded):
            return polled, outputs  # stopping: the batch is processed again on restart
        self._count(polled, bad, outputs)
        processed = _next_offsets(records) if records else {}
        processed.update(self._label_offsets(label_records, turned_away))
        self._processed.update(processed)
        if self.store is None:
            self.source.commit(processed)
        else:
            self._events_since_checkpoint += polled
            if self._checkpoint_due():
                self.checkpoint()
        if metrics is not None:
            metrics.evaluations(evaluations)
            metrics.outputs(outputs)
            metrics.bad_records(Counter(b.reason for b in bad))
            if self.joins.topics or pairs or label_pairs:
                metrics.labels(
                    self.joins.take_counts(),
                    [p.label_time - p.prediction_time for p in pairs + label_pairs],
                    self.joins.pending(),
                    self.joins.gate.held(),
                )
            ends = self.source.end_offsets()
            metrics.lag(
                {
                    (tp.topic, tp.partition): max(0, end - self._processed[tp])
                    for tp, end in ends.items()
                    if tp in self._processed
                }
            )
            metrics.batch(polled, time.perf_counter() - started)
        return polled, outputs

    def _volume(self) -> list[Output]:
        """Volume alerts due now (`monitord.volume`)."""
        if not self.volume.enabled:
            return []
        return self._decided(self.policy.decide(self.volume.check(time.time())))

    def _decided(self, decisions: Decisions) -> list[Output]:
        """The policy's outputs, once the requests it held back are logged and recorded."""
        record_held(decisions.held, self.recorder)
        return decisions.outputs

    def _predictions(
        self, group: EventGroup, update: MonitorUpdate
    ) -> tuple[list[Joined], list[Evaluation]]:
        """A group's monitored events to the join (inline labels pair at once, the rest
        wait for theirs) and to the latency stream."""
        n = len(group)
        labelled = bool(self.joins.topics) or group.labels.count(None) < n
        timed = group.latencies.count(None) < n
        if not (labelled or timed):
            return [], []
        skip: set[int] = set()
        if update.bad:
            refused = {id(b.record) for b in update.bad}
            skip = {i for i, record in enumerate(group.records) if id(record) in refused}
        times, _ = group.event_times()
        model, version = group.model, group.version
        pairs = self.joins.predictions(model, version, group, times, skip) if labelled else []
        evaluations = []
        if timed:
            values = latencies(group.latencies)
            values[list(skip)] = math.nan
            evaluations = self.performance.latencies(model, version, values, times, group.records)
            self._touched_versions({(model, version)})
        return pairs, evaluations

    def _labels(
        self, records: list[Record], read: dict[TopicPartition, int]
    ) -> tuple[list[Joined], list[BadRecord], dict[TopicPartition, int]]:
        """Fold the label records whose predictions are in (`monitord.labels.LabelGate`);
        ``read``: the next offsets of the batch's partitions (updated where the full gate
        turned records away: those partitions are read again from there). Also returns
        those offsets: not processed."""
        if not self.joins.topics:
            return [], [], {}
        again = self.joins.hold(records)
        for tp, offset in again.items():
            self.source.seek(tp, offset)
        if again:  # not fetched again and again while the gate is full
            self.source.pause(again)
        read.update(again)
        pairs, bad = self.joins.fold(self._read_past_ms(read))
        self._reopen(read)
        return pairs, bad, again

    def _reopen(self, read: Mapping[TopicPartition, int]) -> None:
        """Resume the label partitions the full gate turned away once it has room for
        them: a quarter of it free, or any room when nothing held can be folded until they
        are read further (the label partitions hold the watermark back)."""
        gate = self.joins.gate
        if not gate.turned_away:
            return
        if not gate.roomy():
            stalled = not self._labels_due() and self._watermark_ms(
                read, labels=True
            ) <= self._watermark_ms(read)
            if not (stalled and gate.has_room()):
                return
        self.source.resume(gate.turned_away)
        gate.turned_away.clear()

    def _labels_due(self) -> bool:
        """Whether held label records may be folded now (an idle poll does it)."""
        oldest = self.joins.gate.oldest_ms()
        return oldest is not None and oldest < self._read_past_ms({})

    def _read_past_ms(self, read: Mapping[TopicPartition, int]) -> float:
        """Record time every partition, inference and label, is read past."""
        return min(self._watermark_ms(read), self._watermark_ms(read, labels=True))

    def _watermark_ms(
        self, read: Mapping[TopicPartition, int] | None = None, labels: bool = False
    ) -> float:
        """Record time every inference partition of this consumer is read past (with
        ``labels``: every label partition): a label older than it has its prediction in a
        join store, if it has one here. A partition read to its end (``read``: the next
        offsets of the batch at hand) holds nothing back."""
        ends = self.source.end_offsets()
        mark = math.inf
        read = read or {}
        for tp in self.source.assignment():
            if (tp.topic in self.joins.topics) != labels:
                continue
            done = read.get(tp) or (self._label_next if labels else self._processed).get(tp, 0)
            end = ends.get(tp)
            if end is not None and done >= end:
                continue
            mark = min(mark, self.joins.seen_ms.get(tp, -math.inf))
        return mark

    def _label_offsets(
        self, records: list[Record], turned_away: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Next offsets of the label partitions: a held record is not processed yet, nor
        one the full gate turned away."""
        if records:
            self._label_next.update(_next_offsets(records))
            self._label_next.update(turned_away)
        out = {}
        for tp, next_offset in self._label_next.items():
            held = self.joins.first_held(tp)
            out[tp] = next_offset if held is None else held
        return out

    def _performance(self, pairs: list[Joined]) -> list[Evaluation]:
        """Fold joined pairs into their versions' performance; their partitions' state
        changed (checkpointed even if no offset of theirs moved)."""
        if not pairs:
            return []
        evaluations = self.performance.update(pairs)
        self._touched_versions({(pair.model, pair.version) for pair in pairs})
        return evaluations

    def _touched_versions(self, keys: set[tuple[str, str]]) -> None:
        """These versions' performance state changed: checkpoint their partitions."""
        for key in keys:
            monitor = self.monitor.versions.get(key)
            if monitor is not None:
                self._dirty.add(monitor.owner)

    def _missing_topics(self) -> str | None:
        missing = self.source.missing_topics()
        if not missing:
            return None
        names = ", ".join(repr(topic) for topic in missing)
        return f"input topics {names} do not exist: create them or correct kafka.input_topics"

    def _reset_positions(self) -> None:
        """Report partitions the source moved because their offset lay outside the log.

        Runs before each poll, so no record read from the new offset is folded before the
        move is known. The partition's detector state is kept: with the broker's log lost,
        the state is all that remains of the history before it. The new offset is
        checkpointed at once, so a restart does not meet the same offset again."""
        moves = self.source.reset_positions()
        for move in moves:
            tp = move.partition
            where = "beyond the log's end" if move.reason == "beyond_end" else "before its start"
            cause = (
                "the topic was recreated or the broker lost its log"
                if move.reason == "beyond_end"
                else "retention deleted records not read yet"
            )
            log.error(
                "%s: offset %d is %s (log start %d, end %d): %s; reading from offset %d "
                "(kafka.auto_offset_reset = %s), detector state kept",
                tp,
                move.offset,
                where,
                move.log_start,
                move.log_end,
                cause,
                move.reset_to,
                move.rule,
                extra={
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": move.offset,
                    "log_start": move.log_start,
                    "log_end": move.log_end,
                    "reset_to": move.reset_to,
                },
            )
            if tp in self._processed:
                self._processed[tp] = move.reset_to  # checkpointed below
            self._uncommitted.pop(tp, None)  # never commit the offset that was out of range
            if self.metrics is not None:
                self.metrics.offset_reset(tp.topic, tp.partition, move.reason)
        if moves:
            self.checkpoint({move.partition for move in moves})

    def _hold_unrestored(self, records: list[Record]) -> list[Record]:
        """Retry the checkpoints that could not be loaded; a partition still without its
        state is not processed (that would start it afresh), but read again later."""
        assert self.store is not None
        self._restore(self.store, set(self._unrestored))
        held = [r for r in records if r.topic_partition in self._unrestored]
        if not held:
            self.health.set_condition("state_restored", True)
            return records
        self.health.set_condition(
            "state_restored", False, f"checkpoints of {len(self._unrestored)} partitions unread"
        )
        first: dict[TopicPartition, int] = {}
        for record in held:
            first.setdefault(record.topic_partition, record.offset)
        for tp, offset in first.items():
            self.source.seek(tp, offset)
        return [r for r in records if r.topic_partition not in self._unrestored]

    def _rewind(self, held: list[Record]) -> None:
        """A rebalance ran while a batch was being topped up: drop the batch unprocessed.

        Partitions the rebalance moved were already positioned by the callbacks (at their
        checkpoint, or by the new owner); each partition it left alone is read again from
        its first held record. Folding the held records now could fold some twice."""
        first: dict[TopicPartition, int] = {}
        for record in held:
            first.setdefault(record.topic_partition, record.offset)
        assigned = self.source.assignment()
        for tp, offset in first.items():
            if tp in assigned and tp not in self._touched:
                self.source.seek(tp, offset)

    def _repartition(
        self, records: list[Record]
    ) -> tuple[list[Record], list[Forward], list[BadRecord]]:
        """Split a batch: input events to forward by model, internal ones to monitor."""
        internal = [r for r in records if r.topic == self._internal]
        inputs = [r for r in records if r.topic != self._internal] if internal != records else []
        forwarded, bad = [], []
        if inputs:
            decoded = decode(inputs, self.config.events)
            forwarded, bad = forwards(inputs, decoded), list(decoded.bad)
        return self._sources.fresh(internal), forwarded, bad

    def _deliver(
        self,
        outputs: list[Output],
        bad: list[BadRecord],
        forwarded: Sequence[Forward] = (),
    ) -> bool:
        """Publish and flush a batch's outputs and dead letters, retrying while a retriable
        failure lasts. Publishing again after a failure may repeat messages (same ids), never
        lose one. False when told to stop first: that batch must not be checkpointed."""
        attempt, resend = 0, True
        while True:
            try:
                for item in forwarded if resend else ():
                    assert self._internal is not None
                    self.dead_letters.send(
                        self._internal,
                        item.key,
                        item.value,
                        item.headers,
                        timestamp_ms=item.timestamp_ms,
                    )
                if resend:
                    self._dead_letter(bad)
                    for publisher in self.publishers:
                        publisher.publish(outputs)
                for publisher in self.publishers:
                    publisher.flush()
                self.dead_letters.flush(FLUSH_TIMEOUT_S)
            except ConnectorError as exc:
                if not exc.retriable:
                    raise
                # Still in flight: wait for them again. Lost: send everything again.
                resend = not (isinstance(exc, DeliveryFailed) and exc.pending)
                self._undelivered = True
                if isinstance(exc, StorageUnavailable):
                    self._state_fault("recording outputs", exc)
                else:
                    self.health.set_condition("broker", False, f"outputs not delivered: {exc}")
                if not self._back_off(attempt, f"outputs not delivered ({exc})"):
                    return False
                attempt += 1
                continue
            self._undelivered = False
            self.health.set_condition("broker", True)
            self._state_stored("recording outputs")
            return True

    def _back_off(self, attempt: int, what: str) -> bool:
        """Wait before retry ``attempt`` (exponential, capped); False if stopping meanwhile."""
        first, longest = BACKOFF_S
        delay = min(longest, first * 2**attempt)
        log.warning("%s; retrying in %.1fs", what, delay)
        self.health.heartbeat()  # waiting on purpose is not a hung loop
        return not self.stopping.wait(delay)

    def _checkpoint_due(self) -> bool:
        settings = self.config.checkpoint
        waited = self._clock() - self._last_checkpoint >= settings.interval_s
        if STORING_CHECKPOINTS in self._state_faults:
            return waited  # a failed one is tried again, new events or not (an idle stream)
        return self._events_since_checkpoint >= settings.interval_events or (
            self._events_since_checkpoint > 0 and waited
        )

    def checkpoint(self, partitions: set[TopicPartition] | None = None) -> None:
        """Store the state of ``partitions`` (default: all) that moved, then commit them.

        Call only between batches: everything folded into the state must be flushed.
        """
        if self.store is None or self._undelivered:
            return
        dirty = self._dirty | self.joins.changed()
        moved = {
            tp: offset
            for tp, offset in self._processed.items()
            if (partitions is None or tp in partitions)
            and (self._checkpointed.get(tp) != offset or tp in dirty)
        }
        if partitions is None:
            self._events_since_checkpoint = 0
            self._last_checkpoint = self._clock()
        if not moved:
            return
        now = time.time()
        checkpoints, profiles = [], []
        for tp, offset in moved.items():
            versions = []
            for key in self.monitor.owned_by(tp):
                state, arrays, captured = self.monitor.snapshot(key)
                policy = self.policy.snapshot(key)
                stored = None if policy is None else policy.dump()
                performance = self.performance.snapshot(key)
                if performance is not None:
                    arrays = {
                        **arrays,
                        **{f"performance/{k}": v for k, v in performance[1].items()},
                    }
                versions.append(
                    VersionState(
                        state.dump(),
                        arrays,
                        stored,
                        None if performance is None else performance[0],
                    )
                )
                profiles += [p for p in captured if p.profile_id not in self._saved_profiles]
            checkpoints.append(
                Checkpoint(
                    tp, offset, versions, now, self._sources.snapshot(tp), self.joins.snapshot(tp)
                )
            )
        try:
            self.store.save(checkpoints, profiles)
        except StorageUnavailable as exc:
            # Nothing is committed past the last stored checkpoint; the next try (an interval
            # later) stores the state of then, so a disk that has room again catches up.
            if STORING_CHECKPOINTS in self._state_faults:
                log.warning(
                    "checkpoint not stored again (%s); next try in %gs",
                    exc,
                    self.config.checkpoint.interval_s,
                )
            self._state_fault(STORING_CHECKPOINTS, exc)
            return
        self._state_stored(STORING_CHECKPOINTS)
        self._saved_profiles.update(p.profile_id for p in profiles)
        self._checkpointed.update(moved)
        self._dirty -= set(moved)
        self.joins.saved(moved)
        self.stats.checkpoints += 1
        self.stats.last_checkpoint = now
        if self.metrics is not None:
            self.metrics.checkpointed(now)
        self._uncommitted.update(moved)
        self._commit()

    def _commit(self) -> None:
        """Commit what is checkpointed. A failure is not fatal: restoring seeks to the
        checkpoint anyway, and the next checkpoint commits again."""
        if not self._uncommitted:
            return
        try:
            self.source.commit(self._uncommitted)
        except CommitFailed as exc:
            log.warning("%s; the partitions' new owner restores from the checkpoint", exc)
        except ConnectorError as exc:
            if not exc.retriable:
                raise
            log.warning("%s; committing again after the next checkpoint", exc)
            self.health.set_condition("broker", False, f"commit failed: {exc}")
            return
        self._uncommitted.clear()

    def _state_fault(self, what: str, exc: StorageUnavailable) -> None:
        """``what`` failed in state_dir: not ready, saying why, until it works again."""
        if what not in self._state_faults:
            log.error("state_dir: %s failed (%s); retrying, not ready meanwhile", what, exc)
        self._state_faults[what] = str(exc)
        self._report_state_dir()

    def _state_stored(self, what: str) -> None:
        """``what`` worked in state_dir: the fault it had, if any, is over."""
        if self._state_faults.pop(what, None) is not None:
            log.info("state_dir: %s works again", what)
            self._report_state_dir()

    def _report_state_dir(self) -> None:
        reason = "; ".join(f"{what}: {why}" for what, why in self._state_faults.items())
        self.health.set_condition("state_dir", not self._state_faults, reason)

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        """Rebalance callback: restore each partition's state and read on from its offset."""
        names = _names(partitions)
        log.info("partitions assigned: %s", ", ".join(names) or "none", extra={"partitions": names})
        self._generation += 1
        self._touched |= partitions
        if self.store is None:
            self.health.set_condition("assigned", True)
            self.health.set_condition("state_restored", True)
            return
        self.health.set_condition("state_restored", False, "restoring checkpoints")
        self._restore(self.store, partitions)
        self.health.set_condition("assigned", True)
        self.health.set_condition(
            "state_restored", not self._unrestored, "a checkpoint store is unreachable"
        )
        if self.metrics is not None:
            self.metrics.restore_firing(self.policy.firing())

    def _restore(self, store: CheckpointStore, partitions: set[TopicPartition]) -> None:
        for tp in sorted(partitions, key=lambda tp: (tp.topic, tp.partition)):
            try:
                checkpoint = store.load(tp)
            except CheckpointError as exc:
                log.error("%s; %s starts without state from its committed offset", exc, tp)
                continue
            except ConnectorError as exc:
                # The store is unreachable: the partition waits (see `_hold_unrestored`).
                log.warning("%s: cannot load its checkpoint yet (%s)", tp, exc)
                if isinstance(exc, StorageUnavailable):
                    self._state_fault("reading checkpoints", exc)
                self._unrestored.add(tp)
                continue
            self._state_stored("reading checkpoints")
            self._unrestored.discard(tp)
            if checkpoint is None:
                continue
            for i, version in enumerate(checkpoint.versions):
                try:
                    self._restore_version(store, tp, i, version)
                except (CheckpointError, ValueError, KeyError) as exc:
                    log.error("%s: cannot restore a model version (%s); it starts afresh", tp, exc)
            self._sources.restore(tp, checkpoint.sources)
            if checkpoint.join is not None:
                self.joins.restore(tp, checkpoint.join)
            if tp.topic in self.joins.topics:
                self._label_next[tp] = checkpoint.next_offset
            self.source.seek(tp, checkpoint.next_offset)
            self._processed[tp] = self._checkpointed[tp] = checkpoint.next_offset
            log.info(
                "%s: restored %d model versions at offset %d",
                tp,
                len(checkpoint.versions),
                checkpoint.next_offset,
            )

    def _restore_version(
        self, store: CheckpointStore, tp: TopicPartition, index: int, version: VersionState
    ) -> None:
        """Restore one stored model version: all of it, or (raising) none of it. Both
        documents are validated before any state changes (`StateError` says what is wrong)."""
        monitor = MonitorState.load(version.monitor, f"monitor state of version {index}")
        name = f"{monitor.model}/{monitor.version}"
        policy = None
        if version.policy is not None:
            policy = PolicyState.load(version.policy, f"policy state of {name}")

        def captured(profile_id: str) -> ReferenceProfile:
            return store.load_profile(tp, profile_id)

        key = self.monitor.restore(tp, monitor, version.arrays, captured)
        if policy is not None:
            self.policy.restore(key, policy)
        if version.performance is not None:
            arrays = sub_state(version.arrays, "performance/")
            self.performance.restore(key, version.performance, arrays)

    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Rebalance callback: checkpoint what moved, then forget the partitions' state."""
        names = _names(partitions)
        log.info("partitions revoked: %s", ", ".join(names), extra={"partitions": names})
        self._generation += 1
        self._touched |= partitions
        try:
            self.checkpoint(partitions)
        except (ConnectorError, OSError) as exc:
            # Every stored checkpoint pairs state with its offset: the new owner restores an
            # older one and processes again, with the same output ids.
            log.error(
                "checkpoint on revocation of %s failed: %s", sorted(map(str, partitions)), exc
            )
        keys = [key for tp in partitions for key in self.monitor.owned_by(tp)]
        self.monitor.drop(keys)
        self.policy.drop(keys)
        self.performance.drop(keys)
        # A pause outlives a rebalance that keeps the partition; its gate state does not.
        self.source.resume(partitions & self.joins.gate.turned_away)
        self.joins.drop(partitions)
        self._dirty -= partitions
        for tp in partitions:
            self._label_next.pop(tp, None)
            self._processed.pop(tp, None)
            self._checkpointed.pop(tp, None)
            self._uncommitted.pop(tp, None)
            self._sources.drop(tp)
            self._unrestored.discard(tp)

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
                self._state_stored("writing state")
            except ConnectorError as exc:
                if not exc.retriable:
                    raise
                if isinstance(exc, StorageUnavailable):
                    self._state_fault("writing state", exc)
                else:
                    self.health.set_condition("broker", False, str(exc))
                self._back_off(attempt, str(exc))
                attempt += 1
            self.health.heartbeat()

    def _retire(self, retired: dict[tuple[str, str], TopicPartition]) -> None:
        """Forget retired versions' policy state; their partitions' next checkpoint, due
        now, no longer holds them."""
        self.policy.drop(list(retired))
        self.performance.drop(list(retired))
        if self.metrics is not None:
            self.metrics.retired(retired)
        for partition in retired.values():
            self._checkpointed.pop(partition, None)

    def status(self) -> dict[str, object]:
        """Per model version: reference, warm-up, rows seen and alerts firing (for /status).

        Called from the admin thread: reads snapshots of the loop's dictionaries."""
        firing: dict[tuple[str, str], list[dict[str, str]]] = {}
        for model, version, feature, detector in self.policy.firing():
            firing.setdefault((model, version), []).append(
                {"feature": feature, "detector": detector}
            )
        models: dict[str, dict[str, object]] = {}
        for (model, version), monitor in list(self.monitor.versions.items()):
            profile = monitor.profile
            models.setdefault(model, {})[version] = {
                "reference_id": None if profile is None else profile.profile_id,
                "reference": _reference_kind(monitor.profile_from_file, monitor.provenance),
                "reference_uri": None
                if monitor.provenance is None
                else monitor.provenance.model_uri,
                "reference_notes": [] if profile is None else profile.notes,
                "status": "warming up" if monitor.warming_up else "monitoring",
                "change_detection": monitor.change_status(),
                "events": self.stats.per_model.get(model, 0),
                "partition": str(monitor.owner),
                "alerts_firing": firing.get((model, version), []),
                "columns": monitor.columns_status(),
                "performance": self._performance_status(model, version),
            }
        return {
            "events": self.stats.events,
            "bad_records": dict(self.stats.bad_records),
            "assigned": sorted(str(tp) for tp in self.source.assignment()),
            "checkpoints": self.stats.checkpoints,
            "last_checkpoint": self.stats.last_checkpoint or None,
            "labels": {
                "topics": list(self.joins.topics),
                "pending": self.joins.pending(),
                "held": self.joins.gate.held(),
            },
            "models": models,
        }

    def _performance_status(self, model: str, version: str) -> dict[str, object] | None:
        """A version's performance stream for /status (None: no label joined yet)."""
        found = self.performance.versions.get((model, version))
        if found is None:
            return None
        reference = found.reference
        return {
            "status": "warming up" if reference is None else "monitoring",
            "labelled_rows": found.rows,
            "task": None if reference is None else reference.scoring.task,
            "reference_id": found.reference_id or None,
            "reference": None if reference is None else reference.metrics,
            "last_window": found.last or None,
        }

    @property
    def clean(self) -> bool:
        """False while a processed batch's outputs are undelivered (lost on exit: replayed)."""
        return not self._undelivered

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
        budget = producer_request_bytes(self.config.events) - FRAMING_BYTES
        group = self.config.kafka.group_id
        for item in bad:
            key, value, headers = dead_letter(item, budget, group)
            self.dead_letters.send(topic, key, value, headers)

    def _count(self, n_records: int, bad: list[BadRecord], outputs: list[Output]) -> None:
        """Count a delivered batch, and log its outputs and dead letters."""
        log_outputs(outputs)
        self._dead_letter_log.update(bad, time.monotonic())
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
        """Checkpoint, leave the group, then release outputs; safe to call more than once."""
        first = not self._closed
        self._closed = True
        if first:
            log.info("shutting down: checkpointing, leaving the consumer group, flushing outputs")
        self.checkpoint()
        self.source.close()  # revokes every partition: nothing left to checkpoint
        for publisher in self.publishers:
            publisher.close()
        self.dead_letters.close()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.registry is not None:
            self.registry.close()
        if first:
            self._dead_letter_log.flush(time.monotonic())
            stats = self.stats
            log.info(
                "stopped: %d records, %d alerts fired, %d resolved, %d retrain requests, "
                "%d dead letters%s",
                stats.events,
                stats.alerts_firing,
                stats.alerts_resolved,
                stats.triggers,
                sum(stats.bad_records.values()),
                "" if self.clean else "; the last batch's outputs were not delivered",
                extra={"records": stats.events, "clean": self.clean},
            )


def _reference_kind(from_file: bool, provenance: Provenance | None) -> str:
    if provenance is not None:
        return "registry"
    return "file" if from_file else "warm-up capture"


def _names(partitions: set[TopicPartition]) -> list[str]:
    return [str(tp) for tp in sorted(partitions, key=lambda tp: (tp.topic, tp.partition))]


def _next_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    # Commit the NEXT offset to read: having processed 40..42 of a partition, commit 43.
    # A partition's records arrive in offset order, so the last one seen is the highest.
    if one_partition(records):
        last_record = records[-1]
        return {last_record.topic_partition: last_record.offset + 1}
    last = {(r.topic, r.partition): r.offset for r in records}
    return {TopicPartition(t, p): offset + 1 for (t, p), offset in last.items()}


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
