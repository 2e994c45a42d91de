"""Kafka source and sink on confluent-kafka (librdkafka): the `kafka.client = "confluent"`
choice, behind the same `Source` and `Sink` protocols as `connectors.kafka`.

Needs the optional extra (``pip install 'monitord[confluent]'``). Settings, security and the
topic helpers are `connectors.kafka`'s; no confluent-kafka type escapes this module.
librdkafka talks to the embedded Tansu broker with its defaults (``api.version.request``
finds the API versions Tansu advertises), so nothing here is broker-specific but the
high-watermark checks `KafkaSource` also makes.
"""

from __future__ import annotations

import itertools
import json
import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as ConfluentPartition

from connectors.kafka import (
    OFFSET_LOOKUP_TIMEOUT_MS,
    KafkaConsumerSettings,
    KafkaProducerSettings,
    KafkaSecurity,
    existing_topics,
    wait_for_broker,
)
from connectors.stream import (
    BrokerUnavailable,
    Closing,
    CommitFailed,
    ConnectorError,
    DeliveryFailed,
    OffsetReset,
    Polled,
    RebalanceListener,
    Record,
    TopicPartition,
    by_partition,
    headers_of,
    topic_partitions,
)

log = logging.getLogger(__name__)

# The broker rejected a commit because this member's generation is stale (it rebalanced).
_REBALANCED = frozenset(
    (
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
    )
)
_UNREACHABLE = frozenset(
    (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT)
)
# Delivery failures a new producer can get past: librdkafka gives up on a message after
# delivery.timeout.ms, or on all of them once the producer's state went bad (fatal).
_SEND_AGAIN = frozenset(
    (
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._FATAL,
        KafkaError._PURGE_QUEUE,
        KafkaError._PURGE_INFLIGHT,
    )
)
_NO_OFFSET = -1001  # librdkafka's RD_KAFKA_OFFSET_INVALID: no position, no watermark yet
STATISTICS_INTERVAL_MS = 1000
"""How often librdkafka reports its brokers' connection states (read by `unreachable`)."""


def security_config(security: KafkaSecurity) -> dict[str, Any]:
    """librdkafka's names for ``security``; TLS files are checked here, naming the one at
    fault (librdkafka would only log it and retry)."""
    config: dict[str, Any] = {"security.protocol": security.security_protocol.lower()}
    if security.sasl_mechanism is not None:
        config |= {
            "sasl.mechanism": security.sasl_mechanism,
            "sasl.username": security.sasl_username,
            "sasl.password": security.sasl_password,
        }
    if security.tls:
        security.ssl_context()  # raises `TlsFileError` naming a file it cannot use
        config["ssl.ca.location"] = security.ssl_cafile or "probe"  # "probe": the system's
        if security.ssl_certfile is not None:
            config["ssl.certificate.location"] = security.ssl_certfile
        if security.ssl_keyfile is not None:
            config["ssl.key.location"] = security.ssl_keyfile
        config["ssl.endpoint.identification.algorithm"] = (
            "https" if security.ssl_check_hostname else "none"
        )
    return config


def _common_config(bootstrap: str, client_id: str, connect_timeout_s: float) -> dict[str, Any]:
    servers = [server.strip() for server in bootstrap.split(",") if server.strip()]
    if not servers:
        raise ValueError("bootstrap: give at least one host:port")
    return {
        "bootstrap.servers": ",".join(servers),
        "client.id": client_id,
        # librdkafka's 30 s default would let a black-holed address hold startup that long.
        "socket.connection.setup.timeout.ms": max(1000, int(connect_timeout_s * 1000)),
        # librdkafka's own log lines (it would print them on stderr), as Python records.
        "logger": log,
    }


FETCH_QUEUE_BACKOFF_MS = 10
"""How soon librdkafka fetches again once its local queue of a partition was full
(``queued.min.messages``). Its default, 1000 ms, stalls a consumer that takes a whole
queue in one poll, as the daemon's large batches do: the next fetch waits up to a second
after the queue was drained (a run of 200k events lost 0.5 s to it, one run in three).
Not 0: while the daemon works and the queue stays full, the fetcher then checks it in a
busy loop (a whole core)."""


def fetch_config(s: KafkaConsumerSettings) -> dict[str, Any]:
    """librdkafka's fetch settings for ``s``."""
    return {
        "fetch.min.bytes": s.fetch_min_bytes,
        "fetch.wait.max.ms": s.fetch_max_wait_ms,
        "fetch.max.bytes": s.fetch_max_bytes,
        "max.partition.fetch.bytes": s.max_partition_fetch_bytes,
        # librdkafka refuses a fetch size above the largest response it accepts.
        "receive.message.max.bytes": max(100_000_000, s.fetch_max_bytes + 512),
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
    }


def _error(exc: KafkaException) -> KafkaError:
    error: KafkaError = exc.args[0]
    return error


_TOPIC = operator.methodcaller("topic")
_PARTITION = operator.methodcaller("partition")
_OFFSET = operator.methodcaller("offset")
_KEY = operator.methodcaller("key")
_VALUE = operator.methodcaller("value")
_HEADERS = operator.methodcaller("headers")
_ERROR = operator.methodcaller("error")
_STAMP = operator.itemgetter(1)
_TIMESTAMP = operator.methodcaller("timestamp")
_new_record: Callable[[type[Record], tuple[Any, ...]], Record] = tuple.__new__


def _records(messages: list[Message]) -> list[Record]:
    """`Record`s of error-free messages, built by C-level passes (no Python frame per
    message as a constructor call would be)."""
    headers = list(map(_HEADERS, messages))
    fields = zip(
        map(_TOPIC, messages),
        map(_PARTITION, messages),
        map(_OFFSET, messages),
        map(_KEY, messages),
        map(_VALUE, messages),
        map(_STAMP, map(_TIMESTAMP, messages)),
        map(headers_of, headers) if any(headers) else itertools.repeat(()),
        strict=False,
    )
    return list(map(_new_record, itertools.repeat(Record), fields))


def _consume(consumer: Consumer, max_records: int, timeout_s: float) -> list[Message]:
    """Up to ``max_records`` messages, waiting at most ``timeout_s`` for the first only:
    librdkafka's consume() would wait until it has them all (or the timeout), holding a
    quiet topic's records back for the whole timeout."""
    messages = consumer.consume(max_records, 0)
    if messages or timeout_s <= 0:
        return messages
    messages = consumer.consume(1, timeout_s)
    if messages and max_records > 1:
        messages += consumer.consume(max_records - 1, 0)
    return messages


def _theirs(tp: TopicPartition, offset: int = _NO_OFFSET) -> ConfluentPartition:
    return ConfluentPartition(tp.topic, tp.partition, offset)


class ConfluentSource(Closing):
    """Reads `topics` as a member of consumer group `group_id`; nothing is auto-committed.

    librdkafka runs the rebalance callbacks inside `poll()` or `close()` on the calling
    thread, so the listener may commit there (synchronously). A listener's exception is
    re-raised by the `poll()` that triggered it; close the source then.

    Positions: seeks made while a partition is being assigned are handed to librdkafka with
    the assignment (it refuses a seek before it fetches); the next offset of each partition
    is tracked here (seeks, records returned) for `reset_positions`.
    """

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        *,
        settings: KafkaConsumerSettings | None = None,
    ) -> None:
        if not group_id:
            raise ValueError("group_id: must be a non-empty string")
        if not topics or not all(topics):
            raise ValueError("topics: give at least one topic name")
        s = settings or KafkaConsumerSettings()
        self._settings = s
        self._bootstrap, self._topics = bootstrap, tuple(topics)
        self._describe = f"group {group_id!r} on {', '.join(topics)} at {bootstrap}"
        self._listener: RebalanceListener | None = None
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._next: dict[TopicPartition, int] = {}  # next offset to read, where known
        self._seeks: dict[TopicPartition, int] = {}  # not taken by librdkafka yet
        self._assigning = False  # inside the assignment callback: seeks go with assign()
        self._lost = False  # inside a lost-partitions callback: commits would be refused
        self._callback_error: Exception | None = None
        self._resets: list[OffsetReset] = []
        self._brokers_up: bool | None = None  # from librdkafka's statistics; None: not yet
        self._closed = False
        self._subscribed: tuple[str, ...] = ()
        self._missing: tuple[str, ...] = ()
        config = _common_config(bootstrap, s.client_id, s.connect_timeout_s) | {
            "group.id": group_id,
            "enable.auto.commit": False,  # commits are explicit, after a flush
            "enable.auto.offset.store": False,
            # librdkafka starts a partition without a committed offset by the rule, as
            # `KafkaSource` does; positions past the end are moved by `reset_positions`.
            "auto.offset.reset": s.auto_offset_reset,
            # Off: a typo in a topic name should fail, not create a topic.
            "allow.auto.create.topics": False,
            **fetch_config(s),
            "session.timeout.ms": s.session_timeout_ms,
            "heartbeat.interval.ms": s.heartbeat_interval_ms,
            "max.poll.interval.ms": s.max_poll_interval_ms,
            "socket.timeout.ms": s.request_timeout_ms,
            "statistics.interval.ms": STATISTICS_INTERVAL_MS,
            "stats_cb": self._statistics,
            "error_cb": self._client_error,
            **security_config(s.security),
        }
        self._consumer = Consumer(config)
        try:
            self._subscribe_existing()  # also the bounded reachability check
        except BaseException:
            self._consumer.close()
            raise

    def listen(self, listener: RebalanceListener) -> None:
        self._listener = listener

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        self._check_open()
        if not self._subscribed:  # no input topic exists yet (see `missing_topics`)
            threading.Event().wait(timeout_s)
            return {}
        self._retry_seeks()
        try:
            messages = _consume(self._consumer, max_records, timeout_s)
        except KafkaException as exc:
            self._raise_callback_error()
            error = _error(exc)
            raise ConnectorError(
                f"poll failed for {self._describe}: {error.str()}", retriable=error.retriable()
            ) from exc
        self._raise_callback_error()
        if messages and any(map(_ERROR, messages)):
            messages = self._without_errors(messages)
        grouped = by_partition(_records(messages))
        for tp, records in grouped.items():
            self._next[tp] = records[-1].offset + 1
        return grouped

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit next-to-read offsets (see `Source.commit`) for partitions still assigned."""
        self._check_open()
        pending = []
        for tp, offset in offsets.items():
            if offset < 0:
                raise ValueError(f"offsets: {tp} has negative offset {offset}")
            if tp in self._assigned:
                pending.append(_theirs(tp, offset))
            else:
                # Committing a partition another member now owns could rewind its progress.
                log.warning("not committing %s=%d: no longer assigned to %s", tp, offset, self)
        if not pending:
            return
        if self._lost:
            log.warning("not committing %s: the group already gave them away", offsets)
            return
        try:
            answered = self._consumer.commit(offsets=pending, asynchronous=False)
        except KafkaException as exc:
            self._commit_failed(_error(exc), exc)
            return
        for answer in answered or ():
            if answer.error is not None:
                self._commit_failed(answer.error, None)

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset() if self._closed else frozenset(self._assigned)

    def end_offsets(self) -> dict[TopicPartition, int]:
        # The high watermarks of fetch responses, cached by librdkafka: no network call.
        if self._closed:
            return {}
        ends = {}
        for tp in self._assigned:
            highwater = self._highwater(tp)
            if highwater is not None:
                ends[tp] = highwater
        return ends

    def probe(self, timeout_s: float) -> None:
        """One round trip to the group coordinator; raise `BrokerUnavailable` if none."""
        self._check_open()
        if self._missing:
            self._subscribe_existing()
        if not self._assigned:  # nothing to ask about yet (a join may be in progress)
            return
        first = min(self._assigned, key=lambda tp: (tp.topic, tp.partition))
        try:
            self._consumer.committed([_theirs(first)], timeout=timeout_s)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"{self._describe} does not answer: {_error(exc).str()}"
            ) from exc

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._check_open()
        if offset < 0:
            raise ValueError(f"offset: must be >= 0, got {offset}")
        self._next[partition] = offset
        if self._assigning:
            self._seeks[partition] = offset  # given to librdkafka with the assignment
            return
        try:
            self._consumer.seek(_theirs(partition, offset))
        except KafkaException as exc:
            if _error(exc).code() != KafkaError._STATE:
                raise ConnectorError(f"seek failed for {partition}: {exc}") from exc
            # Assigned but not fetched from yet: librdkafka refuses; the next poll retries.
            self._seeks[partition] = offset

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        wanted = [tp for tp in partitions if tp in self._assigned]
        self._paused.update(wanted)
        if wanted and not self._assigning:
            self._consumer.pause([_theirs(tp) for tp in wanted])

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        wanted = [tp for tp in partitions if tp in self._assigned]
        self._paused.difference_update(wanted)
        if wanted and not self._assigning:
            self._consumer.resume([_theirs(tp) for tp in wanted])

    def reset_positions(self) -> list[OffsetReset]:
        """Move partitions whose next offset lies beyond the end of their log (see
        `Source.reset_positions`), as `KafkaSource` does: some brokers (Tansu) answer a fetch
        past the end with no records and no error, and librdkafka would stay there."""
        if self._closed:
            return []
        for tp in list(self._assigned):
            position, highwater = self._next.get(tp), self._highwater(tp)
            if position is not None and highwater is not None and position > highwater:
                self._out_of_range(tp, position, highwater)
        moves, self._resets = self._resets, []
        return moves

    def missing_topics(self) -> tuple[str, ...]:
        return self._missing

    def unreachable(self) -> str | None:
        """Why no broker is reachable: librdkafka's last statistics (each second) show no
        connection up, the group coordinator's included. None before the first."""
        if self._closed or self._brokers_up is not False:
            return None
        return f"no connection to any broker of {self._describe}"

    def close(self) -> None:
        if self._closed:
            return
        # Closing revokes every partition: on_revoked runs inside, and may still commit.
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("closing %s: %s", self, exc)
        finally:
            self._closed = True
        self._raise_callback_error()

    def __repr__(self) -> str:
        return f"ConfluentSource({self._describe})"

    def _subscribe_existing(self) -> None:
        """Subscribe to those of the topics that exist and remember the others (see
        `KafkaSource._subscribe_existing`: a broker may create a topic asked about)."""
        existing, missing = existing_topics(
            self._bootstrap, self._topics, self._settings, self._missing
        )
        if existing != self._subscribed and existing:
            self._consumer.subscribe(
                list(existing),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        self._subscribed, self._missing = existing, missing

    def _on_assign(self, consumer: Consumer, partitions: list[ConfluentPartition]) -> None:
        # An empty assignment is reported too: a member with no partitions (more replicas
        # than partitions) has joined and is legitimately idle.
        gained = topic_partitions(partitions)
        self._assigned |= gained
        self._assigning = True
        try:
            self._tell(gained, assigned=True)
        finally:
            self._assigning = False
            seeks, self._seeks = self._seeks, {}
            consumer.assign([_theirs(tp, seeks.get(tp, _NO_OFFSET)) for tp in gained])
            kept = [_theirs(tp) for tp in gained & self._paused]
            if kept:  # a pause outlives the rebalance (librdkafka forgets it)
                consumer.pause(kept)

    def _on_revoke(self, consumer: Consumer, partitions: list[ConfluentPartition]) -> None:
        self._revoked(consumer, topic_partitions(partitions), lost=False)

    def _on_lost(self, consumer: Consumer, partitions: list[ConfluentPartition]) -> None:
        self._revoked(consumer, topic_partitions(partitions), lost=True)

    def _revoked(self, consumer: Consumer, gone: set[TopicPartition], *, lost: bool) -> None:
        self._lost = lost
        try:
            if gone:
                self._tell(gone, assigned=False)
        finally:
            self._lost = False
            self._assigned -= gone
            for tp in gone:
                self._next.pop(tp, None)
                self._seeks.pop(tp, None)
            consumer.unassign()

    def _tell(self, partitions: set[TopicPartition], *, assigned: bool) -> None:
        listener = self._listener
        if listener is None:
            return
        try:
            if assigned:
                listener.on_assigned(partitions)
            else:
                listener.on_revoked(partitions)
        except Exception as exc:
            # librdkafka's callback must return; the poll() caller owns the error.
            self._callback_error = self._callback_error or exc

    def _retry_seeks(self) -> None:
        seeks, self._seeks = self._seeks, {}
        for tp, offset in seeks.items():
            if tp in self._assigned:
                self.seek(tp, offset)

    def _without_errors(self, messages: list[Message]) -> list[Message]:
        """The messages that are records; errors are logged (librdkafka retries them) or,
        when fatal, raised."""
        kept = []
        for message in messages:
            error = message.error()
            if error is None:
                kept.append(message)
            elif error.fatal():
                raise ConnectorError(f"{self._describe}: {error.str()}")
            else:
                log.warning("%s [%s]: %s", self, message.partition(), error.str())
        return kept

    def _highwater(self, tp: TopicPartition) -> int | None:
        try:
            _, high = self._consumer.get_watermark_offsets(_theirs(tp), cached=True)
        except KafkaException:
            return None
        return None if high < 0 else int(high)

    def _out_of_range(self, tp: TopicPartition, offset: int, log_end: int) -> None:
        """Move ``tp``, whose next ``offset`` lies beyond ``log_end`` (the high watermark),
        to the log's start or end (``auto_offset_reset``) and queue the move. The log start
        is asked for here (a network call, only on this rare path)."""
        timeout_s = min(self._settings.request_timeout_ms, OFFSET_LOOKUP_TIMEOUT_MS) / 1000
        try:
            bounds = self._consumer.get_watermark_offsets(_theirs(tp), timeout=timeout_s)
        except KafkaException as exc:
            log.warning("%s: cannot read the bounds of %s yet: %s", self, tp, exc)
            return
        if bounds is None:
            return  # no answer: the next check tries again
        log_start = int(bounds[0])
        rule = self._settings.auto_offset_reset
        reset_to = log_start if rule == "earliest" else log_end
        self.seek(tp, reset_to)
        self._resets.append(OffsetReset(tp, offset, log_start, log_end, rule, reset_to))

    def _commit_failed(self, error: KafkaError, exc: BaseException | None) -> None:
        code = error.code()
        if code == KafkaError._NO_OFFSET:
            return  # nothing new to commit
        if code in _REBALANCED:
            raise CommitFailed(f"commit rejected for {self._describe}: {error.str()}") from exc
        if code in _UNREACHABLE:
            raise BrokerUnavailable(
                f"commit timed out for {self._describe}: {error.str()}"
            ) from exc
        raise ConnectorError(
            f"commit failed for {self._describe}: {error.str()}", retriable=error.retriable()
        ) from exc

    def _statistics(self, raw: str) -> None:
        brokers = json.loads(raw).get("brokers", {}).values()
        self._brokers_up = any(broker.get("state") == "UP" for broker in brokers)

    def _client_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_up = False
        log.warning("%s: %s", self, error.str())

    def _raise_callback_error(self) -> None:
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error


class _Deliveries:
    """Delivery reports of one producer: how many of the messages sent are settled, and
    the errors of those that failed."""

    def __init__(self) -> None:
        self.sent = 0
        self.settled = 0
        self.failed: list[KafkaError] = []

    def report(self, error: KafkaError | None, _message: Message) -> None:
        self.settled += 1
        if error is not None:
            self.failed.append(error)

    @property
    def undelivered(self) -> int:
        return self.sent - self.settled


class ConfluentSink(Closing):
    """Sends messages with acks="all"; `flush` is the delivery barrier, as in `KafkaSink`."""

    def __init__(self, bootstrap: str, *, settings: KafkaProducerSettings | None = None) -> None:
        s = settings or KafkaProducerSettings()
        self._settings = s
        self._bootstrap = bootstrap
        self._closed = False
        self._unacknowledged_since: float | None = None  # first flush that timed out
        self._config = _common_config(bootstrap, s.client_id, s.connect_timeout_s) | {
            "acks": "all",
            # A key's partition as the Java client and kafka-python choose it (librdkafka's
            # default hashes with CRC32): forwarded events then share a partition with
            # labels and events a producer keyed by the same model.
            "partitioner": "murmur2_random",
            "enable.idempotence": s.enable_idempotence,
            "linger.ms": s.linger_ms,
            "batch.size": s.batch_size,
            "compression.type": s.compression_type or "none",
            "message.max.bytes": s.max_request_size,
            "request.timeout.ms": s.request_timeout_ms,
            "delivery.timeout.ms": s.delivery_timeout_ms,
            "error_cb": self._client_error,
            **security_config(s.security),
        }
        self._producer: Producer | None = None
        self._deliveries = _Deliveries()
        self._connect()

    def _connect(self) -> None:
        """A new producer, once the cluster answered a metadata request within the connect
        timeout (as `KafkaSink` checks it: a TLS handshake first, errors naming the address
        and the security protocol)."""
        s = self._settings
        wait_for_broker(self._bootstrap, s.connect_timeout_s, security=s.security)
        self._producer, self._deliveries = Producer(self._config), _Deliveries()

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None:
        """Queue a message (a ``value`` of None: a tombstone, for compacted topics);
        ``partition`` overrides the key's partition (changelogs), and ``timestamp_ms`` the
        producer's clock (a forwarded record keeps its own)."""
        self._check_open()
        if self._producer is None:  # replaced after it stopped delivering (see `flush`)
            self._connect()
        producer, deliveries = self._producer, self._deliveries
        assert producer is not None
        optional: dict[str, Any] = {}
        if partition is not None:
            optional["partition"] = partition
        if timestamp_ms is not None:
            optional["timestamp"] = timestamp_ms
        if headers:
            optional["headers"] = list(headers)
        try:
            producer.produce(topic, value, key, on_delivery=deliveries.report, **optional)
        except BufferError:
            # librdkafka's queue is full: serve delivery reports until there is room.
            producer.flush(self._settings.max_block_ms / 1000)
            try:
                producer.produce(topic, value, key, on_delivery=deliveries.report, **optional)
            except BufferError as exc:
                raise DeliveryFailed(
                    f"cannot send to {topic!r} at {self._bootstrap}: the send queue stayed "
                    f"full for {self._settings.max_block_ms} ms",
                    retriable=True,
                ) from exc
        except KafkaException as exc:
            error = _error(exc)
            raise DeliveryFailed(
                f"cannot send to {topic!r} at {self._bootstrap}: {error.str()}",
                retriable=error.retriable(),
            ) from exc
        deliveries.sent += 1
        producer.poll(0)  # serve delivery reports as they come, not all at the flush

    def flush(self, timeout_s: float) -> None:
        self._check_open()
        producer, deliveries = self._producer, self._deliveries
        if producer is None:
            return
        producer.flush(max(0.0, timeout_s))
        now = time.monotonic()
        undelivered = deliveries.undelivered
        if undelivered:
            since = self._unacknowledged_since = self._unacknowledged_since or now - timeout_s
            if now - since < self._settings.request_timeout_ms / 1000:
                raise DeliveryFailed(
                    f"{undelivered} message(s) not acknowledged by {self._bootstrap} "
                    f"within {timeout_s:g}s",
                    retriable=True,
                    pending=True,
                )
            # Past the request timeout: start afresh, as `KafkaSink` does.
            self._replace_producer()
            raise DeliveryFailed(
                f"{undelivered} message(s) not acknowledged by {self._bootstrap} within "
                f"{now - since:.0f}s; sending them again from a new producer",
                retriable=True,
            )
        self._unacknowledged_since = None
        sent, failed = deliveries.sent, deliveries.failed
        self._deliveries = _Deliveries()
        if failed:
            self._replace_producer()  # its state may be what failed them
            raise DeliveryFailed(
                f"{len(failed)} of {sent} message(s) were not delivered to "
                f"{self._bootstrap}; first error: {failed[0].str()}",
                retriable=all(e.retriable() or e.code() in _SEND_AGAIN for e in failed),
            )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._producer is None:
            return
        self._producer.flush(self._settings.close_timeout_s)
        lost = self._deliveries.undelivered + len(self._deliveries.failed)
        self._drop_producer()
        if lost:
            log.warning("%d message(s) sent to %s were not delivered before close", lost, self)

    def __repr__(self) -> str:
        return f"ConfluentSink({self._bootstrap})"

    def _replace_producer(self) -> None:
        """Drop the producer and what it holds; the next `send` connects a new one."""
        log.warning("%s: replacing the producer; unflushed messages are sent again", self)
        self._drop_producer()
        self._unacknowledged_since = None

    def _drop_producer(self) -> None:
        # Purged, librdkafka's destructor does not wait for the messages in flight.
        if self._producer is not None:
            self._producer.purge()
            self._producer.poll(0)
        self._producer, self._deliveries = None, _Deliveries()

    def _client_error(self, error: KafkaError) -> None:
        log.warning("%s: %s", self, error.str())


__all__ = [
    "FETCH_QUEUE_BACKOFF_MS",
    "STATISTICS_INTERVAL_MS",
    "ConfluentSink",
    "ConfluentSource",
    "fetch_config",
]
