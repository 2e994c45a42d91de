"""Where each partition the daemon reads stands: one `Partition` each, in `Partitions`.

Worked example: partition ``events[3]`` delivers offsets 40, 41 and 42. Once they are
folded, ``processed`` is 43 (the NEXT offset to read, as Kafka commits it). A checkpoint
storing that state sets ``checkpointed`` and ``uncommitted`` to 43, and the commit that
follows clears ``uncommitted``. The next checkpoint stores the partition again only if it
moved: ``processed`` past 43, or ``changed`` (a late label changed a version's state).
Revocation forgets the partition at once; restoring sets both offsets to the checkpoint's,
and commits it once the log is seen to reach it (`in_log`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

from connectors.stream import OffsetReset, Polled, TopicPartition
from monitord.repartition import InFlight, SourceOffsets

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Partition:
    """The offsets of one partition and whether its state is loaded."""

    processed: int | None = None  # next offset after the folded records
    checkpointed: int | None = None  # next offset the stored state covers
    uncommitted: int | None = None  # checkpointed, commit pending
    changed: bool = False  # state changed, offset maybe not: checkpoint it anyway
    restored: bool = True  # False: assigned, but its checkpoint could not be loaded yet
    label_next: int | None = None  # a label partition: the next offset to poll
    restored_at: int | None = None  # restored there, not committed since: see `in_log`


class Partitions:
    """Every partition's `Partition`, the rebalances seen, and (with ``kafka.repartition``)
    the source offsets folded into each internal partition and the forwards in flight to
    the ``internal_partitions`` of ``internal`` topic (0: none waited for)."""

    def __init__(self, internal: str = "", internal_partitions: int = 0) -> None:
        self._partitions: dict[TopicPartition, Partition] = {}
        self.sources = SourceOffsets()
        self.in_flight = InFlight(self.sources, internal, internal_partitions)
        self.generation = 0  # rebalances seen, to drop records held across one
        self.moved: set[TopicPartition] = set()  # what a rebalance moved since the batch began

    def _get(self, tp: TopicPartition) -> Partition:
        found = self._partitions.get(tp)
        if found is None:
            found = self._partitions[tp] = Partition()
        return found

    def batch_started(self) -> int:
        """A batch begins: no partition has moved during it yet; the generation it began in."""
        self.moved = set()
        return self.generation

    def rebalanced(self, partitions: set[TopicPartition]) -> None:
        self.generation += 1
        self.moved |= partitions

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Revoked: nothing of these partitions is kept."""
        partitions = list(partitions)
        for tp in partitions:
            self._partitions.pop(tp, None)
            self.sources.drop(tp)
        self.in_flight.drop(partitions)

    def processed(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._get(tp).processed = offset

    def next_offset(self, tp: TopicPartition, labels: bool = False) -> int:
        """The next offset to read of an inference partition (``labels``: of a label one)."""
        found = self._partitions.get(tp)
        if found is None:
            return 0
        offset = found.label_next if labels else found.processed
        return 0 if offset is None else offset

    def changed(self, tp: TopicPartition) -> None:
        self._get(tp).changed = True

    def moved_since_checkpoint(
        self, partitions: set[TopicPartition] | None, changed: set[TopicPartition]
    ) -> dict[TopicPartition, int]:
        """Next offsets of the ``partitions`` (None: all) processed past their checkpoint, or
        whose state changed (``changed``: also those the label join changed)."""
        return {
            tp: part.processed
            for tp, part in self._partitions.items()
            if part.processed is not None
            and (partitions is None or tp in partitions)
            and (part.checkpointed != part.processed or part.changed or tp in changed)
        }

    def checkpointed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Stored up to ``offsets``: unchanged since, to be committed."""
        for tp, offset in offsets.items():
            part = self._get(tp)
            part.checkpointed = part.uncommitted = offset
            part.restored_at = None  # committed with it
            part.changed = False

    def uncommitted(self) -> dict[TopicPartition, int]:
        return {
            tp: part.uncommitted
            for tp, part in self._partitions.items()
            if part.uncommitted is not None
        }

    def committed(self) -> None:
        for part in self._partitions.values():
            part.uncommitted = None

    def in_log(self, ends: Mapping[TopicPartition, int]) -> bool:
        """Mark for commit the restored offsets the log is known to reach (``ends``: each
        partition's end as last read); whether any was.

        A kill between storing a checkpoint and committing it leaves the committed offset
        behind the checkpoint's; with nothing more to read, no later checkpoint would
        commit. An offset beyond the end (a broker that lost its log) is never committed:
        `reset` moves it first."""
        marked = False
        for tp, part in self._partitions.items():
            if part.restored_at is not None and part.restored_at <= ends.get(tp, -1):
                if part.uncommitted is None:
                    part.uncommitted = part.restored_at
                part.restored_at = None
                marked = True
        return marked

    def restored(self, tp: TopicPartition, next_offset: int, label: bool) -> None:
        """A checkpoint covering everything before ``next_offset`` is loaded."""
        part = self._get(tp)
        part.processed = part.checkpointed = part.restored_at = next_offset
        if label:
            part.label_next = next_offset

    def loaded(self, tp: TopicPartition, loaded: bool) -> None:
        """Whether the partition's checkpoint (or its absence) could be read."""
        if loaded:
            found = self._partitions.get(tp)
            if found is not None:
                found.restored = True
        else:
            self._get(tp).restored = False

    @property
    def unrestored(self) -> set[TopicPartition]:
        return {tp for tp, part in self._partitions.items() if not part.restored}

    def reset(self, move: OffsetReset) -> None:
        """The source moved a partition whose offset lay outside the log."""
        log_reset(move)
        part = self._partitions.get(move.partition)
        if part is None:
            return
        if part.processed is not None:
            part.processed = move.reset_to  # checkpointed next
        part.uncommitted = part.restored_at = None  # never commit the offset out of range

    def retired(self, tp: TopicPartition) -> None:
        """A version of ``tp`` retired: its next checkpoint, due now, no longer holds it."""
        found = self._partitions.get(tp)
        if found is not None:
            found.checkpointed = None

    def lag(self, ends: Mapping[TopicPartition, int]) -> dict[tuple[str, int], int]:
        """Records not processed yet, per partition processed so far."""
        lag = {}
        for tp, end in ends.items():
            found = self._partitions.get(tp)
            if found is not None and found.processed is not None:
                lag[(tp.topic, tp.partition)] = max(0, end - found.processed)
        return lag

    def labels_read(self, offsets: Mapping[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._get(tp).label_next = offset

    def label_next(self) -> dict[TopicPartition, int]:
        return {
            tp: part.label_next
            for tp, part in self._partitions.items()
            if part.label_next is not None
        }

    def rewind(self, held: Polled, assigned: Set[TopicPartition]) -> dict[TopicPartition, int]:
        """Where to read again the partitions of ``held`` (a batch dropped because a
        rebalance ran while it was topped up) that the rebalance left alone; the moved ones
        were positioned by the rebalance callbacks."""
        return {
            tp: offset
            for tp, offset in first_offsets(held).items()
            if tp in assigned and tp not in self.moved
        }


def next_offsets(polled: Polled) -> dict[TopicPartition, int]:
    """Per partition of ``polled``, the next offset after its records."""
    # Commit the NEXT offset to read: having processed 40..42 of a partition, commit 43.
    # A partition's records are in offset order, so its last one is the highest.
    return {tp: records[-1].offset + 1 for tp, records in polled.items()}


def first_offsets(polled: Polled) -> dict[TopicPartition, int]:
    """Per partition of ``polled``, the offset of its first record."""
    return {tp: records[0].offset for tp, records in polled.items()}


def log_reset(move: OffsetReset) -> None:
    """Say which offset lay outside the log, the likely cause, and where reading goes on."""
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


__all__ = ["Partition", "Partitions", "first_offsets", "log_reset", "next_offsets"]
