"""Where a model version's recent rows were read: the offsets and event times a window's
evidence names, kept as arrays (`RowLog`), and the places of rows held while a reference
is calibrated (`Places`)."""

from __future__ import annotations

import functools
import itertools
import operator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import NonNegativeInt

from connectors.stream import Record, one_partition
from detectors.detection import FloatArray, State
from monitord.state import StateModel


@dataclass(frozen=True)
class OffsetRange:
    topic: str
    partition: int
    first_offset: int
    last_offset: int


class RowLogState(StateModel):
    """A row log's stored state: where its first row is, and the topics its rows came from
    (the rows themselves are arrays)."""

    first_row: NonNegativeInt
    topics: tuple[str, ...]  # the row arrays hold indexes into this


class RowLog:
    """Topic, partition, offset and event time of the recent stream rows, to map windows to
    data. Columns, not the records: a record holds its event's bytes (1.4 KB an event at 50
    features), which a window's evidence never reads."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self.first_row = 0
        self.topics: list[str] = []  # the topic column holds indexes into this
        self._topic_index: dict[str, int] = {}
        self.topic = np.empty(0, dtype=np.int32)
        self.partition = np.empty(0, dtype=np.int32)
        self.offset = np.empty(0, dtype=np.int64)
        self.times = np.empty(0)

    def __len__(self) -> int:
        return int(self.offset.size)

    def extend(self, records: list[Record], times: FloatArray) -> None:
        self.trim()
        n = len(records)
        offsets = np.fromiter(map(_OFFSET, records), np.int64, n)
        if one_partition(records):  # the usual batch: two constants, no pass per record
            topics = np.full(n, self._index(records[0].topic), dtype=np.int32)
            partitions = np.full(n, records[0].partition, dtype=np.int32)
        else:
            topics = np.fromiter((self._index(r.topic) for r in records), np.int32, n)
            partitions = np.fromiter(map(_PARTITION, records), np.int32, n)
        self.topic = np.concatenate([self.topic, topics])
        self.partition = np.concatenate([self.partition, partitions])
        self.offset = np.concatenate([self.offset, offsets])
        self.times = np.concatenate([self.times, times])

    def _index(self, topic: str) -> int:
        found = self._topic_index.get(topic)
        if found is None:
            found = self._topic_index[topic] = len(self.topics)
            self.topics.append(topic)
        return found

    def trim(self) -> None:
        """Forget all but the last ``keep`` rows, the most a later window reaches back."""
        drop = max(0, len(self) - self._keep)
        if drop:
            self.first_row += drop
            self.topic, self.partition = self.topic[drop:], self.partition[drop:]
            self.offset, self.times = self.offset[drop:], self.times[drop:]

    def span(
        self, first_row: int, last_row: int
    ) -> tuple[tuple[OffsetRange, ...], Record, FloatArray]:
        """Rows ``first_row`` to ``last_row``: each partition's offsets from its first row
        to its last, where the last row came from (a record without key, value nor time)
        and the event times."""
        lo = max(first_row - self.first_row, 0)
        hi = last_row - self.first_row + 1
        topic, partition, offset = self.topic[lo:hi], self.partition[lo:hi], self.offset[lo:hi]
        last = Record(self.topics[topic[-1]], int(partition[-1]), int(offset[-1]), None, None, 0)
        return _offset_ranges(self.topics, topic, partition, offset), last, self.times[lo:hi]

    def snapshot(self) -> tuple[RowLogState, State]:
        # Only where each row came from is kept: a window's evidence is its offsets.
        used = sorted({self.topics[i] for i in np.unique(self.topic).tolist()})
        remap = np.zeros(max(len(self.topics), 1), dtype=np.int32)
        for i, name in enumerate(self.topics):
            if name in used:
                remap[i] = used.index(name)
        arrays: State = {
            "log/topic": remap[self.topic],
            "log/partition": self.partition.copy(),
            "log/offset": self.offset.copy(),
            "log/time": self.times.copy(),
        }
        return RowLogState(first_row=self.first_row, topics=tuple(used)), arrays

    def restore(self, state: RowLogState, arrays: State) -> None:
        topic = np.asarray(arrays["log/topic"])
        times = np.asarray(arrays["log/time"], dtype=np.float64)
        indexes = topic.dtype.kind in "iu" and (
            not topic.size or 0 <= topic.min() <= topic.max() < len(state.topics)
        )
        if not indexes:
            raise ValueError(f"row log: topics are not indexes into its {len(state.topics)} topics")
        partition = np.asarray(arrays["log/partition"])
        offset = np.asarray(arrays["log/offset"])
        if not times.shape == topic.shape == partition.shape == offset.shape:
            raise ValueError(f"row log: {topic.size} rows but {times.size} event times")
        self.first_row = state.first_row
        self.topics = list(state.topics)
        self._topic_index = {name: i for i, name in enumerate(self.topics)}
        self.topic = topic.astype(np.int32)
        self.partition = partition.astype(np.int32)
        self.offset = offset.astype(np.int64)
        self.times = times


def _offset_ranges(
    topics: list[str],
    topic: npt.NDArray[np.int32],
    partition: npt.NDArray[np.int32],
    offset: npt.NDArray[np.int64],
) -> tuple[OffsetRange, ...]:
    """Each partition's range of rows, from the offset of its first row to its last's
    (a partition's rows are in offset order), by topic name and partition."""
    if (topic == topic[0]).all() and (partition == partition[0]).all():
        return (OffsetRange(topics[topic[0]], int(partition[0]), int(offset[0]), int(offset[-1])),)
    keys = topic.astype(np.int64) << 32 | partition.astype(np.int64)
    found, first = np.unique(keys, return_index=True)
    last = keys.size - 1 - np.unique(keys[::-1], return_index=True)[1]
    ranges = [
        OffsetRange(topics[int(key >> 32)], int(key & 0xFFFFFFFF), int(offset[f]), int(offset[g]))
        for key, f, g in zip(found.tolist(), first.tolist(), last.tolist(), strict=True)
    ]
    return tuple(sorted(ranges, key=lambda r: (r.topic, r.partition)))


_OFFSET, _PARTITION = operator.attrgetter("offset"), operator.attrgetter("partition")
_TOPIC = operator.attrgetter("topic")
_NEW_RECORD = functools.partial(tuple.__new__, Record)


class Places:
    """Where held records were read, as arrays (no object per record: rows held by the
    hundred thousand, then freed, would leave the small-object heap fragmented), and
    back as records without key, value nor time (as `_RowLog.span` gives): all that
    detection reads of them. Not the records: each holds its event's bytes."""

    def __init__(self, records: list[Record]) -> None:
        n = len(records)
        self.topics = tuple(map(_TOPIC, records))  # one array of references to few strings
        self.partitions = np.fromiter(map(_PARTITION, records), np.int32, n)
        self.offsets = np.fromiter(map(_OFFSET, records), np.int64, n)

    @property
    def nbytes(self) -> int:
        return 8 * len(self.topics) + self.partitions.nbytes + self.offsets.nbytes

    def records(self) -> list[Record]:
        none = itertools.repeat(None)
        fields = zip(
            self.topics,
            self.partitions.tolist(),
            self.offsets.tolist(),
            none,
            none,
            itertools.repeat(0),
            itertools.repeat(()),
        )
        return list(map(_NEW_RECORD, fields))


__all__ = ["OffsetRange", "Places", "RowLog", "RowLogState"]
