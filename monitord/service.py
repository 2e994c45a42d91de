"""Wiring the daemon to Kafka from a validated config."""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Protocol, TypeVar

from connectors.http import Receiver
from connectors.kafka import (
    KafkaConsumerSettings,
    KafkaProducerSettings,
    KafkaSecurity,
    KafkaSink,
    KafkaSource,
    ensure_topics,
    partition_counts,
)
from connectors.outbox import Outbox
from connectors.stream import Sink, Source
from monitord.admin import Health
from monitord.audit import AuditLog
from monitord.checkpoint import ChangelogSink, ChangelogStore, CheckpointStore, LocalStore
from monitord.config import Config, ConfigError
from monitord.daemon import Daemon
from monitord.dead_letter import producer_request_bytes
from monitord.delivery import Delivery, build_receivers
from monitord.metrics import DaemonMetrics, check_cardinality
from monitord.outputs import JsonLinesPublisher, KafkaPublisher, Publisher
from monitord.registry import references_loader, registry_references

log = logging.getLogger(__name__)


def kafka_security(config: Config) -> KafkaSecurity:
    kafka = config.kafka
    password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
    return KafkaSecurity(
        kafka.security_protocol,
        kafka.sasl_mechanism,
        kafka.sasl_username,
        password,
        ssl_cafile=_path(kafka.ssl_cafile),
        ssl_certfile=_path(kafka.ssl_certfile),
        ssl_keyfile=_path(kafka.ssl_keyfile),
        ssl_check_hostname=kafka.ssl_check_hostname,
    )


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def build_kafka_daemon(
    config: Config,
    extra: list[Publisher] | None = None,
    *,
    health: Health | None = None,
    metrics: DaemonMetrics | None = None,
    stopping: threading.Event | None = None,
) -> Daemon:
    """A daemon reading the input topics and writing every output topic of ``config``;
    ``stopping`` stops its loop (its own event by default).

    What is built before a later step fails is closed again (the consumer leaves its
    group rather than hold its partitions until a timeout); the daemon owns the rest.
    """
    if config.kafka.client == "confluent":
        _require_confluent()  # before connecting to anything
    receivers = build_receivers(config.receivers)  # secrets checked before joining the group
    security = kafka_security(config)
    topics = _topics(config, security)
    with ExitStack() as built:
        source = _closed_on_failure(built, kafka_source(config, topics, security))
        sink = _closed_on_failure(built, output_sink(config, security))
        files = _file_publishers(config, built)
        publishers, audit = topic_publishers(config, sink, built)
        publishers += files
        if config.receivers:
            publishers.append(_closed_on_failure(built, alert_delivery(config, receivers)).start())
        store = checkpoint_store(config, security)
        if store is not None:
            built.callback(store.close)
        registry = registry_references(config)
        if registry is not None:
            built.callback(registry.close)
        daemon = Daemon(
            config,
            source,
            sink,
            [*publishers, *(extra or [])],
            references_loader(config, registry),
            store,
            health=health,
            metrics=metrics,
            registry=registry,
            recorder=audit,
            stopping=stopping,
            internal_partitions=_internal_partitions(config, security),
        )
        built.pop_all()  # the daemon closes them now
    source.listen(daemon)  # the first poll assigns partitions: the daemon restores them
    return daemon


class _Closeable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closeable)


def _closed_on_failure(built: ExitStack, part: C) -> C:
    built.callback(part.close)
    return part


def _topics(config: Config, security: KafkaSecurity) -> list[str]:
    """The topics the daemon reads (the input, the repartition topic and the label
    topics), once the output topics exist."""
    kafka = config.kafka
    outputs = (kafka.dead_letter_topic, kafka.alert_topic, kafka.trigger_topic)
    ensure_topics(
        kafka.bootstrap_servers,
        dict.fromkeys(outputs, 1),
        security=security,
        timeout_s=kafka.connect_timeout_s,
    )
    topics = list(kafka.input_topics)
    if kafka.repartition:
        topics.append(ensure_co_partitioned(config, kafka.internal_topic, security))
    if config.labels.topics:
        _check_label_partitions(config, security)
        topics += config.labels.topics
    return topics


def _internal_partitions(config: Config, security: KafkaSecurity) -> int:
    """The repartition topic's partition count, if labels wait for its forwards (else 0)."""
    kafka = config.kafka
    if not (kafka.repartition and config.labels.topics):
        return 0
    topic = kafka.internal_topic
    counts = partition_counts(
        kafka.bootstrap_servers, [topic], security=security, timeout_s=kafka.connect_timeout_s
    )
    return counts[topic]


def kafka_source(config: Config, topics: list[str], security: KafkaSecurity) -> Source:
    """The consumer of ``topics`` in the daemon's group, on the configured client."""
    kafka, c = config.kafka, config.kafka.consumer
    settings = KafkaConsumerSettings(
        auto_offset_reset=kafka.auto_offset_reset,
        fetch_min_bytes=c.fetch_min_bytes,
        fetch_max_wait_ms=c.fetch_max_wait_ms,
        fetch_max_bytes=c.fetch_max_bytes,
        max_partition_fetch_bytes=c.max_partition_fetch_bytes,
        max_poll_records=c.max_poll_records,
        session_timeout_ms=c.session_timeout_ms,
        heartbeat_interval_ms=c.heartbeat_interval_ms,
        max_poll_interval_ms=c.max_poll_interval_ms,
        connect_timeout_s=kafka.connect_timeout_s,
        security=security,
    )
    if kafka.client == "confluent":
        _require_confluent()
        from connectors.confluent import ConfluentSource  # noqa: PLC0415  # optional extra

        return ConfluentSource(kafka.bootstrap_servers, kafka.group_id, topics, settings=settings)
    return KafkaSource(kafka.bootstrap_servers, kafka.group_id, topics, settings=settings)


def kafka_sink(config: Config, settings: KafkaProducerSettings) -> ChangelogSink:
    """A producer on the configured client (`kafka.client`)."""
    if config.kafka.client == "confluent":
        _require_confluent()
        from connectors.confluent import ConfluentSink  # noqa: PLC0415  # optional extra

        return ConfluentSink(config.kafka.bootstrap_servers, settings=settings)
    return KafkaSink(config.kafka.bootstrap_servers, settings=settings)


def _require_confluent() -> None:
    if importlib.util.find_spec("confluent_kafka") is None:
        raise ConfigError(
            'kafka.client: "confluent" needs the confluent-kafka package, which is not '
            "installed: pip install 'monitord[confluent]' (or set kafka.client = "
            '"kafka-python")'
        )


def output_sink(config: Config, security: KafkaSecurity) -> Sink:
    """The producer of dead letters, alerts and retrain requests."""
    return kafka_sink(
        config,
        KafkaProducerSettings(
            connect_timeout_s=config.kafka.connect_timeout_s,
            security=security,
            max_request_size=producer_request_bytes(config.events),
        ),
    )


def topic_publishers(
    config: Config, sink: Sink, built: ExitStack
) -> tuple[list[Publisher], AuditLog | None]:
    """The audit log, if configured (first: recorded before anything is sent), and the
    alert and trigger topics; also the audit log alone, the policy's recorder."""
    kafka = config.kafka
    publishers: list[Publisher] = [KafkaPublisher(sink, kafka.alert_topic, kafka.trigger_topic)]
    audit = None
    if config.outputs.audit:
        audit = _closed_on_failure(built, AuditLog(audit_path(config)))
        publishers.insert(0, audit)
    return publishers, audit


def _file_publishers(config: Config, built: ExitStack) -> list[Publisher]:
    """JSON lines on standard output and in ``outputs.jsonl_path``, as configured."""
    publishers: list[Publisher] = []
    if config.outputs.stdout:
        publishers.append(JsonLinesPublisher(sys.stdout.buffer, owned=False))
    path = config.outputs.jsonl_path
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            publishers.append(_closed_on_failure(built, JsonLinesPublisher(path.open("ab"))))
        except OSError as exc:
            raise ConfigError(f"outputs.jsonl_path: cannot open {path} ({exc.strerror})") from None
    return publishers


def trigger_publishers(
    config: Config, connectors: Mapping[str, Receiver], built: ExitStack
) -> tuple[list[Publisher], Outbox | None]:
    """What a retrain request published without a daemon goes to (`monitord.manual`): the
    audit log, the trigger topic and, through the outbox (returned; None when no receiver
    takes triggers), the receivers. ``built`` closes them all."""
    kafka = config.kafka
    security = kafka_security(config)
    ensure_topics(
        kafka.bootstrap_servers,
        {kafka.trigger_topic: 1},
        security=security,
        timeout_s=kafka.connect_timeout_s,
    )
    sink = kafka_sink(
        config, KafkaProducerSettings(connect_timeout_s=kafka.connect_timeout_s, security=security)
    )
    built.callback(sink.close)
    publishers, _ = topic_publishers(config, sink, built)
    if not any("triggers" in r.events for r in config.receivers):
        return publishers, None
    config.state_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(config.state_dir / "outbox.sqlite")
    publishers.append(_closed_on_failure(built, Delivery(config.receivers, outbox, connectors)))
    return publishers, outbox


def observability(config: Config) -> tuple[Health, DaemonMetrics]:
    """Readiness and metrics for a daemon of ``config`` (cardinality checked first)."""
    check_cardinality(config)
    metrics = DaemonMetrics(
        max_feature_series=config.admin.max_feature_series,
        outbox=config.state_dir / "outbox.sqlite",
        receivers=[receiver.name for receiver in config.receivers],
    )
    health = Health()
    health.set_condition("config", True)
    return health, metrics


CHANGELOG_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""A checkpoint holds whole windows and captured references: far above Kafka's 1 MB default."""


def checkpoint_store(config: Config, security: KafkaSecurity) -> CheckpointStore | None:
    """The configured checkpoint store (None: `checkpoint.store = "none"`)."""
    settings, kafka = config.checkpoint, config.kafka
    if settings.store == "none":
        return None
    if settings.store == "local":
        return LocalStore(config.state_dir / "checkpoints.sqlite")
    # The topic's own message limit: a broker's default (1 MB) would refuse most checkpoints.
    topic_config = {
        "cleanup.policy": "compact",
        "max.message.bytes": str(CHANGELOG_MAX_MESSAGE_BYTES),
    }
    topic = ensure_co_partitioned(config, changelog_topic(config), security, topic_config)
    timeout = kafka.connect_timeout_s
    sink = kafka_sink(
        config,
        KafkaProducerSettings(
            connect_timeout_s=timeout,
            security=security,
            max_request_size=CHANGELOG_MAX_MESSAGE_BYTES,
        ),
    )
    return ChangelogStore(kafka.bootstrap_servers, topic, sink, security=security)


def ensure_co_partitioned(
    config: Config,
    topic: str,
    security: KafkaSecurity,
    topic_config: dict[str, str] | None = None,
) -> str:
    """Create ``topic`` (changelog, repartition) with as many partitions as the widest input
    topic, or check an existing one has them; partition p pairs with input partition p."""
    kafka = config.kafka
    timeout = kafka.connect_timeout_s
    counts = partition_counts(
        kafka.bootstrap_servers, kafka.input_topics, security=security, timeout_s=timeout
    )
    needed = max(counts.values(), default=1)
    actual = ensure_topics(
        kafka.bootstrap_servers,
        {topic: needed},
        security=security,
        timeout_s=timeout,
        configs={topic: topic_config or {}},
    )
    if actual.get(topic, needed) < needed:
        raise ConfigError(
            f"{topic!r} has {actual[topic]} partitions but the input has {needed}; give it as "
            "many partitions as the input (or choose a new topic name)"
        )
    return topic


def _check_label_partitions(config: Config, security: KafkaSecurity) -> None:
    """Warn when a label topic cannot be co-partitioned with the input (its labels join only
    where their prediction's partition happens to be read by the same replica)."""
    kafka = config.kafka
    counts = partition_counts(
        kafka.bootstrap_servers,
        [*kafka.input_topics, *config.labels.topics],
        security=security,
        timeout_s=kafka.connect_timeout_s,
    )
    inputs = {counts[t] for t in kafka.input_topics if t in counts}
    for topic in config.labels.topics:
        if topic in counts and inputs and inputs != {counts[topic]}:
            log.warning(
                "label topic %r has %d partitions, the input topics %s: labels join their "
                "prediction only when both partitions are read by the same replica; give "
                "the label topic as many partitions as the input, keyed alike",
                topic,
                counts[topic],
                sorted(inputs),
            )


def changelog_topic(config: Config) -> str:
    return config.checkpoint.changelog_topic or f"{config.kafka.group_id}.changelog"


def audit_path(config: Config) -> Path:
    return config.state_dir / "audit.sqlite"


def alert_delivery(config: Config, connectors: Mapping[str, Receiver]) -> Delivery:
    """Alert delivery to the configured receivers through the outbox in ``state_dir``."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(config.state_dir / "outbox.sqlite")
    return Delivery(
        config.receivers,
        outbox,
        connectors,
        resend_state=config.state_dir / "alertmanager-resend.json",
    )


__all__ = [
    "CHANGELOG_MAX_MESSAGE_BYTES",
    "alert_delivery",
    "audit_path",
    "build_kafka_daemon",
    "changelog_topic",
    "checkpoint_store",
    "ensure_co_partitioned",
    "kafka_security",
    "kafka_sink",
    "kafka_source",
    "observability",
    "output_sink",
    "topic_publishers",
    "trigger_publishers",
]
