"""Edges of monitord: message streams and receivers. Knows nothing of drift.

- `stream`: the boundary types (`Record`, `Source`, `Sink`, `ConnectorError`)
- `kafka`: kafka-python source, sink and topic helpers
- `broker`: the embedded Tansu broker for the demo and tests
- `memory`: in-memory source and sink for tests of the core
- `http`: JSON over HTTP, `ReceiverError` (retriable or not), the `Receiver` protocol
- `outbox`: the durable SQLite outbox and its dispatcher (retries with backoff)
- `alertmanager`, `pagerduty`, `slack`, `webhook`: receivers of alerts and triggers
"""

from connectors.alertmanager import AlertmanagerReceiver
from connectors.http import HttpResponse, Receiver, ReceiverError
from connectors.outbox import Attempt, Dispatcher, DispatchReport, Outbox, OutboxItem
from connectors.pagerduty import PagerDutyReceiver
from connectors.slack import SlackReceiver
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
from connectors.webhook import WebhookReceiver

__all__ = [
    "AlertmanagerReceiver",
    "Attempt",
    "BrokerUnavailable",
    "CommitFailed",
    "ConnectorError",
    "DeliveryFailed",
    "DispatchReport",
    "Dispatcher",
    "HttpResponse",
    "Outbox",
    "OutboxItem",
    "PagerDutyReceiver",
    "Receiver",
    "ReceiverError",
    "Record",
    "Sink",
    "SlackReceiver",
    "Source",
    "TopicPartition",
    "WebhookReceiver",
]
