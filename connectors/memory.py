"""In-memory `Source` and `Sink`: the real loop runs end to end in tests, no broker, no mocks.

Both are stricter than Kafka where Kafka would hide a bug: `MemorySource.commit` refuses
offsets that were never polled, move backwards, or belong to a partition not assigned.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from connectors.stream import (
    ConnectorError,
    DeliveryFailed,
    Headers,
    OffsetReset,
    Polled,
    RebalanceListener,
    Record,
    TopicPartition,
    pause_assigned,
    poll_in_turn,
    revoke_on_close,
)


class MemorySource:
    """A replayable log held in memory, read as if by one consumer-group member.

    Like Kafka, partitions are assigned (and the listener's `on_assigned` called) inside the
    first `poll()`;
    `revoke()` / `assign()` schedule a rebalance for the next `poll()`, and a partition is
    re-read from its committed offset when it comes back. `poll` never waits.
    """

    def __init__(
        self,
        records: Iterable[Record] = (),
        *,
        committed: Mapping[TopicPartition, int] | None = None,
    ) -> None:
        self._records: dict[TopicPartition, list[Record]] = {}
        self._offsets: dict[TopicPartition, list[int]] = {}  # parallel to _records, for bisect
        self._target: set[TopicPartition] = set()  # what the next poll() will have assigned
        self._assigned: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}  # next offset to return
        self._paused: set[TopicPartition] = set()
        self._committed: dict[TopicPartition, int] = dict(committed or {})
        self._commits: list[dict[TopicPartition, int]] = []
        self._listener: RebalanceListener | None = None
        self._turn = 0
        self._closed = False
        self.extend(records)

    def append(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int = 0,
        headers: Sequence[tuple[str, bytes]] = (),
        timestamp_ms: int = 0,
    ) -> Record:
        """Add one record at the partition's next offset and return it."""
        tp = TopicPartition(topic, partition)
        offsets = self._offsets.get(tp)
        offset = offsets[-1] + 1 if offsets else 0
        record = Record(topic, partition, offset, key, value, timestamp_ms, tuple(headers))
        self.extend([record])
        return record

    def extend(self, records: Iterable[Record]) -> None:
        """Add records carrying their own offsets; gaps are allowed, as in a compacted topic."""
        for record in records:
            tp = record.topic_partition
            if tp not in self._records:
                self._records[tp] = []
                self._offsets[tp] = []
                self._target.add(tp)
            offsets = self._offsets[tp]
            if offsets and record.offset <= offsets[-1]:
                raise ValueError(
                    f"records: offset {record.offset} in {tp} does not follow {offsets[-1]}; "
                    "offsets must increase within a partition"
                )
            self._records[tp].append(record)
            offsets.append(record.offset)

    def listen(self, listener: RebalanceListener) -> None:
        self._listener = listener

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        self._check_open()
        if max_records < 1:
            raise ValueError(f"max_records: must be positive, got {max_records}")
        self._rebalance()
        self._turn += 1
        return poll_in_turn(self._assigned, self._turn - 1, self._paused, max_records, self._read)

    def _read(self, tp: TopicPartition, room: int) -> list[Record]:
        first = bisect_left(self._offsets[tp], self._positions[tp])
        chunk = self._records[tp][first : first + room]
        if chunk:
            self._positions[tp] = chunk[-1].offset + 1
        return chunk

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record next-to-read offsets (see `Source.commit`); all or nothing."""
        self._check_open()
        for tp, offset in offsets.items():
            if tp not in self._assigned:
                raise ValueError(f"offsets: {tp} is not assigned to this source")
            if offset > self._positions[tp]:
                raise ValueError(
                    f"offsets: {tp}={offset} is beyond the next unread offset "
                    f"{self._positions[tp]}; committing records never polled would lose them"
                )
            if offset < self._committed.get(tp, 0):
                raise ValueError(
                    f"offsets: {tp}={offset} moves back from the committed {self._committed[tp]}"
                )
        self._committed.update(offsets)
        self._commits.append(dict(offsets))

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._assigned)

    def end_offsets(self) -> dict[TopicPartition, int]:
        return {
            tp: (self._offsets[tp][-1] + 1 if self._offsets[tp] else 0) for tp in self._assigned
        }

    def probe(self, timeout_s: float) -> None:
        """Always answers: memory has no outage (see `Source.probe`)."""
        self._check_open()

    def reset_positions(self) -> list[OffsetReset]:
        """Never moves: a memory log keeps every record it was given."""
        return []

    def missing_topics(self) -> tuple[str, ...]:
        """None: a memory log holds whatever topics its records name."""
        return ()

    def unreachable(self) -> str | None:
        """Always reachable: memory has no outage."""
        return None

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._check_open()
        if partition not in self._assigned:
            raise ValueError(f"partition: {partition} is not assigned to this source")
        if offset < 0:
            raise ValueError(f"offset: must be >= 0, got {offset}")
        self._positions[partition] = offset

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        pause_assigned(self._paused, self._assigned, partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused -= set(partitions)

    def paused(self) -> frozenset[TopicPartition]:
        """The partitions `pause`d and not resumed (for tests)."""
        return frozenset(self._paused)

    def close(self) -> None:
        """Give up every partition (telling the listener, as Kafka does); idempotent."""
        if self._closed:
            return
        try:
            revoke_on_close(self._listener, self._assigned)
        finally:
            self._closed = True
            self._assigned = set()

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Take partitions away at the next `poll()`, as a rebalance would."""
        self._target.difference_update(partitions)

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Hand partitions (back) at the next `poll()`; reading resumes at the committed offset."""
        self._target.update(partitions)

    @property
    def committed(self) -> dict[TopicPartition, int]:
        return dict(self._committed)

    @property
    def commits(self) -> list[dict[TopicPartition, int]]:
        """Every successful `commit()` call's offsets, oldest first."""
        return [dict(c) for c in self._commits]

    @property
    def drained(self) -> bool:
        """True when no rebalance is pending and every assigned partition is read to its end."""
        return self._target == self._assigned and all(
            not self._offsets[tp] or self._positions[tp] > self._offsets[tp][-1]
            for tp in self._assigned
        )

    def _rebalance(self) -> None:
        revoked = self._assigned - self._target
        if revoked:
            # Called while still owned, so the callback may commit what it has processed.
            if self._listener is not None:
                self._listener.on_revoked(set(revoked))
            self._assigned -= revoked
            self._paused -= revoked
            for tp in revoked:
                del self._positions[tp]
        added = self._target - self._assigned
        if added:
            self._assigned |= added
            for tp in added:
                self._positions[tp] = self._committed.get(tp, 0)
            if self._listener is not None:
                self._listener.on_assigned(set(added))

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectorError("MemorySource is closed")


@dataclass(frozen=True, slots=True)
class Message:
    """One message handed to a `MemorySink`."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers = ()
    timestamp_ms: int | None = None


class MemorySink:
    """Collects messages; `flush` delivers them, or fails as told by `fail_next_flush`."""

    def __init__(self) -> None:
        self._pending: list[Message] = []
        self._delivered: list[Message] = []
        self._send_failures: deque[ConnectorError] = deque()
        self._flush_failures: deque[ConnectorError] = deque()
        self._closed = False
        self.flushes = 0

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        timestamp_ms: int | None = None,
    ) -> None:
        self._check_open()
        if self._send_failures:
            raise self._send_failures.popleft()
        self._pending.append(Message(topic, key, value, tuple(headers), timestamp_ms))

    def flush(self, timeout_s: float) -> None:
        """Deliver everything pending; an injected failure drops it all, as a broker loss can,
        or keeps it in flight if the failure says so (`DeliveryFailed.pending`)."""
        self._check_open()
        self.flushes += 1
        if self._flush_failures:
            error = self._flush_failures.popleft()
            if not (isinstance(error, DeliveryFailed) and error.pending):
                self._pending = []
            raise error
        pending, self._pending = self._pending, []
        self._delivered.extend(pending)

    def close(self) -> None:
        if self._closed:
            return
        self._delivered.extend(self._pending)
        self._pending = []
        self._closed = True

    def fail_next_send(self, error: ConnectorError | None = None) -> None:
        """Make the next `send()` raise `error` (default: non-retriable `DeliveryFailed`)."""
        self._send_failures.append(error or DeliveryFailed("injected send failure"))

    def fail_next_flush(self, error: ConnectorError | None = None) -> None:
        """Make the next `flush()` lose its messages and raise `error` (default: retriable)."""
        self._flush_failures.append(
            error or DeliveryFailed("injected flush failure", retriable=True)
        )

    def messages(self, topic: str | None = None) -> list[Message]:
        """Delivered messages, oldest first, optionally only those for `topic`."""
        return [m for m in self._delivered if topic is None or m.topic == topic]

    @property
    def pending(self) -> int:
        """How many messages were sent but not yet flushed."""
        return len(self._pending)

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectorError("MemorySink is closed")


__all__ = ["MemorySink", "MemorySource", "Message"]
