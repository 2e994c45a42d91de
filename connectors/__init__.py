"""Edges of monitord: message streams and receivers. Knows nothing of drift.

- `stream`: the boundary types (`Record`, `Source`, `Sink`, `ConnectorError`)
- `kafka`: kafka-python source, sink and topic helpers
- `broker`: the embedded Tansu broker for the demo and tests
- `memory`: in-memory source and sink for tests of the core
"""

from connectors.stream import (
    BrokerUnavailable,
    CommitFailed,
    ConnectorError,
    DeliveryFailed,
    Record,
    Sink,
    Source,
    TopicPartition,
)

__all__ = [
    "BrokerUnavailable",
    "CommitFailed",
    "ConnectorError",
    "DeliveryFailed",
    "Record",
    "Sink",
    "Source",
    "TopicPartition",
]
