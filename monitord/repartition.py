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

from dataclasses import dataclass

from connectors.stream import Headers, Record, TopicPartition
from monitord.events import DecodedBatch

SOURCE_HEADERS = ("monitord.source.topic", "monitord.source.partition", "monitord.source.offset")
"""Where a record came from: on forwarded events and on dead letters."""


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


def _source(record: Record) -> tuple[str, int] | None:
    """``("topic/partition", offset)`` of a forwarded record, None if it names no source."""
    found: dict[str, bytes] = {}
    for name, value in reversed(record.headers):  # ours come last
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
            source = _source(record)
            if source is None:
                kept.append(record)
                continue
            name, offset = source
            if offset > seen.get(name, -1):
                seen[name] = offset
                kept.append(record)
        return kept

    def snapshot(self, partition: TopicPartition) -> dict[str, int]:
        return dict(self._seen.get(partition, {}))

    def restore(self, partition: TopicPartition, seen: dict[str, int]) -> None:
        self._seen[partition] = {str(k): int(v) for k, v in seen.items()}

    def drop(self, partition: TopicPartition) -> None:
        self._seen.pop(partition, None)


__all__ = ["SOURCE_HEADERS", "Forward", "SourceOffsets", "forwards"]
