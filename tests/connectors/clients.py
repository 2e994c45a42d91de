"""The two Kafka clients the Kafka tests run against (the `kafka_client` fixture's names)."""

from __future__ import annotations

from connectors.confluent import ConfluentSink, ConfluentSource
from connectors.kafka import KafkaSink, KafkaSource

SourceClass = type[KafkaSource] | type[ConfluentSource]
SinkClass = type[KafkaSink] | type[ConfluentSink]

SOURCES: dict[str, SourceClass] = {"kafka-python": KafkaSource, "confluent": ConfluentSource}
SINKS: dict[str, SinkClass] = {"kafka-python": KafkaSink, "confluent": ConfluentSink}
