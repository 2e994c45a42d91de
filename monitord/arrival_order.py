"""The order in which a join store's entries arrived, with their times.

`monitord.join_store.JoinStore` keeps its pending predictions and early labels in dictionaries
and their arrival order beside them, so that the oldest is found in constant time (popping
the front of a dictionary leaves holes that every later pop scans). An id that has left
its dictionary since (joined) stays in the order until it is skipped or compacted away.

Entries fall due by time (`due`) from the front, so one stamped far after the others (a
producer's clock ahead, or a hostile time) would hold back every entry behind it. `due`
therefore sets such an entry aside (*parks* it) in a heap by time, where it falls due in
its turn: each entry is parked at most once, so the cost stays constant per entry. Parked
entries arrived before every entry still in line, so `oldest` looks at them first.

The times and the ids are two deques rather than one deque of pairs: a pair would be one
more object per prediction to allocate and for the garbage collector to scan, and a batch
of predictions extends both deques in C.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import Any


class ArrivalOrder:
    """Entries ``(time, event id)`` in arrival order, those parked by `due` first."""

    __slots__ = ("_ids", "_parked", "_parked_ids", "_times")

    def __init__(
        self, entries: Iterable[tuple[float, str]] = (), parked: Container[str] = ()
    ) -> None:
        """``entries`` in arrival order; those whose id is in ``parked`` go straight to the
        parked entries (a store rebuilt keeps what its order had set aside)."""
        self._times: deque[float] = deque()
        self._ids: deque[str] = deque()
        self._parked: list[tuple[float, str]] = []  # a heap by (time, event id)
        self._parked_ids: deque[str] = deque()  # the parked ids in arrival order
        for time, event_id in entries:
            if event_id in parked:
                self._park(time, event_id)
            else:
                self.append(time, event_id)

    def append(self, time: float, event_id: str) -> None:
        self._times.append(time)
        self._ids.append(event_id)

    def extend(self, times: Sequence[float], event_ids: Sequence[str]) -> None:
        """Entries ``(times[i], event_ids[i])`` in order (the two of equal length)."""
        if len(times) != len(event_ids):
            raise ValueError(f"times: {len(times)} for {len(event_ids)} event ids")
        self._times.extend(times)
        self._ids.extend(event_ids)

    def __len__(self) -> int:
        """Entries held, those of ids that left included (what compaction weighs)."""
        return len(self._ids) + len(self._parked) + len(self._parked_ids)

    def __iter__(self) -> Iterator[tuple[float, str]]:
        """The parked entries (by time), then the others in arrival order."""
        yield from sorted(self._parked)
        yield from zip(self._times, self._ids, strict=True)

    def first_time(self) -> float:
        """Time of the oldest entry in line, the parked aside (IndexError when none)."""
        return self._times[0]

    def popleft(self) -> tuple[float, str]:
        """The oldest entry in line (the parked aside), removed."""
        return self._times.popleft(), self._ids.popleft()

    def parked(self) -> set[str]:
        """The ids of the parked entries."""
        return {event_id for _, event_id in self._parked}

    def due(
        self,
        cutoff: float,
        horizon: float,
        live: Mapping[str, Sequence[Any]] | None = None,
        at: int = 0,
    ) -> list[str]:
        """Remove and return the ids of the entries whose time is before ``cutoff`` (or
        NaN): from the front, up to the first that is not, passing over (parking) those
        stamped after ``horizon``; then the parked entries before ``cutoff``, by time.

        An entry that is not its id's in ``live`` (the live entries by id, each with its
        time at index ``at``) goes, neither returned nor stopping the search: its id left
        since, or left and came back (its later entry is the one). Else what fell due would
        depend on what left and when, and a store restored without them would differ.
        """
        times, ids, gone = self._times, self._ids, []
        while times:
            time = times[0]
            if live is not None and not _arrived(live.get(ids[0]), at, time):
                times.popleft()
                ids.popleft()
            elif not time >= cutoff:  # NaN times go too
                times.popleft()
                gone.append(ids.popleft())
            elif time > horizon:
                times.popleft()
                self._park(time, ids.popleft())
            else:
                break
        parked = self._parked
        if parked and parked[0][0] < cutoff:
            while parked and parked[0][0] < cutoff:
                gone.append(heapq.heappop(parked)[1])
            if not parked:  # none left aside: their places in arrival order go too
                self._parked_ids.clear()
        return gone

    def _park(self, time: float, event_id: str) -> None:
        heapq.heappush(self._parked, (time, event_id))
        self._parked_ids.append(event_id)

    def oldest(self, entries: Mapping[str, Sequence[Any]], at: int) -> str:
        """The id of the oldest entry still in ``entries`` (each with its time at index
        ``at``; the order's entries before it dropped, and those of an id that left and
        came back: `due`), parked ones first (they came before the others); IndexError
        when none is."""
        parked = self._parked_ids
        while parked and parked[0] not in entries:
            parked.popleft()
        if parked:
            return parked[0]
        ids, times = self._ids, self._times
        while not _arrived(entries.get(ids[0]), at, times[0]):
            ids.popleft()
            times.popleft()
        return ids[0]


def _arrived(entry: Sequence[Any] | None, at: int, time: float) -> bool:
    """Whether ``entry`` (None: its id left) is the one that arrived at ``time`` (both NaN:
    the same untimed arrival, as far as can be told)."""
    if entry is None:
        return False
    own = entry[at]
    return bool(own == time or (math.isnan(own) and math.isnan(time)))


__all__ = ["ArrivalOrder"]
