"""The in-memory connectors: the fakes the core's tests rely on must keep Kafka's contract."""

from __future__ import annotations

import pytest

from connectors.memory import MemorySink, MemorySource, Message
from connectors.stream import (
    ConnectorError,
    DeliveryFailed,
    Record,
    Sink,
    Source,
    TopicPartition,
    flatten,
)
from tests.connectors.rebalances import Rebalances

P0 = TopicPartition("events", 0)
P1 = TopicPartition("events", 1)


def fill(source: MemorySource, per_partition: int) -> MemorySource:
    """Append `per_partition` records to partitions 0 and 1 of "events"."""
    for i in range(per_partition):
        for partition in (0, 1):
            source.append("events", b"%d-%d" % (partition, i), partition=partition)
    return source


def test_memory_connectors_satisfy_the_protocols() -> None:
    source: Source = MemorySource()
    sink: Sink = MemorySink()
    assert source.assignment() == frozenset()
    sink.close()


def test_poll_returns_everything_once_in_partition_order() -> None:
    source = fill(MemorySource(), 5)

    batches = [flatten(source.poll(timeout_s=0, max_records=3)) for _ in range(4)]

    assert [len(b) for b in batches] == [3, 3, 3, 1]
    records = [r for b in batches for r in b]
    for tp in (P0, P1):
        assert [r.offset for r in records if r.topic_partition == tp] == [0, 1, 2, 3, 4]
    assert flatten(source.poll(timeout_s=0, max_records=3)) == []
    assert source.drained


def test_append_assigns_next_offsets_and_keeps_fields() -> None:
    source = MemorySource()
    first = source.append("events", b"a", key=b"m", headers=[("h", b"1")], timestamp_ms=7)
    second = source.append("events", b"b")

    assert first == Record("events", 0, 0, b"m", b"a", 7, (("h", b"1"),))
    assert second.offset == 1
    assert flatten(source.poll(timeout_s=0, max_records=10)) == [first, second]


def test_records_given_up_front_may_have_gaps_but_not_go_back() -> None:
    source = MemorySource(
        [Record("events", 0, 10, None, b"x", 0), Record("events", 0, 15, None, b"y", 0)]
    )
    assert [r.offset for r in flatten(source.poll(timeout_s=0, max_records=10))] == [10, 15]
    assert source.append("events", b"z").offset == 16
    with pytest.raises(ValueError, match="offsets must increase"):
        source.extend([Record("events", 0, 3, None, b"old", 0)])


def test_commit_records_next_offsets_and_restart_resumes_there() -> None:
    source = fill(MemorySource(), 4)
    source.poll(timeout_s=0, max_records=8)
    source.commit({P0: 2, P1: 4})  # processed P0 offsets 0-1 and P1 offsets 0-3

    assert source.committed == {P0: 2, P1: 4}
    assert source.commits == [{P0: 2, P1: 4}]
    restarted = fill(MemorySource(committed=source.committed), 4)
    resumed = flatten(restarted.poll(timeout_s=0, max_records=100))
    assert [(r.partition, r.offset) for r in resumed] == [(0, 2), (0, 3)]


def test_commit_refuses_offsets_that_would_lose_or_replay_records() -> None:
    source = fill(MemorySource(), 4)
    source.poll(timeout_s=0, max_records=2)  # partition 0 offsets 0 and 1 only
    source.commit({P0: 2})

    with pytest.raises(ValueError, match="beyond the next unread offset"):
        source.commit({P0: 3})
    with pytest.raises(ValueError, match="moves back"):
        source.commit({P0: 1})
    with pytest.raises(ValueError, match="not assigned"):
        source.commit({TopicPartition("other", 0): 0})
    assert source.committed == {P0: 2}


def test_rebalance_calls_back_inside_poll_and_replays_uncommitted_records() -> None:
    listener = Rebalances()
    events = listener.events
    source = fill(MemorySource(), 3)
    source.listen(listener)
    assert events == []
    source.poll(timeout_s=0, max_records=100)
    assert events == [("assigned", {P0, P1})]
    source.commit({P0: 1, P1: 3})

    source.revoke([P0])
    assert source.assignment() == {P0, P1}  # takes effect at the next poll, as in Kafka
    assert flatten(source.poll(timeout_s=0, max_records=100)) == []
    assert source.assignment() == {P1}
    source.assign([P0])
    replayed = flatten(source.poll(timeout_s=0, max_records=100))

    assert events[1:] == [("revoked", {P0}), ("assigned", {P0})]
    assert [(r.partition, r.offset) for r in replayed] == [(0, 1), (0, 2)]


def test_close_revokes_and_allows_a_last_commit() -> None:
    def commit_everything(partitions: set[TopicPartition]) -> None:
        source.commit(dict.fromkeys(partitions, 2))

    source = fill(MemorySource(), 2)
    source.listen(Rebalances(on_revoked=commit_everything))
    source.poll(timeout_s=0, max_records=100)

    source.close()
    source.close()

    assert source.committed == {P0: 2, P1: 2}
    with pytest.raises(ConnectorError, match="closed"):
        source.poll(timeout_s=0, max_records=1)


def test_poll_rotates_partitions_so_none_starves() -> None:
    source = fill(MemorySource(), 10)
    firsts = {flatten(source.poll(timeout_s=0, max_records=1))[0].partition for _ in range(2)}
    assert firsts == {0, 1}


def test_poll_groups_records_per_partition_in_offset_order() -> None:
    source = MemorySource()
    for offset, partition in enumerate((0, 1, 0, 2, 1, 0)):  # interleaved as produced
        source.append("events", b"%d" % offset, partition=partition, timestamp_ms=offset)
    source.append("labels", b"l", partition=1)

    polled = source.poll(timeout_s=0, max_records=100)

    labels = TopicPartition("labels", 1)
    assert set(polled) == {P0, P1, TopicPartition("events", 2), labels}
    for tp, records in polled.items():
        assert records, f"{tp} is a key without records"
        assert {r.topic_partition for r in records} == {tp}
    assert [r.value for r in polled[P0]] == [b"0", b"2", b"5"]  # offsets 0, 1, 2
    assert [r.offset for r in polled[P1]] == [0, 1]
    assert [r.offset for r in polled[labels]] == [0]
    # A partition cut by max_records is cut at its newest records; the rest come next.
    source = fill(MemorySource(), 5)
    first = source.poll(timeout_s=0, max_records=7)
    assert {tp: [r.offset for r in records] for tp, records in first.items()} == {
        P0: [0, 1, 2, 3, 4],
        P1: [0, 1],
    }
    second = source.poll(timeout_s=0, max_records=7)
    assert {tp: [r.offset for r in records] for tp, records in second.items()} == {P1: [2, 3, 4]}


def test_sink_delivers_on_flush_only() -> None:
    sink = MemorySink()
    sink.send("alerts", b"fraud-scorer", b"{}", [("ce_type", b"io.monitord.drift.alert")])
    assert sink.pending == 1
    assert sink.messages() == []

    sink.flush(timeout_s=1)

    assert sink.messages("alerts") == [
        Message("alerts", b"fraud-scorer", b"{}", (("ce_type", b"io.monitord.drift.alert"),))
    ]
    assert sink.messages("triggers") == []
    assert sink.flushes == 1


def test_sink_failure_injection() -> None:
    sink = MemorySink()
    sink.fail_next_flush()
    sink.fail_next_send(DeliveryFailed("too large", retriable=False))

    with pytest.raises(DeliveryFailed) as send_error:
        sink.send("alerts", None, b"huge")
    assert not send_error.value.retriable
    sink.send("alerts", None, b"lost")
    with pytest.raises(DeliveryFailed) as flush_error:
        sink.flush(timeout_s=1)
    assert flush_error.value.retriable
    sink.send("alerts", None, b"resent")
    sink.flush(timeout_s=1)

    assert [m.value for m in sink.messages()] == [b"resent"]


def test_sink_close_delivers_pending_and_is_idempotent() -> None:
    sink = MemorySink()
    sink.send("alerts", None, b"last")
    sink.close()
    sink.close()
    assert [m.value for m in sink.messages()] == [b"last"]
    with pytest.raises(ConnectorError, match="closed"):
        sink.send("alerts", None, b"late")


def test_connector_error_retriable_defaults() -> None:
    assert not ConnectorError("x").retriable
    assert ConnectorError("x", retriable=True).retriable
    assert not DeliveryFailed("x").retriable
