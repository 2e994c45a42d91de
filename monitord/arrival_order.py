"""The order in which a join store's entries arrived, with their times.

`monitord.labels.JoinStore` keeps its pending predictions and early labels in dictionaries
and their arrival order beside them, so that the oldest is found in constant time (popping
the front of a dictionary leaves holes that every later pop scans). An id that has left
its dictionary since (joined) stays in the order until it is skipped or compacted away.

The times and the ids are two deques rather than one deque of pairs: a pair would be one
more object per prediction to allocate and for the garbage collector to scan, and a batch
of predictions extends both deques in C.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Iterable, Iterator, Sequence


class ArrivalOrder:
    """Entries ``(time, event id)`` in arrival order."""

    __slots__ = ("_ids", "_times")

    def __init__(self, entries: Iterable[tuple[float, str]] = ()) -> None:
        self._times: deque[float] = deque()
        self._ids: deque[str] = deque()
        for time, event_id in entries:
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
        return len(self._ids)

    def __iter__(self) -> Iterator[tuple[float, str]]:
        return zip(self._times, self._ids, strict=True)

    def first_time(self) -> float:
        """Time of the oldest entry (IndexError when empty)."""
        return self._times[0]

    def popleft(self) -> tuple[float, str]:
        """The oldest entry, removed."""
        return self._times.popleft(), self._ids.popleft()

    def oldest(self, entries: Container[str]) -> str:
        """The id of the oldest entry still in ``entries`` (the entries before it dropped);
        IndexError when none is."""
        ids, times = self._ids, self._times
        while ids[0] not in entries:
            ids.popleft()
            times.popleft()
        return ids[0]


__all__ = ["ArrivalOrder"]
