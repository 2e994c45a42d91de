"""The label gate: label records held until the inference partitions are read past them.

A label record is folded only once every partition of this consumer, inference and label,
is read past the label's record time (or read to its end), merged across label partitions
by time, so its prediction, written before it, is already in the join store: a restart or
a slow fetch joins the same pairs in the same order (`monitord.labels`).
"""

from __future__ import annotations

import bisect
import heapq
import math
import operator
from collections import deque
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from connectors.stream import Polled, Record, TopicPartition
from monitord.clock import now

MAX_HELD_BYTES = 64 * 1024 * 1024
"""Most a consumer holds of label records read ahead of their predictions."""
HELD_COST = 300
"""Bytes a held record costs besides its value (the record tuple, its deque slot)."""

_VALUE, _TIMESTAMP = operator.itemgetter(4), operator.itemgetter(5)  # of a `Record`
_HELD_GATE, _HELD_RECORD = operator.itemgetter(0), operator.itemgetter(1)  # of a held pair


def release_position(held: tuple[float, Record]) -> tuple[float, str, int, int]:
    """A held record's place in release order: gate time, topic, partition, offset."""
    gate, record = held
    return gate, record.topic, record.partition, record.offset


def _value_sizes(records: list[Record]) -> npt.NDArray[np.int64]:
    """Bytes of each record's value (a tombstone: none)."""
    values = list(map(_VALUE, records))
    # A truth test a value, not `None in values`: comparing bytes to None falls back
    # through both types' __eq__, three times as slow.
    if not all(values):
        values = [value or b"" for value in values]
    return np.fromiter(map(len, values), np.int64, len(values))


def _fitting(totals: npt.NDArray[np.int64], room: int) -> int:
    """How many records fit in ``room`` bytes: those whose running total is within it."""
    return int(np.searchsorted(totals, room, side="right"))


class LabelGate:
    """Holds label records until the inference partitions are read past their time.

    A held record's *gate time* is the latest believable record time of its partition so
    far (a record time after the wall clock plus ``max_ahead_s``, or none, is not
    believed), so gate times never go back within a partition and one record stamped in
    the year 2100 cannot hold back those behind it. `release` hands out, merged across
    partitions by (gate time, topic, partition, offset), the records before a watermark
    every partition is read past: the same records in the same order however the polls
    fell.

    What it holds is bounded in bytes (`MAX_HELD_BYTES` of record values and `HELD_COST`
    per record): past it, a partition's newer records are dropped unread and its position
    moved back to the first of them (the partition is `turned_away`, and the reader pauses
    it rather than fetch the same records again), to be read again once there is room. A
    partition's first record that does not fit turns away the other partitions' held records
    released after it (they would wait for it), and a record larger than the whole gate is
    held alone. Labels of one record time filling the whole gate are released by `unstick`.
    """

    def __init__(self, max_bytes: int = MAX_HELD_BYTES, max_ahead_s: float = 3600.0) -> None:
        self.max_bytes, self.max_ahead_s = max_bytes, max_ahead_s
        self._held: dict[TopicPartition, deque[tuple[float, Record]]] = {}
        self._bytes = 0
        self.gate_ms: dict[TopicPartition, float] = {}  # a partition's latest gate time
        self.turned_away: set[TopicPartition] = set()  # partitions to read again when roomy

    def hold(self, polled: Polled) -> dict[TopicPartition, int]:
        """Queue the ``polled`` records; returns label partitions to read again from an
        offset (the gate was full: their newest records are dropped, unread, to come
        again)."""
        again: dict[TopicPartition, int] = {}
        latest_ms = (now() + self.max_ahead_s) * 1000.0
        for tp, run in polled.items():
            if tp in again:  # its held records were turned away: read again from the first
                continue
            queue = self._held.setdefault(tp, deque())
            # What fits: the records whose running total of costs stays within the bound.
            totals = np.cumsum(_value_sizes(run) + HELD_COST)
            # Gate times: the running maximum of the believable record times (a record
            # stamped after the wall clock allows, or not at all, keeps its predecessor's).
            stamps = np.fromiter(map(_TIMESTAMP, run), np.float64, len(run))
            stamps[stamps > latest_ms] = -math.inf
            first = self.gate_ms.get(tp, -math.inf)
            gates = np.maximum.accumulate(np.concatenate(([first], stamps))).tolist()
            fits = _fitting(totals, self.max_bytes - self._bytes)
            if fits < len(run) and self._make_way(tp, gates[fits + 1], again):
                fits = _fitting(totals, self.max_bytes - self._bytes)
            # Nor records later than another partition's first one turned away: released
            # after it, they would be turned away to make way for it (filled, dropped, read
            # again at every poll).
            others = [ms for q, ms in self.gate_ms.items() if q in self.turned_away and q != tp]
            if others:
                fits = min(fits, max(0, bisect.bisect_right(gates, min(others)) - 1))
            if not fits and not self._bytes:
                fits = 1  # a record larger than the whole gate: held alone, not a stall
            # The first record turned away counts too: every record after it has its gate
            # time or a later one, so the partition is read up to it.
            self.gate_ms[tp] = gates[min(fits + 1, len(run))]
            if fits < len(run):
                again[tp] = run[fits].offset
                self.turned_away.add(tp)
            if fits:
                queue.extend(zip(gates[1 : fits + 1], run[:fits], strict=True))
                self._bytes += int(totals[fits - 1])
        return again

    def _make_way(
        self, tp: TopicPartition, gate_ms: float, again: dict[TopicPartition, int]
    ) -> bool:
        """Turn away the held records of other partitions released after ``tp``'s first
        record that does not fit (gate time ``gate_ms``): later gate times, and the same one
        in a later partition (`release` merges by gate time, topic, partition). A gate full
        of them would wait for ``tp`` without room to read it. Whether any went."""
        made = False
        for other, queue in self._held.items():
            # Records of a later partition are turned away from the same gate time on.
            after = (other.topic, other.partition) > (tp.topic, tp.partition)
            limit = math.nextafter(gate_ms, -math.inf) if after else gate_ms
            if other == tp or not queue or not queue[-1][0] > limit:
                continue
            while queue and queue[-1][0] > limit:
                first_gate, record = queue.pop()
                self._bytes -= HELD_COST + len(record.value or b"")
            again[other] = record.offset
            self.gate_ms[other] = first_gate  # read up to its first record turned away
            self.turned_away.add(other)
            made = True
        return made

    def release(self, watermark_ms: float) -> list[Record]:
        """Held records whose gate time is before ``watermark_ms``, merged in order."""
        return list(map(_HELD_RECORD, self.release_timed(watermark_ms)))

    def release_timed(self, watermark_ms: float) -> list[tuple[float, Record]]:
        """`release`, each record with its gate time."""
        ready: list[list[tuple[float, Record]]] = []
        for queue in self._held.values():
            if not queue or not queue[0][0] < watermark_ms:
                continue
            if queue[-1][0] < watermark_ms:  # all of it (a backlog read past at once)
                taken = list(queue)
                queue.clear()
            else:
                taken = []
                while queue[0][0] < watermark_ms:
                    taken.append(queue.popleft())
            self._bytes -= HELD_COST * len(taken) + sum(
                map(len, filter(None, map(_VALUE, map(_HELD_RECORD, taken))))
            )
            ready.append(taken)
        if len(ready) == 1:
            return ready[0]
        # Gate times never go back within a partition: each list is in order already.
        return list(heapq.merge(*ready, key=release_position))

    def unstick(
        self, stuck_ms: float, open_partitions: Iterable[TopicPartition]
    ) -> tuple[list[Record], dict[TopicPartition, int]]:
        """The full gate is stuck at ``stuck_ms``: the oldest held gate time, which every
        label partition not read past it (``open_partitions``, each turned away) is read up
        to. `release` waits for those to be read past it, which they cannot be without room:
        a gate full of labels of one record time (a producer batch the broker stamped with
        LogAppendTime) would stop the labels for good.

        Of the records of that gate time, the first partition (by topic, partition) that
        holds some or may still bring some comes first in `release`'s order, its held
        records in offset order: if it holds some, they are released (returned), a prefix of
        the order every other run releases in; if it holds none, the held records of the
        others (all released after it) are turned away to make room for it (the partitions
        to read again from an offset are returned)."""
        heads = [tp for tp, queue in self._held.items() if queue and queue[0][0] == stuck_ms]
        first = min([*heads, *open_partitions], key=lambda tp: (tp.topic, tp.partition))
        again: dict[TopicPartition, int] = {}
        if first not in heads:
            self._make_way(first, stuck_ms, again)
            return [], again
        queue, taken = self._held[first], []
        while queue and queue[0][0] == stuck_ms:
            taken.append(queue.popleft()[1])
        self._bytes -= HELD_COST * len(taken) + sum(map(len, filter(None, map(_VALUE, taken))))
        return taken, again

    def roomy(self) -> bool:
        """At least a quarter of the gate is free: worth reading turned-away partitions."""
        return self._bytes <= self.max_bytes * 3 // 4

    def has_room(self) -> bool:
        """Room for one more small record."""
        return self._bytes + 2 * HELD_COST <= self.max_bytes

    def oldest_ms(self) -> float | None:
        """Gate time of the oldest held record (None: nothing held)."""
        heads = [queue[0][0] for queue in self._held.values() if queue]
        return min(heads) if heads else None

    def first_held(self, tp: TopicPartition) -> int | None:
        queue = self._held.get(tp)
        return queue[0][1].offset if queue else None

    def held(self) -> int:
        return sum(len(queue) for queue in self._held.values())

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.gate_ms.pop(tp, None)
            self.turned_away.discard(tp)
            for _, record in self._held.pop(tp, ()):
                self._bytes -= HELD_COST + len(record.value or b"")


__all__ = ["HELD_COST", "MAX_HELD_BYTES", "LabelGate", "release_position"]
