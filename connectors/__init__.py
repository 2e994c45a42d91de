"""Edges of monitord: message streams and receivers. Knows nothing of drift.

- `stream`: the boundary types (`Record`, `Source`, `Sink`, `ConnectorError`)
- `kafka`: kafka-python source, sink and topic helpers
- `confluent`: the same source and sink on confluent-kafka (the optional extra `confluent`)
- `broker`: the embedded Tansu broker for the demo and tests
- `memory`: in-memory source and sink for tests of the core
- `feed`: a source reading its partitions lazily from iterators (replaying big files)
- `http`: JSON over HTTP, `ReceiverError` (retriable or not), the `Receiver` protocol
- `outbox`: the durable SQLite outbox and its dispatcher (retries with backoff)
- `alertmanager`, `pagerduty`, `slack`, `webhook`: receivers of alerts and triggers
- `airflow`, `prefect`, `argo`, `kubeflow`: orchestrators starting a run per trigger
"""

from connectors.airflow import AirflowReceiver
from connectors.alertmanager import AlertmanagerReceiver
from connectors.argo import ArgoReceiver
from connectors.feed import FeedSource
from connectors.http import CloudEvent, HttpResponse, Receiver, ReceiverError
from connectors.kubeflow import KubeflowReceiver
from connectors.outbox import Attempt, Dispatcher, DispatchReport, Outbox, OutboxItem
from connectors.pagerduty import PagerDutyReceiver
from connectors.prefect import PrefectReceiver
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
    "AirflowReceiver",
    "AlertmanagerReceiver",
    "ArgoReceiver",
    "Attempt",
    "BrokerUnavailable",
    "CloudEvent",
    "CommitFailed",
    "ConnectorError",
    "DeliveryFailed",
    "DispatchReport",
    "Dispatcher",
    "FeedSource",
    "HttpResponse",
    "KubeflowReceiver",
    "Outbox",
    "OutboxItem",
    "PagerDutyReceiver",
    "PrefectReceiver",
    "Receiver",
    "ReceiverError",
    "Record",
    "Sink",
    "SlackReceiver",
    "Source",
    "TopicPartition",
    "WebhookReceiver",
]
