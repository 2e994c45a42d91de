"""`FeedSource`: a `Source` reading its partitions lazily from record iterators.

It polls exactly as `connectors.memory.MemorySource` would over the same records (the same
partition rotation, the same batches), but holds only the records between a partition's
committed offset and how far it has been read: a file larger than memory replays as a topic.
Seeking back is possible down to the committed offset, as far as anything is kept.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Mapping
from itertools import islice

from connectors.stream import (
    OffsetReset,
    Polled,
    RebalanceListener,
    Record,
    TopicPartition,
    pause_assigned,
    poll_in_turn,
    revoke_on_close,
)

_OFFSET = operator.attrgetter("offset")


class _Feed:
    """One partition: its records from ``base`` on, and the iterator of the rest."""

    def __init__(self, records: Iterator[Record], end: int) -> None:
        self.records, self.end = records, end
        self.kept: list[Record] = []  # offsets base, base + 1, ...
        self.base = 0
        self.position = 0

    def read(self, room: int) -> list[Record]:
        """Up to ``room`` records from the position on (pulled from the iterator as needed)."""
        wanted = min(self.position + room, self.end)
        have = self.base + len(self.kept)
        if have < wanted:
            pulled = list(islice(self.records, wanted - have))
            if len(pulled) < wanted - have:
                raise ValueError(
                    f"records: {self.end - have - len(pulled)} fewer records than "
                    f"the end offset {self.end} announced"
                )
            offsets = list(map(_OFFSET, pulled))
            if offsets != list(range(have, wanted)):
                at = next(i for i, o in enumerate(offsets) if o != have + i)
                raise ValueError(f"records: offset {offsets[at]} where {have + at} was due")
            self.kept += pulled
        chunk = self.kept[self.position - self.base : wanted - self.base]
        self.position += len(chunk)
        return chunk

    def forget_before(self, offset: int) -> None:
        drop = min(offset, self.base + len(self.kept)) - self.base
        if drop > 0:
            del self.kept[:drop]
            self.base += drop


class FeedSource:
    """Partitions read from iterators of records with offsets 0, 1, ... up to a known end."""

    def __init__(self, feeds: Mapping[TopicPartition, tuple[Iterator[Record], int]]) -> None:
        self._feeds = {tp: _Feed(records, end) for tp, (records, end) in feeds.items()}
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._committed: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._turn = 0
        self._closed = False
        self._listener: RebalanceListener | None = None

    def listen(self, listener: RebalanceListener) -> None:
        self._listener = listener

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        self._check_open()
        if max_records < 1:
            raise ValueError(f"max_records: must be positive, got {max_records}")
        if not self._assigned:  # assigned at the first poll, as Kafka does
            self._assigned = frozenset(self._feeds)
            if self._listener is not None and self._assigned:
                self._listener.on_assigned(set(self._assigned))
        self._turn += 1
        # As MemorySource polls: the same polls, the same batches.
        return poll_in_turn(self._feeds, self._turn - 1, self._paused, max_records, self._read)

    def _read(self, tp: TopicPartition, room: int) -> list[Record]:
        return self._feeds[tp].read(room)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record next-to-read offsets; records before them are let go."""
        self._check_open()
        for tp, offset in offsets.items():
            feed = self._feeds.get(tp)
            if feed is None or tp not in self._assigned:
                raise ValueError(f"offsets: {tp} is not assigned to this source")
            if offset > feed.position:
                raise ValueError(
                    f"offsets: {tp}={offset} is beyond the next unread offset {feed.position}"
                )
            if offset < self._committed.get(tp, 0):
                raise ValueError(
                    f"offsets: {tp}={offset} moves back from the committed {self._committed[tp]}"
                )
        for tp, offset in offsets.items():
            self._committed[tp] = offset
            self._feeds[tp].forget_before(offset)

    def assignment(self) -> frozenset[TopicPartition]:
        return self._assigned

    def end_offsets(self) -> dict[TopicPartition, int]:
        return {tp: self._feeds[tp].end for tp in self._assigned}

    def probe(self, timeout_s: float) -> None:
        self._check_open()

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._check_open()
        feed = self._feeds.get(partition)
        if feed is None or partition not in self._assigned:
            raise ValueError(f"partition: {partition} is not assigned to this source")
        if offset < feed.base:
            raise ValueError(
                f"offset: {offset} in {partition} is before the committed {feed.base}; a feed "
                "cannot read its records again"
            )
        feed.position = offset

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        pause_assigned(self._paused, self._assigned, partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._paused -= set(partitions)

    def reset_positions(self) -> list[OffsetReset]:
        return []

    def missing_topics(self) -> tuple[str, ...]:
        return ()

    def unreachable(self) -> str | None:
        return None

    def positions(self) -> dict[TopicPartition, int]:
        """Next offset to read per partition."""
        return {tp: feed.position for tp, feed in self._feeds.items()}

    def close(self) -> None:
        """Give up every partition (telling the listener); idempotent. The iterators are
        left to their owner."""
        if self._closed:
            return
        try:
            revoke_on_close(self._listener, self._assigned)
        finally:
            self._closed = True
            self._assigned = frozenset()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("source is closed")


__all__ = ["FeedSource"]
