"""The label side of a batch: predictions into the join, label records through the gate
(`monitord.label_gate.LabelGate`) until every partition is read past them, joined pairs and
latencies into performance, and the label partitions paused while the gate is full."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.stream import Polled, Source, TopicPartition
from monitord.events import BadRecord, EventGroup
from monitord.join_store import Joined
from monitord.labels import LabelJoin
from monitord.latency import latencies
from monitord.metrics import DaemonMetrics
from monitord.monitor import Evaluation, Monitor, MonitorUpdate
from monitord.partitions import Partitions, next_offsets
from monitord.performance import Performance
from monitord.repartition import Forward


@dataclass
class LabelFold:
    """What a batch's labels came to."""

    pairs: list[Joined]  # every pair joined in the batch, inline labels included
    bad: list[BadRecord]
    evaluations: list[Evaluation]  # performance and label coverage
    turned_away: dict[TopicPartition, int]  # label partitions to read again from there


class LabelFlow:
    """Moves labels through one batch; the join (`LabelJoin`) holds what waits."""

    def __init__(
        self,
        joins: LabelJoin,
        source: Source,
        partitions: Partitions,
        monitor: Monitor,
        performance: Performance,
    ) -> None:
        self.joins, self._source, self._partitions = joins, source, partitions
        self._monitor, self._performance = monitor, performance

    def predictions(
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
            evaluations = self._performance.latencies(model, version, values, times, group.records)
            self._changed({(model, version)})
        return pairs, evaluations

    def forwarded(self, forwards: list[Forward]) -> None:
        """Events forwarded to the internal topic: labels of their time wait until they
        are read back from it (their source partitions hold the watermark back)."""
        if self.joins.topics and forwards:
            self._partitions.in_flight.sent(forwards, self._source.assignment())

    def fold(self, polled: Polled, label_polled: Polled, pairs: list[Joined]) -> LabelFold:
        """After the batch's inference records (``polled``) are monitored (their inline
        ``pairs`` joined): fold its label records (``label_polled``) as far as every
        partition is read, and every pair into performance."""
        # This batch is read: a partition it read to its end holds no label back.
        read = next_offsets(polled) | next_offsets(label_polled)
        label_pairs, bad, turned_away = self._labels(label_polled, read)
        pairs = pairs + label_pairs
        evaluations = self._fold_pairs(pairs)
        last = label_polled or polled
        if self.joins.topics and last:
            # Due once every label up to then is read: both kinds of partition are past it.
            verdicts = self.joins.sweep(self._read_past_ms(read))
            record = next(reversed(last.values()))[-1]  # the batch's last record
            evaluations += self._performance.coverage(verdicts, record)
            self._changed({(model, version) for model, version, _ in verdicts})
        return LabelFold(pairs, bad, evaluations, turned_away)

    def _labels(
        self, label_polled: Polled, read: dict[TopicPartition, int]
    ) -> tuple[list[Joined], list[BadRecord], dict[TopicPartition, int]]:
        """Fold the label records whose predictions are in; ``read``: the next offsets of
        the batch's partitions (updated where the full gate turned records away: those
        partitions are read again from there). Also returns those offsets: not processed."""
        if not self.joins.topics:
            return [], [], {}
        again = self.joins.hold(label_polled)
        self._turn_away(again, read)
        pairs, bad = self.joins.fold(self._read_past_ms(read))
        # Labels of one record time filling the gate wait for their own partition to be
        # read past that time, which the full gate never lets it do: without this, label
        # processing would stop for good (`LabelGate.unstick`).
        stuck = self._stuck(read)
        if stuck is not None:
            forced, refused, made_way = self.joins.unstick(*stuck)
            pairs += forced
            bad += refused
            self._turn_away(made_way, read)
            again.update(made_way)  # before the records the gate turned away in `hold`
        self._reopen(read)
        return pairs, bad, again

    def _turn_away(
        self, again: Mapping[TopicPartition, int], read: dict[TopicPartition, int]
    ) -> None:
        """Read these label partitions again from these offsets, once the gate has room."""
        for tp, offset in again.items():
            self._source.seek(tp, offset)
        if again:  # not fetched again and again while the gate is full
            self._source.pause(again)
        read.update(again)

    def _stuck(
        self, read: Mapping[TopicPartition, int]
    ) -> tuple[float, list[TopicPartition]] | None:
        """``(gate time, label partitions not read past it)`` when the full gate is stuck
        (`LabelGate.unstick`), else None: nothing held can be folded, the inference
        partitions are read past the oldest held gate time, the label partitions up to it
        only, and each of those was turned away (no room to read it further)."""
        gate = self.joins.gate
        oldest = gate.oldest_ms()
        if not gate.turned_away or oldest is None or not oldest < self._watermark_ms(read):
            return None
        seen = self.joins.seen_ms
        marks = {tp: seen.get(tp, -math.inf) for tp in self._unfinished(read, labels=True)}
        if min(marks.values(), default=math.inf) != oldest:
            return None
        open_partitions = [tp for tp, mark in marks.items() if mark == oldest]
        if not all(tp in gate.turned_away for tp in open_partitions):
            return None  # one of them can still be read past it
        return oldest, open_partitions

    def _reopen(self, read: Mapping[TopicPartition, int]) -> None:
        """Resume the label partitions the full gate turned away once it has room for
        them: a quarter of it free, or any room when nothing held can be folded until they
        are read further (the label partitions hold the watermark back)."""
        gate = self.joins.gate
        if not gate.turned_away:
            return
        if not gate.roomy():
            stalled = not self._releasable() and self._watermark_ms(
                read, labels=True
            ) <= self._watermark_ms(read)
            if not (stalled and gate.has_room()):
                return
        self._source.resume(gate.turned_away)
        gate.turned_away.clear()

    def due(self) -> bool:
        """Whether held label records may be folded now, or the full gate is stuck (an idle
        poll does it)."""
        return self._releasable() or self._stuck({}) is not None

    def _releasable(self) -> bool:
        """Whether held label records (or deferred joins) are before every partition's
        read position."""
        oldest = self.joins.oldest_ms()
        return oldest is not None and oldest < self._read_past_ms({})

    def _read_past_ms(self, read: Mapping[TopicPartition, int]) -> float:
        """Record time every partition, inference and label, is read past."""
        return min(self._watermark_ms(read), self._watermark_ms(read, labels=True))

    def _watermark_ms(self, read: Mapping[TopicPartition, int], labels: bool = False) -> float:
        """Record time every inference partition of this consumer is read past (with
        ``labels``: every label partition): a label older than it has its prediction in a
        join store, if it has one here. A partition read to its end (``read``: the next
        offsets of the batch at hand) holds nothing back; an input partition whose forwards
        to the repartition topic are not read back yet holds it at the oldest one's time."""
        seen = self.joins.seen_ms
        mark = min(
            (seen.get(tp, -math.inf) for tp in self._unfinished(read, labels)), default=math.inf
        )
        if not labels:
            in_flight = self._partitions.in_flight
            for tp in self._source.assignment():
                if tp.topic not in self.joins.topics:
                    mark = min(mark, in_flight.oldest_ms(tp))
        return mark

    def _unfinished(self, read: Mapping[TopicPartition, int], labels: bool) -> list[TopicPartition]:
        """The inference partitions (with ``labels``: label partitions) of this consumer
        not read to their end (``read``: the next offsets of the batch at hand)."""
        ends = self._source.end_offsets()
        out = []
        for tp in self._source.assignment():
            if (tp.topic in self.joins.topics) != labels:
                continue
            done = read.get(tp) or self._partitions.next_offset(tp, labels)
            end = ends.get(tp)
            if end is None or done < end:
                out.append(tp)
        return out

    def offsets(
        self, label_polled: Polled, turned_away: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Next offsets of the label partitions, once the batch is delivered: a held record
        is not processed yet, nor one the full gate turned away."""
        if label_polled:
            self._partitions.labels_read(next_offsets(label_polled))
        self._partitions.labels_read(turned_away)  # by `hold`, or by `unstick` on an idle poll
        out = {}
        for tp, next_offset in self._partitions.label_next().items():
            held = self.joins.first_held(tp)
            out[tp] = next_offset if held is None else held
        return out

    def _fold_pairs(self, pairs: list[Joined]) -> list[Evaluation]:
        """Fold joined pairs into their versions' performance."""
        if not pairs:
            return []
        evaluations = self._performance.update(pairs, self.joins.counts)
        self._changed({(pair.model, pair.version) for pair in pairs})
        return evaluations

    def _changed(self, keys: set[tuple[str, str]]) -> None:
        """These versions' performance state changed: their partitions are checkpointed
        even if no offset of theirs moved."""
        for key in keys:
            monitor = self._monitor.versions.get(key)
            if monitor is not None:
                self._partitions.changed(monitor.owner)

    def report(self, metrics: DaemonMetrics, pairs: list[Joined]) -> None:
        """The batch's join counts, label delays and what waits, to the metrics."""
        if self.joins.topics or pairs:
            metrics.labels(
                self.joins.take_counts(),
                [p.label_time - p.prediction_time for p in pairs],
                self.joins.pending(),
                self.joins.gate.held(),
            )


__all__ = ["LabelFlow", "LabelFold"]
