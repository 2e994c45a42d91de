"""Kafka source, sink and topic helpers on kafka-python 3.x.

Every entry point connects with a bounded bootstrap: an unreachable broker raises
`BrokerUnavailable` naming the address instead of hanging. No kafka-python type escapes
this module.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import logging
import operator
import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kafka.errors as kafka_errors
from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
)
from kafka import TopicPartition as KafkaTopicPartition
from kafka.net.compat import KafkaNetClient
from kafka.partitioner.default import murmur2
from kafka.record import util as record_util

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
    flatten,
    headers_of,
    record_count,
    topic_partitions,
)
from connectors.tls import client_context

log = logging.getLogger(__name__)

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_OFFSET_RESETS = ("earliest", "latest")
_COMPRESSION_TYPES = (None, "gzip", "snappy", "lz4", "zstd")
# The broker rejected a commit because this member's generation is stale (it rebalanced).
_REBALANCED = (
    kafka_errors.CommitFailedError,
    kafka_errors.RebalanceInProgressError,
    kafka_errors.IllegalGenerationError,
    kafka_errors.UnknownMemberIdError,
)


def crc32c_accelerated() -> bool:
    """True if kafka-python checks record CRCs with the `crc32c` C extension."""
    return record_util.crc32c_c is not None


if not crc32c_accelerated():
    log.warning(
        "crc32c is not importable: kafka-python verifies record CRCs in pure Python, "
        "about 9x slower; install it with `pip install crc32c`"
    )


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{name}: {message}")


@dataclass(frozen=True)
class KafkaSecurity:
    """How to authenticate to the cluster; the password never appears in a repr."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of SSL and SASL_SSL (None otherwise), as kafka-python would build
        it from the ``ssl_*`` settings; `TlsFileError` names a file it cannot use."""
        if not self.tls:
            return None
        return client_context(
            ca_file=self.ssl_cafile,
            cert_file=self.ssl_certfile,
            key_file=self.ssl_keyfile,
            check_hostname=self.ssl_check_hostname,
        )

    def __post_init__(self) -> None:
        _require(
            self.security_protocol in _SECURITY_PROTOCOLS,
            "security_protocol",
            f"{self.security_protocol!r} is not one of {', '.join(_SECURITY_PROTOCOLS)}",
        )
        if not self.security_protocol.startswith("SASL_"):
            _require(
                self.sasl_mechanism is None,
                "sasl_mechanism",
                f"only used with SASL_PLAINTEXT or SASL_SSL, not {self.security_protocol}",
            )
            return
        _require(
            self.sasl_mechanism in _SASL_MECHANISMS,
            "sasl_mechanism",
            f"{self.sasl_mechanism!r} is not one of {', '.join(_SASL_MECHANISMS)}",
        )
        _require(bool(self.sasl_username), "sasl_username", f"required by {self.sasl_mechanism}")
        _require(bool(self.sasl_password), "sasl_password", f"required by {self.sasl_mechanism}")

    def client_config(self) -> dict[str, Any]:
        return {
            "security_protocol": self.security_protocol,
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
            # The context checked at startup is the one kafka-python uses.
            "ssl_context": self.ssl_context(),
        }


@dataclass(frozen=True)
class KafkaConsumerSettings:
    """Consumer tuning; defaults favour large batches for the vectorized core."""

    auto_offset_reset: str = "earliest"
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 500
    fetch_max_bytes: int = 50 * 1024 * 1024
    # Small events: a bigger per-partition fetch means fewer round trips per batch.
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    max_poll_records: int = 5000
    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    request_timeout_ms: int = 30_000
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    client_id: str = "monitord"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def __post_init__(self) -> None:
        _require(
            self.auto_offset_reset in _OFFSET_RESETS,
            "auto_offset_reset",
            f"{self.auto_offset_reset!r} is not one of {', '.join(_OFFSET_RESETS)}",
        )
        for name in (
            "fetch_min_bytes",
            "fetch_max_wait_ms",
            "fetch_max_bytes",
            "max_partition_fetch_bytes",
            "max_poll_records",
            "session_timeout_ms",
            "heartbeat_interval_ms",
            "max_poll_interval_ms",
            "request_timeout_ms",
            "connect_timeout_s",
            "close_timeout_s",
        ):
            _require(getattr(self, name) > 0, name, "must be positive")
        _require(
            self.heartbeat_interval_ms < self.session_timeout_ms,
            "heartbeat_interval_ms",
            f"must be below session_timeout_ms ({self.session_timeout_ms}), ideally a third",
        )
        _require(
            self.fetch_max_wait_ms < self.request_timeout_ms,
            "fetch_max_wait_ms",
            f"must be below request_timeout_ms ({self.request_timeout_ms})",
        )


@dataclass(frozen=True)
class KafkaProducerSettings:
    """Producer tuning; acks is always "all" so a flushed message survives a broker loss."""

    # A `KafkaSink` is flushed after each batch of sends (the daemon's outputs, a manual
    # request, a checkpoint): lingering would only hold a flush back that long. Messages
    # sent faster than one request completes still share requests. Bulk producers (the
    # demo's traffic, benchmarks) set their own.
    linger_ms: int = 0
    batch_size: int = 256 * 1024
    compression_type: str | None = None
    max_request_size: int = 1024 * 1024
    request_timeout_ms: int = 30_000
    delivery_timeout_ms: int = 120_000
    # send() blocks this long for metadata or buffer space before failing.
    max_block_ms: int = 10_000
    enable_idempotence: bool = True
    # Off: a typo in a topic name should fail, not create a topic with default partitions.
    allow_auto_create_topics: bool = False
    connect_timeout_s: float = 10.0
    close_timeout_s: float = 5.0
    client_id: str = "monitord"
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    def __post_init__(self) -> None:
        _require(
            self.compression_type in _COMPRESSION_TYPES,
            "compression_type",
            f"{self.compression_type!r} is not one of none, gzip, snappy, lz4, zstd",
        )
        for name in (
            "batch_size",
            "max_request_size",
            "request_timeout_ms",
            "delivery_timeout_ms",
            "max_block_ms",
            "connect_timeout_s",
            "close_timeout_s",
        ):
            _require(getattr(self, name) > 0, name, "must be positive")
        _require(self.linger_ms >= 0, "linger_ms", "must not be negative")
        _require(
            self.delivery_timeout_ms >= self.linger_ms + self.request_timeout_ms,
            "delivery_timeout_ms",
            "must be at least linger_ms + request_timeout_ms",
        )


_Client = TypeVar("_Client")
_Result = TypeVar("_Result")


def _connect(
    factory: Callable[..., _Client],
    bootstrap: str,
    timeout_s: float,
    *,
    clients: list[Any] | None = None,
    **config: Any,
) -> _Client:
    """Build a kafka-python client, bounding the initial bootstrap to `timeout_s`; the
    network clients it builds are appended to ``clients`` (their connection state)."""
    servers = [server.strip() for server in bootstrap.split(",") if server.strip()]
    _require(bool(servers), "bootstrap", "give at least one host:port")
    context = config.get("ssl_context")
    if context is not None:
        # kafka-python waits for a TLS handshake without a deadline: a plaintext listener
        # never answers one, and the daemon would hang at startup without a word.
        _tls_handshake(servers, bootstrap, context, config["security_protocol"], timeout_s)
    clients = [] if clients is None else clients

    def net_client(**kwargs: Any) -> Any:
        client = KafkaNetClient(**kwargs)
        clients.append(client)
        return client

    try:
        return factory(
            bootstrap_servers=servers,
            bootstrap_timeout_ms=int(timeout_s * 1000),
            kafka_client=net_client,
            **config,
        )
    except kafka_errors.KafkaError as exc:
        # The half-built client's IO thread would otherwise keep reconnecting forever.
        for client in clients:
            client.close()
        if isinstance(exc, kafka_errors.KafkaTimeoutError | kafka_errors.KafkaConnectionError):
            raise BrokerUnavailable(
                f"Kafka broker at {bootstrap} did not answer within {timeout_s:g}s: is it "
                "running, and are the address and security settings right?"
            ) from exc
        raise ConnectorError(
            f"cannot connect to Kafka at {bootstrap}: {exc}", retriable=exc.retriable
        ) from exc


def _tls_handshake(
    servers: Sequence[str],
    bootstrap: str,
    context: ssl.SSLContext,
    protocol: str,
    timeout_s: float,
) -> None:
    """Return once one bootstrap server completes a TLS handshake within ``timeout_s``.

    A server that cannot be reached at all is left to the bootstrap (which says so); one
    that is reached but does not speak TLS, or whose certificate fails verification, raises
    `BrokerUnavailable` naming the address and the security protocol.
    """
    deadline = time.monotonic() + timeout_s
    problems: list[str] = []
    for server in servers:
        host, _, port = server.rpartition(":") if ":" in server else (server, "", "9092")
        host = host.strip("[]")
        remaining = max(0.001, deadline - time.monotonic())
        try:
            sock = socket.create_connection((host, int(port)), timeout=remaining)
        except OSError:
            continue
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            with context.wrap_socket(sock, server_hostname=host):
                return
        except TimeoutError:
            problems.append(f"{server}: no TLS handshake within {timeout_s:g}s")
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            problems.append(f"{server}: TLS handshake failed ({exc})")
        finally:
            sock.close()
    if problems:
        raise BrokerUnavailable(
            f"Kafka broker at {bootstrap} (security_protocol {protocol}): "
            f"{'; '.join(problems)}. Is that a TLS listener (a plaintext port never answers "
            "one), and do kafka.ssl_cafile and kafka.ssl_check_hostname fit its certificate?"
        )


# A kafka-python ConsumerRecord's fields in `Record` order, headers left out.
_RECORD_FIELDS = operator.attrgetter("topic", "partition", "offset", "key", "value", "timestamp")
_HEADERS = operator.attrgetter("headers")
_NO_HEADERS = ((),)
_new_record: Callable[[type[Record], tuple[Any, ...]], Record] = tuple.__new__
_CHUNK = 2048  # records converted between drops of kafka-python's


def _records(polled: Mapping[Any, list[Any]]) -> Polled:
    """kafka-python's poll as ours: each partition's messages as `Record`s, in its order
    (offset order); its lists are emptied as they are converted."""
    return {
        TopicPartition(ktp.topic, ktp.partition): _converted(batch)
        for ktp, batch in polled.items()
        if batch
    }


def _converted(batch: list[Any]) -> list[Record]:
    """One partition's kafka-python records as `Record`s."""
    if any(map(_HEADERS, batch)):
        return [
            Record(
                r.topic,
                r.partition,
                r.offset,
                r.key,
                r.value,
                r.timestamp,
                headers_of(r.headers) if r.headers else (),  # no call per plain record
            )
            for r in batch
        ]
    # The usual batch: C-level passes (no Python frame per message, as a constructor call
    # would be) build each Record from the message's fields + (). Chunk by chunk, dropping
    # kafka-python's records as they are converted: the garbage collector walks every
    # object alive when it runs, and a poll holds tens of thousands.
    records: list[Record] = []
    while batch:
        chunk = batch[:_CHUNK]
        del batch[:_CHUNK]  # the polled lists are ours: poll() builds them per call
        fields = map(operator.add, map(_RECORD_FIELDS, chunk), itertools.repeat(_NO_HEADERS))
        records += map(_new_record, itertools.repeat(Record), fields)
    return records


class _Caller:
    """Runs callables from one long-lived frame: a generator that never returns.

    A kafka-python poll whose wait times out (every poll that returns nothing, such as a
    zero-timeout top-up) raises and catches an exception that refers to its own frame: a
    reference cycle, freed only by the garbage collector, that holds the fetches in flight
    (megabytes). A frame that returns while referenced also keeps its caller's frame, and
    so on down the stack, each with its locals: the cycle would hold the daemon's whole
    batch of records too. Called from inside this suspended generator, the chain stops at
    its frame.
    """

    def __init__(self) -> None:
        self._start()

    def _start(self) -> None:
        self._frame = self._calls()
        next(self._frame)

    @staticmethod
    def _calls() -> Generator[Any, Callable[[], Any], None]:
        call = yield None
        while True:
            call = yield call()

    def __call__(self, call: Callable[[], _Result]) -> _Result:
        if inspect.getgeneratorstate(self._frame) == inspect.GEN_RUNNING:  # re-entered
            return call()
        try:
            result: _Result = self._frame.send(call)
        except BaseException:
            self._start()  # the generator ended with the exception
            raise
        return result

    def close(self) -> None:
        self._frame.close()


OFFSET_LOOKUP_TIMEOUT_MS = 5000
"""Longest wait for a partition's log bounds when its offset is out of range."""


def _position(consumer: Any, ktp: Any) -> int | None:
    # The subscription state, not consumer.position(): that one blocks to look up a missing
    # position (committed offset, then a reset), where this check only wants to read it.
    state = consumer._subscription.assignment.get(ktp)
    if state is None or state.position is None:
        return None
    return int(state.position.offset)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_assigned(self, assigned: Any) -> None:
        self._source._rebalanced(assigned, assigned=True, lost=False)

    def on_partitions_revoked(self, revoked: Any) -> None:
        self._source._rebalanced(revoked, assigned=False, lost=False)

    def on_partitions_lost(self, lost: Any) -> None:
        self._source._rebalanced(lost, assigned=False, lost=True)


class KafkaSource(Closing):
    """Reads `topics` as a member of consumer group `group_id`; nothing is auto-committed.

    The rebalance listener (`listen`) runs on kafka-python's IO thread while `poll()` or
    `close()` waits for it. A `commit()` made from inside it is sent asynchronously, because a
    blocking commit there would deadlock (kafka-python 3.x raises instead). An exception
    raised by the listener is re-raised by the `poll()` that triggered it; close the source
    then, since that poll's records are dropped.
    """

    def __init__(
        self,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        *,
        settings: KafkaConsumerSettings | None = None,
    ) -> None:
        _require(bool(group_id), "group_id", "must be a non-empty string")
        _require(bool(topics) and all(topics), "topics", "give at least one topic name")
        s = settings or KafkaConsumerSettings()
        self._settings = s
        self._listener: RebalanceListener | None = None
        self._describe = f"group {group_id!r} on {', '.join(topics)} at {bootstrap}"
        self._callback_thread: int | None = None
        self._callback_lost = False
        self._callback_error: Exception | None = None
        self._closed = False
        self._caller = _Caller()
        self._drained = False  # the last poll took everything kafka-python had fetched
        self._resets: list[OffsetReset] = []  # moves made inside poll(), not reported yet
        self._network: list[Any] = []  # kafka-python's network client: connection state
        self._consumer = _connect(
            KafkaConsumer,
            bootstrap,
            s.connect_timeout_s,
            clients=self._network,
            group_id=group_id,
            client_id=s.client_id,
            enable_auto_commit=False,
            allow_auto_create_topics=False,
            # kafka-python would move an offset out of range with an info line only; with
            # "none" it raises, and `_out_of_range` moves it by the same rule, visibly.
            auto_offset_reset="none",
            fetch_min_bytes=s.fetch_min_bytes,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            fetch_max_bytes=s.fetch_max_bytes,
            max_partition_fetch_bytes=s.max_partition_fetch_bytes,
            max_poll_records=s.max_poll_records,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=s.heartbeat_interval_ms,
            max_poll_interval_ms=s.max_poll_interval_ms,
            request_timeout_ms=s.request_timeout_ms,
            **s.security.client_config(),
        )
        self._bootstrap, self._topics = bootstrap, tuple(topics)
        self._subscribed: tuple[str, ...] = ()
        self._missing: tuple[str, ...] = ()
        try:
            self._subscribe_existing()
        except BaseException:
            self._consumer.close(autocommit=False, timeout_ms=0)
            raise

    def listen(self, listener: RebalanceListener) -> None:
        self._listener = listener

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        self._check_open()
        if not self._subscribed:  # no input topic exists yet (see `missing_topics`)
            threading.Event().wait(timeout_s)
            return {}
        if timeout_s <= 0 and self._drained:
            # Nothing is fetched yet: kafka-python would only wait 0 ms for the fetch in
            # flight and leave a reference cycle behind (see _Caller) holding it, for the
            # garbage collector, which may not run for long, to free.
            self._drained = False
            return {}
        try:
            polled = self._caller(
                functools.partial(
                    self._consumer.poll,
                    timeout_ms=max(0, int(timeout_s * 1000)),
                    max_records=max_records,
                )
            )
        except kafka_errors.NoOffsetForPartitionError as exc:
            self._raise_callback_error()
            self._start_by_rule(exc.args[0] if exc.args else ())
            return {}
        except kafka_errors.OffsetOutOfRangeError as exc:
            self._raise_callback_error()
            positions = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
            for ktp, offset in positions.items():
                self._out_of_range(ktp, int(offset))
            return {}
        except kafka_errors.KafkaError as exc:
            self._raise_callback_error()
            raise ConnectorError(
                f"poll failed for {self._describe}: {exc}", retriable=exc.retriable
            ) from exc
        self._raise_callback_error()
        records = _records(polled)
        # A poll returns fewer than max_records only when it took every fetched record.
        self._drained = record_count(records) < max_records
        return records

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit next-to-read offsets (see `Source.commit`) for partitions still assigned."""
        self._check_open()
        assigned = self._consumer.assignment()
        pending: dict[Any, Any] = {}
        for tp, offset in offsets.items():
            _require(offset >= 0, "offsets", f"{tp} has negative offset {offset}")
            ktp = KafkaTopicPartition(tp.topic, tp.partition)
            if ktp in assigned:
                pending[ktp] = OffsetAndMetadata(offset, "", -1)
            else:
                # Committing a partition another member now owns could rewind its progress.
                log.warning("not committing %s=%d: no longer assigned to %s", tp, offset, self)
        if not pending:
            return
        if threading.get_ident() == self._callback_thread:
            self._commit_in_callback(pending)
            return
        try:
            self._consumer.commit(pending, timeout_ms=self._settings.request_timeout_ms)
        except _REBALANCED as exc:
            raise CommitFailed(f"commit rejected for {self._describe}: {exc}") from exc
        except (kafka_errors.KafkaTimeoutError, kafka_errors.KafkaConnectionError) as exc:
            raise BrokerUnavailable(f"commit timed out for {self._describe}: {exc}") from exc
        except kafka_errors.KafkaError as exc:
            raise ConnectorError(
                f"commit failed for {self._describe}: {exc}", retriable=exc.retriable
            ) from exc

    def assignment(self) -> frozenset[TopicPartition]:
        if self._closed:
            return frozenset()
        return frozenset(topic_partitions(self._consumer.assignment()))

    def end_offsets(self) -> dict[TopicPartition, int]:
        # The high watermarks of fetch responses: Tansu's ListOffsets answer is too low.
        if self._closed:
            return {}
        ends = {}
        for ktp in self._consumer.assignment():
            highwater = self._consumer.highwater(ktp)
            if highwater is not None:
                ends[TopicPartition(ktp.topic, ktp.partition)] = int(highwater)
        return ends

    def probe(self, timeout_s: float) -> None:
        """One round trip to the group coordinator; raise `BrokerUnavailable` if none.

        An idle consumer's `poll()` returns nothing both when the topic is quiet and when
        the broker is stalled; this tells the two apart (for readiness).
        """
        self._check_open()
        if self._missing:
            self._subscribe_existing()
        # Before the group assigned anything there is nothing to ask about; a join in
        # progress (readiness: not assigned) would also hold the coordinator's answer.
        assigned = sorted(self._consumer.assignment())
        if not assigned:
            return
        try:
            self._consumer.committed(assigned[0], timeout_ms=int(timeout_s * 1000))
        except kafka_errors.KafkaError as exc:
            raise BrokerUnavailable(f"{self._describe} does not answer: {exc}") from exc

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._check_open()
        _require(offset >= 0, "offset", f"must be >= 0, got {offset}")
        self._consumer.seek(KafkaTopicPartition(partition.topic, partition.partition), offset)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        self._consumer.pause(*self._assigned(partitions))

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._check_open()
        self._consumer.resume(*self._assigned(partitions))

    def _assigned(self, partitions: Iterable[TopicPartition]) -> list[Any]:
        """kafka-python's partitions of those of ``partitions`` still assigned (it raises
        for others)."""
        assigned = self._consumer.assignment()
        wanted = (KafkaTopicPartition(tp.topic, tp.partition) for tp in partitions)
        return [ktp for ktp in wanted if ktp in assigned]

    def reset_positions(self) -> list[OffsetReset]:
        """Move partitions whose next offset lies beyond the end of their log (see
        `Source.reset_positions`); also return the moves `poll` made.

        The end is the high watermark of the last fetch at the partition's position: some
        brokers (Tansu) answer a fetch past the end with no records and no error, which
        would leave the partition stalled there for good.
        """
        if self._closed:
            return []
        for ktp in self._consumer.assignment():
            position = _position(self._consumer, ktp)
            highwater = self._consumer.highwater(ktp)
            if position is not None and highwater is not None and position > highwater:
                self._out_of_range(ktp, position, log_end=highwater)
        moves, self._resets = self._resets, []
        return moves

    def missing_topics(self) -> tuple[str, ...]:
        """Topics to read that did not exist when last looked for (at start, then at each
        `probe` while any is missing); they are read from once they appear."""
        return self._missing

    def unreachable(self) -> str | None:
        """Why no broker is reachable: no connection to any broker of the cluster (the
        group coordinator included) is up. None before the first metadata answer."""
        if self._closed or not self._network:
            return None
        network = self._network[0]
        nodes = [broker.node_id for broker in network.cluster.brokers()]
        if not nodes:
            return None
        # kafka-python talks to the group coordinator on a connection of its own.
        coordinator = getattr(getattr(self._consumer, "_coordinator", None), "coordinator_id", None)
        if any(network.connected(node) for node in [*nodes, coordinator] if node is not None):
            return None
        return f"no connection to any broker of {self._describe}"

    def close(self) -> None:
        if self._closed:
            return
        # Closing revokes every partition: on_revoked runs inside, and may still commit.
        try:
            self._consumer.close(
                autocommit=False, timeout_ms=int(self._settings.close_timeout_s * 1000)
            )
        except kafka_errors.KafkaError as exc:
            log.warning("closing %s: %s", self, exc)
        finally:
            self._closed = True
            self._caller.close()
        self._raise_callback_error()

    def __repr__(self) -> str:
        return f"KafkaSource({self._describe})"

    def _subscribe_existing(self) -> None:
        """Subscribe to those of the topics that exist and remember the others.

        Subscribing to a missing topic would leave the group idle without a word, or make
        a broker that creates topics on a metadata request (Tansu does, whatever the
        client asks) create it with its default partition count."""
        existing, missing = existing_topics(
            self._bootstrap, self._topics, self._settings, self._missing
        )
        if existing != self._subscribed and existing:
            self._consumer.subscribe(list(existing), listener=_Listener(self))
        self._subscribed, self._missing = existing, missing

    def _start_by_rule(self, partitions: Any) -> None:
        """Partitions without a committed offset or a checkpoint: start where the rule says."""
        if not partitions:
            return
        if self._settings.auto_offset_reset == "earliest":
            self._consumer.seek_to_beginning(*partitions)
        else:
            self._consumer.seek_to_end(*partitions)

    def _out_of_range(self, ktp: Any, offset: int, log_end: int | None = None) -> None:
        """Move ``ktp``, whose next ``offset`` lies outside its log, to the log's start or end
        (``auto_offset_reset``) and queue the move for `reset_positions`.

        The log's bounds are asked for here (a network call, only on this rare path);
        ``log_end`` is the high watermark when the caller knows it, since some brokers
        answer ListOffsets(latest) below the true end. If the broker does not answer, the
        partition stays where it is and the next fetch or check tries again.
        """
        timeout_ms = min(self._settings.request_timeout_ms, OFFSET_LOOKUP_TIMEOUT_MS)
        try:
            log_start = int(self._consumer.beginning_offsets([ktp], timeout_ms)[ktp])
            if log_end is None:
                log_end = int(self._consumer.end_offsets([ktp], timeout_ms)[ktp])
        except kafka_errors.KafkaError as exc:
            log.warning("%s: cannot read the bounds of %s yet: %s", self, ktp, exc)
            return
        if log_start <= offset <= log_end:
            return  # a stale answer: the offset is readable after all
        rule = self._settings.auto_offset_reset
        reset_to = log_start if rule == "earliest" else log_end
        self._consumer.seek(ktp, reset_to)
        tp = TopicPartition(ktp.topic, ktp.partition)
        self._resets.append(OffsetReset(tp, offset, log_start, log_end, rule, reset_to))

    def _commit_in_callback(self, offsets: dict[Any, Any]) -> None:
        if self._callback_lost:
            log.warning("not committing %s: the group already gave them away", offsets)
            return

        def done(committed: Any, response: Any) -> None:
            if isinstance(response, Exception):
                log.warning("commit during rebalance failed for %s: %s", committed, response)

        self._consumer.commit_async(offsets, callback=done)

    def _rebalanced(self, partitions: Any, *, assigned: bool, lost: bool) -> None:
        # An empty assignment is reported too: a member with no partitions (more replicas
        # than partitions) has joined and is legitimately idle.
        listener = self._listener
        if listener is None or (not partitions and not assigned):
            return
        self._callback_thread = threading.get_ident()
        self._callback_lost = lost
        try:
            if assigned:
                listener.on_assigned(topic_partitions(partitions))
            else:
                listener.on_revoked(topic_partitions(partitions))
        except Exception as exc:
            # kafka-python would log and wrap it on its IO thread; the poll() caller owns it.
            self._callback_error = self._callback_error or exc
        finally:
            self._callback_thread = None

    def _raise_callback_error(self) -> None:
        error, self._callback_error = self._callback_error, None
        if error is not None:
            raise error


class KafkaSink(Closing):
    """Sends messages with acks="all"; `flush` is the delivery barrier."""

    def __init__(self, bootstrap: str, *, settings: KafkaProducerSettings | None = None) -> None:
        s = settings or KafkaProducerSettings()
        self._settings = s
        self._bootstrap = bootstrap
        self._pending: list[Any] = []  # kafka-python futures since the last flush
        self._closed = False
        self._unacknowledged_since: float | None = None  # first flush that timed out
        self._producer: Any = self._connect_producer()

    def _connect_producer(self) -> Any:
        s = self._settings
        return _connect(
            KafkaProducer,
            self._bootstrap,
            s.connect_timeout_s,
            acks="all",
            client_id=s.client_id,
            linger_ms=s.linger_ms,
            batch_size=s.batch_size,
            compression_type=s.compression_type,
            max_request_size=s.max_request_size,
            request_timeout_ms=s.request_timeout_ms,
            delivery_timeout_ms=s.delivery_timeout_ms,
            max_block_ms=s.max_block_ms,
            enable_idempotence=s.enable_idempotence,
            allow_auto_create_topics=s.allow_auto_create_topics,
            **s.security.client_config(),
        )

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
            self._producer = self._connect_producer()
        try:
            future = self._producer.send(
                topic,
                value=value,
                key=key,
                headers=list(headers),
                partition=partition,
                timestamp_ms=timestamp_ms,
            )
        except kafka_errors.KafkaTimeoutError as exc:
            raise DeliveryFailed(
                f"cannot send to {topic!r} at {self._bootstrap}: {exc} (does the topic exist?)",
                retriable=True,
            ) from exc
        except kafka_errors.KafkaError as exc:
            raise DeliveryFailed(
                f"cannot send to {topic!r} at {self._bootstrap}: {exc}", retriable=exc.retriable
            ) from exc
        self._pending.append(future)

    def flush(self, timeout_s: float) -> None:
        self._check_open()
        # Waits on our own futures: kafka-python's flush(timeout) applies the timeout to
        # each pending batch in turn, so it can block for a multiple of it.
        deadline = time.monotonic() + timeout_s
        for future in self._pending:
            if not future.is_done:
                with contextlib.suppress(Exception):  # failures are read off the futures below
                    future.get(timeout=max(0.0, deadline - time.monotonic()))
        undelivered = sum(1 for f in self._pending if not f.is_done)
        now = time.monotonic()
        if undelivered:
            since = self._unacknowledged_since = self._unacknowledged_since or now - timeout_s
            if now - since < self._settings.request_timeout_ms / 1000:
                raise DeliveryFailed(
                    f"{undelivered} message(s) not acknowledged by {self._bootstrap} "
                    f"within {timeout_s:g}s",
                    retriable=True,
                    pending=True,
                )
            # Past the request timeout: the producer may be wedged for good. A broker that
            # came back without its log does not know the producer's id, and kafka-python
            # retries that id until the delivery timeout, then stops sending at all.
            self._replace_producer()
            raise DeliveryFailed(
                f"{undelivered} message(s) not acknowledged by {self._bootstrap} within "
                f"{now - since:.0f}s; sending them again from a new producer",
                retriable=True,
            )
        self._unacknowledged_since = None
        sent, self._pending = self._pending, []
        failed = [f.exception for f in sent if f.failed()]
        if failed:
            self._replace_producer()  # its state may be what failed them
            raise DeliveryFailed(
                f"{len(failed)} of {len(sent)} message(s) were not delivered to "
                f"{self._bootstrap}; first error: {failed[0]}",
                retriable=all(getattr(e, "retriable", False) for e in failed),
            ) from failed[0]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._producer is not None:
            self._close_producer(self._settings.close_timeout_s)
        lost = sum(1 for f in self._pending if not f.succeeded())
        if lost:
            log.warning("%d message(s) sent to %s were not delivered before close", lost, self)

    def __repr__(self) -> str:
        return f"KafkaSink({self._bootstrap})"

    def _replace_producer(self) -> None:
        """Drop the producer and what it holds; the next `send` connects a new one."""
        log.warning("%s: replacing the producer; unflushed messages are sent again", self)
        self._close_producer(0.0)
        self._producer, self._pending, self._unacknowledged_since = None, [], None

    def _close_producer(self, timeout_s: float) -> None:
        try:
            self._producer.close(timeout=timeout_s)
        except kafka_errors.KafkaTimeoutError:
            # kafka-python raises here, before stopping its network thread, when messages
            # are still unsent; drop them and stop the thread as close() should have.
            sender = self._producer._sender
            sender.force_close()
            sender.join(self._settings.close_timeout_s)
            self._producer.close(timeout=0)


def wait_for_broker(
    bootstrap: str, timeout_s: float = 10.0, *, security: KafkaSecurity | None = None
) -> None:
    """Return once `bootstrap` answers a metadata request; raise `BrokerUnavailable` if not."""
    admin = _admin(bootstrap, timeout_s, security)
    try:
        admin.list_topics()
    except kafka_errors.KafkaError as exc:
        raise BrokerUnavailable(f"Kafka broker at {bootstrap} failed a metadata request") from exc
    finally:
        admin.close()


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    security: KafkaSecurity | None = None,
    timeout_s: float = 10.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, int]:
    """Create the missing `topics` (name -> partition count, with optional topic `configs`
    such as ``cleanup.policy``); return every topic's actual partition count, so a caller
    that needs co-partitioning can check it."""
    for name, partitions in topics.items():
        _require(bool(name), "topics", "topic names must be non-empty")
        _require(partitions >= 1, f"topics[{name!r}]", f"needs >= 1 partition, got {partitions}")
    if not topics:
        return {}
    admin = _admin(bootstrap, timeout_s, security)
    try:
        response = admin.create_topics(
            {
                name: {"num_partitions": n, "configs": dict((configs or {}).get(name, {}))}
                for name, n in topics.items()
            },
            timeout_ms=int(timeout_s * 1000),
            raise_errors=False,
        )
        problems = [
            f"{t['name']}: {t.get('error_message') or kafka_errors.for_code(t['error_code'])}"
            for t in response["topics"]
            if t["error_code"] not in (0, kafka_errors.TopicAlreadyExistsError.errno)
        ]
        if problems:
            raise ConnectorError(f"cannot create topics at {bootstrap}: {'; '.join(problems)}")
        admin.wait_for_topics(list(topics), timeout_ms=int(timeout_s * 1000))
        described = admin.describe_topics(list(topics))
    except kafka_errors.KafkaError as exc:
        raise ConnectorError(
            f"cannot create topics at {bootstrap}: {exc}", retriable=exc.retriable
        ) from exc
    finally:
        admin.close()
    return {t["name"]: len(t["partitions"]) for t in described}


def existing_topics(
    bootstrap: str,
    topics: tuple[str, ...],
    settings: KafkaConsumerSettings,
    missing_before: tuple[str, ...] = (),
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Those of ``topics`` that exist at ``bootstrap``, and those that do not (warned of
    when they differ from ``missing_before``): a source subscribes to the first only."""
    counts = partition_counts(
        bootstrap, topics, security=settings.security, timeout_s=settings.connect_timeout_s
    )
    existing = tuple(topic for topic in topics if topic in counts)
    missing = tuple(topic for topic in topics if topic not in counts)
    if missing != missing_before and missing:
        log.warning("input topics %s do not exist at %s", ", ".join(missing), bootstrap)
    return existing, missing


def key_partition(key: bytes, partitions: int) -> int:
    """The partition of ``partitions`` a producer gives ``key``: the Java client's murmur2,
    as kafka-python's producer and ours on librdkafka (``murmur2_random``) choose it."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def partition_counts(
    bootstrap: str,
    topics: Sequence[str],
    *,
    security: KafkaSecurity | None = None,
    timeout_s: float = 10.0,
) -> dict[str, int]:
    """Partition count of each existing topic of `topics` (missing topics are left out)."""
    admin = _admin(bootstrap, timeout_s, security)
    try:
        described = admin.describe_topics(list(topics))
    except kafka_errors.KafkaError as exc:
        raise ConnectorError(
            f"cannot describe topics at {bootstrap}: {exc}", retriable=exc.retriable
        ) from exc
    finally:
        admin.close()
    return {t["name"]: len(t["partitions"]) for t in described if t["error_code"] == 0}


def read_topic(
    bootstrap: str,
    topic: str,
    timeout_s: float = 10.0,
    *,
    security: KafkaSecurity | None = None,
    partitions: Sequence[int] | None = None,
) -> list[Record]:
    """Every record of `topic` (or of its `partitions`) up to its current end, ordered by
    partition and offset.

    Reads without a consumer group, so it never disturbs committed offsets. For tests,
    the demo and operators, not the hot path.
    """
    deadline = time.monotonic() + timeout_s
    consumer = _connect(
        KafkaConsumer,
        bootstrap,
        timeout_s,
        group_id=None,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        auto_offset_reset="earliest",
        **(security or KafkaSecurity()).client_config(),
    )
    try:
        existing = sorted(consumer.partitions_for_topic(topic) or ())
        if not existing:
            raise ConnectorError(f"topic {topic!r} does not exist at {bootstrap}")
        wanted = existing if partitions is None else sorted(partitions)
        missing = sorted(set(wanted) - set(existing))
        if missing:
            raise ConnectorError(f"topic {topic!r} at {bootstrap} has no partition {missing}")
        assigned = [KafkaTopicPartition(topic, p) for p in wanted]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        records: list[Record] = []
        # The end is the high watermark reported by fetches: Tansu's ListOffsets(latest)
        # answers the last batch's base offset + 1, so end_offsets() can be too low.
        while not all(_caught_up(consumer, tp) for tp in assigned):
            if time.monotonic() > deadline:
                raise ConnectorError(
                    f"reading {topic!r} at {bootstrap} did not finish within {timeout_s:g}s",
                    retriable=True,
                )
            records.extend(flatten(_records(consumer.poll(timeout_ms=100))))
    except kafka_errors.KafkaError as exc:
        raise ConnectorError(
            f"cannot read {topic!r} at {bootstrap}: {exc}", retriable=exc.retriable
        ) from exc
    finally:
        consumer.close(autocommit=False, timeout_ms=1000)
    records.sort(key=lambda r: (r.partition, r.offset))
    return records


def _caught_up(consumer: Any, tp: Any) -> bool:
    highwater = consumer.highwater(tp)
    return highwater is not None and consumer.position(tp) >= highwater


def _admin(bootstrap: str, timeout_s: float, security: KafkaSecurity | None) -> Any:
    return _connect(
        KafkaAdminClient,
        bootstrap,
        timeout_s,
        client_id="monitord-admin",
        request_timeout_ms=int(timeout_s * 1000),
        **(security or KafkaSecurity()).client_config(),
    )


__all__ = [
    "OFFSET_LOOKUP_TIMEOUT_MS",
    "KafkaConsumerSettings",
    "KafkaProducerSettings",
    "KafkaSecurity",
    "KafkaSink",
    "KafkaSource",
    "crc32c_accelerated",
    "ensure_topics",
    "existing_topics",
    "key_partition",
    "partition_counts",
    "read_topic",
    "wait_for_broker",
]
