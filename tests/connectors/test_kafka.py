"""The Kafka connectors against a real Kafka-protocol broker (embedded Tansu)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from connectors.broker import EmbeddedBroker, free_port
from connectors.kafka import (
    KafkaConsumerSettings,
    KafkaProducerSettings,
    crc32c_accelerated,
    ensure_topics,
    read_topic,
    wait_for_broker,
)
from connectors.stream import (
    BrokerUnavailable,
    DeliveryFailed,
    Record,
    Source,
    TopicPartition,
    flatten,
)
from tests.connectors.clients import SINKS, SOURCES
from tests.connectors.rebalances import Rebalances

# Tansu holds a first JoinGroup for about half the session timeout (whole seconds), and a
# rebalance about as long: 3 s sessions keep every group change near 2 s.
FAST_GROUP = KafkaConsumerSettings(
    session_timeout_ms=3000, heartbeat_interval_ms=500, connect_timeout_s=5.0
)


def poll_until(source: Source, count: int, timeout_s: float = 20.0) -> list[Record]:
    """Poll until `count` records arrived; fail if they do not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    records: list[Record] = []
    while len(records) < count:
        assert time.monotonic() < deadline, f"got {len(records)} of {count} records"
        records.extend(flatten(source.poll(timeout_s=0.5, max_records=1000)))
    return records


def produce(bootstrap: str, topic: str, values: list[bytes], client: str = "kafka-python") -> None:
    with SINKS[client](bootstrap) as sink:
        for i, value in enumerate(values):
            headers = [("seq", str(i).encode()), ("source", b"test")]
            sink.send(topic, key=b"model-%d" % (i % 7), value=value, headers=headers)
        sink.flush(timeout_s=10)


def next_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = r.topic_partition
        offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
    return offsets


def test_crc32c_is_accelerated() -> None:
    assert crc32c_accelerated(), "install crc32c: pure-Python CRC checks are ~9x slower"


@pytest.mark.kafka
def test_group_resumes_after_committed_offsets(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    topic, group = unique_name("events"), unique_name("group")
    ensure_topics(broker.bootstrap, {topic: 3})
    values = [b"event-%d" % i for i in range(300)]
    produce(broker.bootstrap, topic, values, kafka_client)
    KafkaSource = SOURCES[kafka_client]  # the class under test

    rebalances = Rebalances()
    assigned, revoked = rebalances.assigned, rebalances.revoked
    first = KafkaSource(broker.bootstrap, group, [topic], settings=FAST_GROUP)
    first.listen(rebalances)
    everything = poll_until(first, len(values))
    all_partitions = {TopicPartition(topic, p) for p in range(3)}
    assert first.assignment() == all_partitions
    assert assigned == [all_partitions]
    assert sorted(r.value for r in everything if r.value) == sorted(values)
    assert all(dict(r.headers)["source"] == b"test" for r in everything)

    # "Process" the first half of every partition, then stop as if the process died.
    processed = [
        r
        for tp in all_partitions
        for r in sorted((r for r in everything if r.topic_partition == tp), key=lambda r: r.offset)[
            :50
        ]
    ]
    committed = next_offsets(processed)
    first.commit(committed)
    first.close()
    first.close()  # idempotent
    assert revoked == [all_partitions]

    with KafkaSource(broker.bootstrap, group, [topic], settings=FAST_GROUP) as second:
        rest = poll_until(second, len(values) - len(processed))
        extra = flatten(second.poll(timeout_s=0.5, max_records=1000))
    assert extra == []
    assert all(r.offset >= committed[r.topic_partition] for r in rest)
    seen = [r.value for r in processed] + [r.value for r in rest]
    assert sorted(v for v in seen if v) == sorted(values)  # nothing lost, nothing read twice


@pytest.mark.kafka
def test_commit_from_on_revoked_survives_close(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    KafkaSource = SOURCES[kafka_client]  # the class under test
    topic, group = unique_name("events"), unique_name("group")
    ensure_topics(broker.bootstrap, {topic: 2})
    produce(broker.bootstrap, topic, [b"a", b"b", b"c", b"d"])
    processed: list[Record] = []

    def commit_processed(partitions: set[TopicPartition]) -> None:
        # kafka-python: runs on its IO thread, and the source must turn this into
        # commit_async; confluent: runs inside close() on this thread.
        source.commit({tp: o for tp, o in next_offsets(processed).items() if tp in partitions})

    source = KafkaSource(broker.bootstrap, group, [topic], settings=FAST_GROUP)
    source.listen(Rebalances(on_revoked=commit_processed))
    processed.extend(poll_until(source, 4))
    source.close()

    produce(broker.bootstrap, topic, [b"sentinel"])
    with KafkaSource(broker.bootstrap, group, [topic], settings=FAST_GROUP) as again:
        assert [r.value for r in poll_until(again, 1)] == [b"sentinel"]


@pytest.mark.kafka
def test_poll_returns_what_arrived_without_waiting_for_max_records(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    topic, group = unique_name("events"), unique_name("group")
    ensure_topics(broker.bootstrap, {topic: 1})
    produce(broker.bootstrap, topic, [b"first"], kafka_client)
    with SOURCES[kafka_client](broker.bootstrap, group, [topic], settings=FAST_GROUP) as source:
        assert [r.value for r in poll_until(source, 1)] == [b"first"]
        produce(broker.bootstrap, topic, [b"second"], kafka_client)
        started = time.monotonic()
        records = flatten(source.poll(timeout_s=10.0, max_records=1000))
        assert [r.value for r in records] == [b"second"]
        assert time.monotonic() - started < 5.0, "held back waiting for a full batch"


class Member:
    """One replica: polls its own source on its own thread and tracks what it owns
    through the rebalance callbacks, as the daemon does."""

    def __init__(self, bootstrap: str, group: str, topic: str, client: str) -> None:
        self._owned: set[TopicPartition] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.error: Exception | None = None
        self.source = SOURCES[client](bootstrap, group, [topic], settings=FAST_GROUP)
        self.source.listen(self)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def owned(self) -> frozenset[TopicPartition]:
        with self._lock:
            return frozenset(self._owned)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.source.close()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.source.poll(timeout_s=0.2, max_records=100)
        except Exception as exc:
            self.error = exc

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            self._owned |= partitions

    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            self._owned -= partitions


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)  # polling an observation, not synchronising with the broker


@pytest.mark.kafka
def test_second_member_takes_half_and_gives_it_back(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    topic, group = unique_name("events"), unique_name("group")
    ensure_topics(broker.bootstrap, {topic: 4})
    everything = frozenset(TopicPartition(topic, p) for p in range(4))

    a = Member(broker.bootstrap, group, topic, kafka_client)
    try:
        wait_for(lambda: a.owned() == everything, "the first member owns every partition")
        b = Member(broker.bootstrap, group, topic, kafka_client)
        try:
            wait_for(
                lambda: len(a.owned()) == 2 and a.owned() | b.owned() == everything,
                "the two members split the partitions",
            )
            assert not a.owned() & b.owned()
        finally:
            b.close()
        assert b.owned() == frozenset()  # leaving the group revoked them
        wait_for(lambda: a.owned() == everything, "the survivor owns every partition again")
    finally:
        a.close()


@pytest.mark.kafka
def test_read_topic_returns_everything_with_headers(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    topic = unique_name("dead-letter")
    ensure_topics(broker.bootstrap, {topic: 2})
    with SINKS[kafka_client](broker.bootstrap) as sink:
        for i in range(20):
            sink.send(topic, None, b"bad-%d" % i, [("error", b"schema"), ("n", b"%d" % i)])
        sink.flush(timeout_s=10)

    records = read_topic(broker.bootstrap, topic, timeout_s=10)

    assert sorted(r.value for r in records if r.value) == sorted(b"bad-%d" % i for i in range(20))
    assert all(r.key is None and r.headers[0] == ("error", b"schema") for r in records)
    assert [(r.partition, r.offset) for r in records] == sorted(
        (r.partition, r.offset) for r in records
    )
    assert all(r.timestamp_ms > 0 for r in records)
    assert read_topic(broker.bootstrap, topic, timeout_s=10) == records  # no group, no commit


@pytest.mark.kafka
def test_ensure_topics_is_idempotent(
    broker: EmbeddedBroker, unique_name: Callable[[str], str]
) -> None:
    alerts, triggers = unique_name("alerts"), unique_name("triggers")

    assert ensure_topics(broker.bootstrap, {alerts: 4}) == {alerts: 4}
    # An existing topic keeps its partition count; the answer tells the caller.
    assert ensure_topics(broker.bootstrap, {alerts: 2, triggers: 1}) == {alerts: 4, triggers: 1}
    assert ensure_topics(broker.bootstrap, {alerts: 4, triggers: 1}) == {alerts: 4, triggers: 1}


@pytest.mark.kafka
def test_oversized_message_is_not_retriable(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    KafkaSink = SINKS[kafka_client]  # the class under test
    topic = unique_name("alerts")
    ensure_topics(broker.bootstrap, {topic: 1})
    settings = KafkaProducerSettings(max_request_size=1000)
    with (
        KafkaSink(broker.bootstrap, settings=settings) as sink,
        pytest.raises(DeliveryFailed, match=topic) as caught,
    ):
        sink.send(topic, None, b"x" * 2000)
    assert not caught.value.retriable


@pytest.mark.kafka
def test_flush_fails_while_broker_frozen_then_delivers_once(kafka_client: str) -> None:
    KafkaSink = SINKS[kafka_client]  # the class under test
    with EmbeddedBroker() as frozen:
        ensure_topics(frozen.bootstrap, {"alerts": 1})
        settings = KafkaProducerSettings(request_timeout_ms=20_000, delivery_timeout_ms=60_000)
        with KafkaSink(frozen.bootstrap, settings=settings) as sink:
            sink.send("alerts", b"fraud-scorer", b"drift!")
            sink.flush(timeout_s=10)
            frozen.pause()
            sink.send("alerts", b"fraud-scorer", b"still drifting")
            started = time.monotonic()
            with pytest.raises(DeliveryFailed, match="1 message") as caught:
                sink.flush(timeout_s=1.0)
            assert time.monotonic() - started < 2
            assert caught.value.retriable
            frozen.resume()
            sink.flush(timeout_s=20)
        values = [r.value for r in read_topic(frozen.bootstrap, "alerts")]
    assert values == [b"drift!", b"still drifting"]


@pytest.mark.kafka
def test_close_gives_up_on_a_frozen_broker_within_its_timeout(kafka_client: str) -> None:
    KafkaSink = SINKS[kafka_client]  # the class under test
    with EmbeddedBroker() as frozen:
        ensure_topics(frozen.bootstrap, {"alerts": 1})
        sink = KafkaSink(frozen.bootstrap, settings=KafkaProducerSettings(close_timeout_s=1.0))
        sink.send("alerts", None, b"first")
        sink.flush(timeout_s=10)
        frozen.pause()
        sink.send("alerts", None, b"never acknowledged")
        started = time.monotonic()
        sink.close()
        assert time.monotonic() - started < 4
    assert not [t for t in threading.enumerate() if "producer" in t.name]


def test_unreachable_broker_fails_fast_with_its_address(kafka_client: str) -> None:
    KafkaSource, KafkaSink = SOURCES[kafka_client], SINKS[kafka_client]
    bootstrap = f"127.0.0.1:{free_port()}"
    attempts: list[Callable[[], object]] = [
        lambda: KafkaSource(
            bootstrap, "g", ["t"], settings=KafkaConsumerSettings(connect_timeout_s=0.5)
        ),
        lambda: KafkaSink(bootstrap, settings=KafkaProducerSettings(connect_timeout_s=0.5)),
        lambda: ensure_topics(bootstrap, {"t": 1}, timeout_s=0.5),
        lambda: read_topic(bootstrap, "t", timeout_s=0.5),
        lambda: wait_for_broker(bootstrap, timeout_s=0.5),
    ]
    for attempt in attempts:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=bootstrap) as caught:
            attempt()
        assert time.monotonic() - started < 5
        assert caught.value.retriable


@pytest.mark.kafka
def test_embedded_broker_pause_resume_and_stop() -> None:
    with EmbeddedBroker() as extra:
        assert extra.running
        extra.pause()
        with pytest.raises(BrokerUnavailable, match=extra.bootstrap):
            wait_for_broker(extra.bootstrap, timeout_s=1.0)
        extra.resume()
        wait_for_broker(extra.bootstrap, timeout_s=5.0)
        extra.pause()  # stop() must also end a frozen broker
    assert not extra.running
    extra.stop()  # idempotent


@pytest.mark.kafka
def test_poll_groups_records_per_partition_in_offset_order(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    topic, group = unique_name("events"), unique_name("group")
    ensure_topics(broker.bootstrap, {topic: 3})
    values = [b"event-%d" % i for i in range(300)]
    with SINKS[kafka_client](broker.bootstrap) as sink:  # a key each: over the partitions
        for value in values:
            sink.send(topic, key=value, value=value)
        sink.flush(timeout_s=10)
    offsets: dict[TopicPartition, list[int]] = {}
    deadline = time.monotonic() + 20.0
    with SOURCES[kafka_client](broker.bootstrap, group, [topic], settings=FAST_GROUP) as source:
        while sum(map(len, offsets.values())) < len(values):
            assert time.monotonic() < deadline, f"got {offsets}"
            polled = source.poll(timeout_s=0.5, max_records=40)  # several polls
            assert sum(map(len, polled.values())) <= 40
            for tp, records in polled.items():
                assert records, f"{tp} is a key without records"
                assert {r.topic_partition for r in records} == {tp}
                offsets.setdefault(tp, []).extend(r.offset for r in records)
    assert set(offsets) == {TopicPartition(topic, p) for p in range(3)}
    for tp, read in offsets.items():
        assert read == sorted(set(read)), f"{tp}: not in offset order, or read twice"
    assert sum(map(len, offsets.values())) == len(values)
