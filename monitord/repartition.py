"""Repartitioning input that is not keyed by model, as Kafka Streams does.

A model's state lives with the partition that carries its events (DESIGN.md section 6), so
when producers key events by something else, the daemon first forwards each event to an
internal topic keyed by its model (`Forward`), then monitors that topic like any keyed input.
Forwarding is at-least-once: after a crash between forwarding and committing, an event can
appear twice in the internal topic. Each forwarded event carries its source topic, partition
and offset in headers, and `SourceOffsets` skips any whose source offset was already folded
into the internal partition's state, so detector state still folds every event once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from connectors.kafka import key_partition
from connectors.stream import Headers, Record, TopicPartition
from monitord.events import DecodedBatch

SOURCE_HEADERS = ("monitord.source.topic", "monitord.source.partition", "monitord.source.offset")
"""Where a record came from: on forwarded events and on dead letters."""
MAX_HOMES = 100_000
"""Most models whose internal partition `InFlight` remembers (a hash each, recomputed)."""


@dataclass(frozen=True, slots=True)
class Forward:
    """One event to send to the internal topic."""

    key: bytes
    value: bytes
    headers: Headers
    timestamp_ms: int


def forwards(records: list[Record], decoded: DecodedBatch) -> list[Forward]:
    """The valid events among ``records`` (decoded as ``decoded``), keyed by model, each with
    its source in headers. Input order is kept: per source partition, the events reaching
    an internal partition then have increasing source offsets, which `SourceOffsets` needs."""
    model_of = {
        id(record): model
        for (model, _), group in decoded.groups.items()
        for record in group.records
    }
    out = []
    for record in records:
        model = model_of.get(id(record))
        if model is None:  # a bad record: dead-lettered instead
            continue
        source = (
            (SOURCE_HEADERS[0], record.topic.encode()),
            (SOURCE_HEADERS[1], str(record.partition).encode()),
            (SOURCE_HEADERS[2], str(record.offset).encode()),
        )
        out.append(
            Forward(
                model.encode(),
                record.value or b"",
                (*record.headers, *source),
                record.timestamp_ms,
            )
        )
    return out


def _source(headers: Headers) -> tuple[str, int] | None:
    """``("topic/partition", offset)`` of a forwarded record, None if it names no source."""
    found: dict[str, bytes] = {}
    for name, value in reversed(headers):  # ours come last
        if name in SOURCE_HEADERS and name not in found:
            found[name] = value
            if len(found) == len(SOURCE_HEADERS):
                break
    try:
        topic, partition, offset = (found[name].decode() for name in SOURCE_HEADERS)
        return f"{topic}/{int(partition)}", int(offset)
    except (KeyError, ValueError):
        return None


class SourceOffsets:
    """Per internal partition, the highest source offset folded from each source partition."""

    def __init__(self) -> None:
        self._seen: dict[TopicPartition, dict[str, int]] = {}

    def fresh(self, partition: TopicPartition, records: list[Record]) -> list[Record]:
        """Those of internal ``partition``'s ``records`` not folded before (call only right
        before folding them)."""
        seen = self._seen.setdefault(partition, {})
        kept = []
        for record in records:
            source = _source(record.headers)
            if source is None:
                kept.append(record)
                continue
            name, offset = source
            if offset > seen.get(name, -1):
                seen[name] = offset
                kept.append(record)
        return kept

    def folded(self, partition: TopicPartition, source: str) -> int:
        """The highest offset of ``source`` folded from internal ``partition`` (-1: none)."""
        return self._seen.get(partition, {}).get(source, -1)

    def snapshot(self, partition: TopicPartition) -> dict[str, int]:
        return dict(self._seen.get(partition, {}))

    def restore(self, partition: TopicPartition, seen: dict[str, int]) -> None:
        self._seen[partition] = {str(k): int(v) for k, v in seen.items()}

    def drop(self, partition: TopicPartition) -> None:
        self._seen.pop(partition, None)


class InFlight:
    """Events this consumer forwarded to internal partitions it reads and has not read back
    yet: a label of their time waits for them (`monitord.label_flow`), as their source
    partition is read past it before they reach a join store. Per source partition, a run
    per batch and internal partition: ``(internal partition, last source offset, earliest
    record time in ms)``. Forwards to a partition another replica reads are not waited for.
    """

    def __init__(self, sources: SourceOffsets, topic: str, partitions: int) -> None:
        self._sources, self._topic, self._partitions = sources, topic, partitions
        self._homes: dict[bytes, TopicPartition] = {}  # a model's internal partition
        self._runs: dict[str, list[tuple[TopicPartition, int, float]]] = {}

    def sent(self, forwarded: list[Forward], assigned: Iterable[TopicPartition]) -> None:
        """A batch's forwards: those to the ``assigned`` internal partitions are waited for."""
        if not self._partitions:
            return
        mine = set(assigned)
        runs: dict[tuple[str, TopicPartition], tuple[int, float]] = {}
        homes = self._homes
        if len(homes) > MAX_HOMES:  # model names are input: a flood of them is not kept
            homes.clear()
        for forward in forwarded:
            home = homes.get(forward.key)
            if home is None:
                home = TopicPartition(self._topic, key_partition(forward.key, self._partitions))
                homes[forward.key] = home
            source = _source(forward.headers)
            if home not in mine or source is None:
                continue
            stamp = forward.timestamp_ms if forward.timestamp_ms > 0 else -math.inf
            earliest = runs.get((source[0], home), (0, math.inf))[1]
            runs[source[0], home] = (source[1], min(earliest, stamp))
        for (name, home), (offset, stamp) in runs.items():
            self._runs.setdefault(name, []).append((home, offset, stamp))

    def oldest_ms(self, source: TopicPartition) -> float:
        """Record time of the oldest event forwarded from ``source`` not read back (inf:
        none)."""
        name = f"{source.topic}/{source.partition}"
        runs = self._runs.get(name)
        if not runs:
            return math.inf
        folded = self._sources.folded
        runs[:] = [run for run in runs if folded(run[0], name) < run[1]]
        return min((run[2] for run in runs), default=math.inf)

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Revoked: neither read back here nor forwarded from here any more."""
        gone = set(partitions)
        for name in [f"{tp.topic}/{tp.partition}" for tp in gone]:
            self._runs.pop(name, None)
        for runs in self._runs.values():
            runs[:] = [run for run in runs if run[0] not in gone]


__all__ = ["SOURCE_HEADERS", "Forward", "InFlight", "SourceOffsets", "forwards"]
