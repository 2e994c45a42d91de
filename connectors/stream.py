"""Boundary types between the daemon and a message stream.

The core sees only these types, never a Kafka client: a `Source` yields `Record`s grouped
by partition (`Polled`) and takes offsets to commit, a `Sink` takes messages and confirms
delivery on `flush`.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Protocol, Self, TypeAlias

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class TopicPartition:
    """One partition of one topic; hashable, used as a dict key everywhere."""

    topic: str
    partition: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]"


class Record(NamedTuple):
    """One message as read from a partition, bytes untouched.

    `timestamp_ms` is the broker or producer timestamp in ms since the epoch, -1 if unknown.
    A named tuple, not a frozen dataclass: one is built per consumed message, and a frozen
    dataclass's per-field ``object.__setattr__`` made that the costliest step of a poll.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int
    headers: Headers = ()

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


_TOPIC, _PARTITION = operator.attrgetter("topic"), operator.attrgetter("partition")
_WHERE = operator.attrgetter("topic", "partition")


def one_partition(records: Sequence[Record]) -> bool:
    """Whether every record comes from the same partition (the usual batch, input keyed by
    model): the ends compared, then two C-level passes, no Python frame per record."""
    return (
        len(records) > 0
        and records[0].topic_partition == records[-1].topic_partition
        and len(set(map(_PARTITION, records))) == 1
        and len(set(map(_TOPIC, records))) == 1
    )


Polled: TypeAlias = dict[TopicPartition, list[Record]]
"""What `Source.poll` returns: each partition's records, in offset order.

Only partitions with records are keys, each with a non-empty list whose offsets increase
(with gaps where a topic is compacted); the partitions come in no particular order. The dict
and its lists belong to the caller: the source keeps no reference to them, so the caller
may extend them. Kafka clients hand records out this way (kafka-python's ``poll``,
aiokafka's ``getmany``), and per-partition work (next offsets, a partition held back) then
costs one step per partition, not per record: `flatten` makes the one list a decoder reads.
"""


def flatten(polled: Polled) -> list[Record]:
    """The records of ``polled`` in one list, partition after partition (a partition's
    records in offset order); a lone partition's own list, not a copy.

    >>> a5, a6 = Record("a", 0, 5, None, b"", 0), Record("a", 0, 6, None, b"", 0)
    >>> b0 = Record("b", 0, 0, None, b"", 0)
    >>> [(r.topic, r.offset) for r in flatten({TopicPartition("a", 0): [a5, a6],
    ...                                         TopicPartition("b", 0): [b0]})]
    [('a', 5), ('a', 6), ('b', 0)]
    """
    if len(polled) == 1:
        return next(iter(polled.values()))
    return list(itertools.chain.from_iterable(polled.values()))


def by_partition(records: Iterable[Record]) -> Polled:
    """``records`` grouped as `Source.poll` returns them, each partition's in the order
    given: for a client that hands out one flat list (one Python step per run of records of
    one partition, not per record).

    >>> a5, b0, a6 = (Record(t, 0, o, None, b"", 0) for t, o in (("a", 5), ("b", 0), ("a", 6)))
    >>> {str(tp): [r.offset for r in rs] for tp, rs in by_partition([a5, b0, a6]).items()}
    {'a[0]': [5, 6], 'b[0]': [0]}
    """
    polled: Polled = {}
    for (topic, partition), run in itertools.groupby(records, _WHERE):
        tp = TopicPartition(topic, partition)
        found = polled.get(tp)
        if found is None:
            polled[tp] = list(run)
        else:
            found.extend(run)
    return polled


def record_count(polled: Polled) -> int:
    """How many records ``polled`` holds (one step per partition)."""
    return sum(map(len, polled.values()))


def poll_in_turn(
    partitions: Iterable[TopicPartition],
    turn: int,
    paused: Set[TopicPartition],
    max_records: int,
    read: Callable[[TopicPartition, int], list[Record]],
) -> Polled:
    """Up to ``max_records`` records of the partitions not ``paused``, in order from the
    ``turn``-th (rotated at each poll, so one busy partition cannot starve the others);
    ``read(partition, room)`` takes up to ``room`` of a partition's next records, in a new
    list. What the in-process sources share, so that they poll alike."""
    ordered = sorted(partitions, key=lambda tp: (tp.topic, tp.partition))
    start = turn % len(ordered) if ordered else 0
    polled: Polled = {}
    room = max_records
    for tp in ordered[start:] + ordered[:start]:
        if room == 0:
            break
        if tp in paused:
            continue
        chunk = read(tp, room)
        if chunk:
            polled[tp] = chunk
            room -= len(chunk)
    return polled


@dataclass(frozen=True)
class OffsetReset:
    """A partition moved because the offset it was to be read from lies outside its log.

    Worked example: a checkpoint says to read ``events[0]`` from offset 27000, but the broker
    came back without its log and the partition now holds offsets 0..119 (log start 0, log
    end 120, the next offset to be written). 27000 is beyond the end: with the rule
    ``earliest`` reading goes on from 0, with ``latest`` from 120. An offset below the log
    start (retention deleted records not read yet) moves the same way.
    """

    partition: TopicPartition
    offset: int  # the offset that could not be read
    log_start: int
    log_end: int
    rule: str  # "earliest" or "latest"
    reset_to: int

    @property
    def reason(self) -> str:
        """``beyond_end`` or ``before_start``: a label value for metrics."""
        return "beyond_end" if self.offset > self.log_end else "before_start"


def pause_assigned(
    paused: set[TopicPartition],
    assigned: Collection[TopicPartition],
    partitions: Iterable[TopicPartition],
) -> None:
    """Add ``partitions`` to ``paused``; each must be ``assigned`` (what the in-process
    sources share, as the broker refuses pausing a partition it did not assign)."""
    for tp in partitions:
        if tp not in assigned:
            raise ValueError(f"partition: {tp} is not assigned to this source")
        paused.add(tp)


def revoke_on_close(
    listener: RebalanceListener | None, assigned: Collection[TopicPartition]
) -> None:
    """Tell ``listener`` a closing source gives up every ``assigned`` partition, as Kafka
    does: called while the source is still open, so the listener may commit."""
    if assigned and listener is not None:
        listener.on_revoked(set(assigned))


class RebalanceListener(Protocol):
    """Told of the partitions a consumer gains (`on_assigned`) and loses (`on_revoked`).

    Sources call it from inside `poll()` (or `close()`), never concurrently with the caller's
    own use of the source, so the core can drop or load per-partition state there. It must
    not block for long: a Kafka consumer cannot heartbeat while it runs.
    """

    def on_assigned(self, partitions: set[TopicPartition]) -> None: ...

    def on_revoked(self, partitions: set[TopicPartition]) -> None: ...


class Source(Protocol):
    """A partitioned, replayable stream of records read on behalf of a consumer group."""

    def listen(self, listener: RebalanceListener) -> None:
        """Tell ``listener`` of every rebalance from now on (a second listener replaces the
        first); call it before the first `poll()`, which assigns the first partitions."""
        ...

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        """Return up to `max_records` records grouped by partition, each partition's in
        offset order (see `Polled`), waiting at most `timeout_s` for the first."""
        ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Mark everything before the given offsets as processed, for good.

        Offsets are the NEXT offset to read, not the last one processed. Worked example:
        partition `events[3]` delivered offsets 40, 41, 42 and all three are folded into a
        checkpoint; commit `{TopicPartition("events", 3): 43}`. After a restart or a
        rebalance, reading resumes at 43: nothing is read twice, nothing is skipped.
        Committing 42 instead would replay record 42; committing 44 would silently lose 43.
        """
        ...

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this source currently reads."""
        ...

    def end_offsets(self) -> dict[TopicPartition, int]:
        """The last known end (next offset to be written) of each assigned partition, as seen
        by reading; no network call. For lag: end minus the next offset to process."""
        ...

    def probe(self, timeout_s: float) -> None:
        """Check the source is reachable (a quiet stream and a dead broker look alike in
        `poll`); raise a retriable `ConnectorError` if it is not."""
        ...

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read an assigned ``partition`` from ``offset`` next (e.g. a checkpoint's offset)."""
        ...

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Return no records of these assigned partitions (nor fetch them) until `resume`;
        their positions stay. A pause outlives a rebalance that keeps the partition: the
        caller resumes what it revokes."""
        ...

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        """Read paused partitions again, from their positions (unassigned ones: ignored)."""
        ...

    def reset_positions(self) -> list[OffsetReset]:
        """Move every assigned partition whose next offset lies outside its log to the log's
        start or end, as the source's offset-reset rule says, and return the moves (with
        those `poll` made since the last call). Cheap: no network call unless one moves."""
        ...

    def missing_topics(self) -> tuple[str, ...]:
        """Topics to read that do not exist (as last seen; no network call); called from
        other threads (readiness)."""
        ...

    def unreachable(self) -> str | None:
        """Why the broker cannot be reached right now, judged without a network call, or
        None. Called from other threads (readiness), so it only reads state."""
        ...

    def close(self) -> None:
        """Release the connection and leave the group; safe to call more than once."""
        ...


class Sink(Protocol):
    """A destination for messages with a delivery barrier.

    `send` may buffer; only a `flush` that returns guarantees delivery of everything sent
    before it. Callers commit input offsets only after a successful flush.
    """

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue a message; ``timestamp_ms`` keeps a forwarded record's own timestamp."""
        ...

    def flush(self, timeout_s: float) -> None:
        """Wait for every message sent so far; raise `ConnectorError` if any was not delivered."""
        ...

    def close(self) -> None:
        """Flush what can be flushed quickly and release resources; idempotent."""
        ...


class ConnectorError(Exception):
    """A failure at the edge of the system.

    `retriable` tells the caller whether trying the same operation again later can succeed
    (broker restarting, timeout) or not (bad configuration, message too large).
    """

    retriable: bool = False

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class BrokerUnavailable(ConnectorError):  # noqa: N818  # reads as a state
    """The broker could not be reached or did not answer in time."""

    retriable = True


class DeliveryFailed(ConnectorError):  # noqa: N818  # reads as a state
    """At least one sent message was not acknowledged; re-send everything since the last
    successful flush (receivers deduplicate by message id).

    With ``pending`` the messages are still in flight (a slow or stalled broker): flush
    again instead, which keeps them without sending copies.
    """

    def __init__(
        self, message: str, *, retriable: bool | None = None, pending: bool = False
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.pending = pending


class CommitFailed(ConnectorError):  # noqa: N818  # reads as a state
    """The offset commit was rejected, usually because the group rebalanced.

    The records stay uncommitted and will be read again by whoever owns the partition next;
    the source reports the rebalance through `on_revoked` on the next `poll()`, after which a
    retry commits only the partitions still assigned.
    """

    retriable = True


class Closing:
    """What every Kafka client's source and sink share: a use after `close` is a
    `ConnectorError`, and ``with`` closes it. The class sets ``_closed`` and defines
    `close`."""

    _closed: bool

    def close(self) -> None:
        raise NotImplementedError

    def _check_open(self) -> None:
        if self._closed:
            raise ConnectorError(f"{self} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def headers_of(raw: Iterable[tuple[str, bytes | None]] | None) -> Headers:
    """A client's record headers as ours: Kafka allows null header values; the boundary
    type promises bytes."""
    return tuple((key, b"" if value is None else value) for key, value in raw) if raw else ()


def topic_partitions(partitions: Iterable[Any]) -> set[TopicPartition]:
    """A client's partition objects (anything with ``topic`` and ``partition``) as ours."""
    return {TopicPartition(tp.topic, tp.partition) for tp in partitions}


__all__ = [
    "BrokerUnavailable",
    "Closing",
    "CommitFailed",
    "ConnectorError",
    "DeliveryFailed",
    "Headers",
    "OffsetReset",
    "Polled",
    "RebalanceListener",
    "Record",
    "Sink",
    "Source",
    "TopicPartition",
    "by_partition",
    "flatten",
    "headers_of",
    "one_partition",
    "pause_assigned",
    "poll_in_turn",
    "record_count",
    "revoke_on_close",
    "topic_partitions",
]
