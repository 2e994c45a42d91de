"""`FeedSource` polls as `MemorySource` does over the same records, holding only the
records not yet committed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.feed import FeedSource
from connectors.memory import MemorySource
from connectors.stream import Record, TopicPartition, flatten
from tests.connectors.rebalances import Rebalances

SIZES = {"a": 25, "b": 10}


def _records(topic: str, n: int) -> list[Record]:
    return [Record(topic, 0, i, None, f"{topic}{i}".encode(), 0) for i in range(n)]


def _feed(pulled: list[Record] | None = None) -> FeedSource:
    def lazily(records: list[Record]) -> Iterator[Record]:
        for record in records:
            if pulled is not None:
                pulled.append(record)
            yield record

    return FeedSource({TopicPartition(t, 0): (lazily(_records(t, n)), n) for t, n in SIZES.items()})


def test_polls_commits_and_seeks_as_a_memory_source_does() -> None:
    memory = MemorySource([r for t, n in SIZES.items() for r in _records(t, n)])
    feed = _feed()
    b = TopicPartition("b", 0)
    for step in range(12):
        polled = flatten(memory.poll(0.0, 7))
        assert flatten(feed.poll(0.0, 7)) == polled
        assert feed.end_offsets() == memory.end_offsets()
        assert feed.assignment() == memory.assignment()
        if step == 3:  # a label gate turning records away: read them again, later
            for source in (memory, feed):
                source.seek(b, 8)
                source.pause([b])
        elif step == 6:
            for source in (memory, feed):
                source.resume([b])
        elif polled:
            done = {r.topic_partition: r.offset + 1 for r in polled}
            memory.commit(done)
            feed.commit(done)
    assert flatten(memory.poll(0.0, 7)) == flatten(feed.poll(0.0, 7)) == []


def test_reads_lazily_and_lets_committed_records_go() -> None:
    pulled: list[Record] = []
    feed = _feed(pulled)
    a = TopicPartition("a", 0)
    first = flatten(feed.poll(0.0, 4))
    assert [r.offset for r in first] == [0, 1, 2, 3]
    assert len(pulled) == 4  # nothing read ahead
    feed.commit({a: 4})
    with pytest.raises(ValueError, match="before the committed 4"):
        feed.seek(a, 2)
    with pytest.raises(ValueError, match="beyond the next unread offset"):
        feed.commit({a: 9})


def test_an_iterator_shorter_than_its_end_offset_is_an_error() -> None:
    feed = FeedSource({TopicPartition("a", 0): (iter(_records("a", 3)), 5)})
    with pytest.raises(ValueError, match="2 fewer records than the end offset 5"):
        feed.poll(0.0, 10)


def test_tells_its_listener_of_the_assignment_and_the_revocation_as_a_memory_source_does() -> None:
    memory = MemorySource([r for t, n in SIZES.items() for r in _records(t, n)])
    feed = _feed()
    heard, expected = Rebalances(), Rebalances()
    feed.listen(heard)
    memory.listen(expected)
    assert heard.events == []  # nothing before the first poll
    for _ in range(3):
        assert flatten(feed.poll(0.0, 7)) == flatten(memory.poll(0.0, 7))
    feed.close()
    memory.close()
    feed.close()  # idempotent: told once
    assert heard.events == expected.events
    assert heard.events == [
        ("assigned", {TopicPartition("a", 0), TopicPartition("b", 0)}),
        ("revoked", {TopicPartition("a", 0), TopicPartition("b", 0)}),
    ]
