"""All CloudEvents 1.0 construction in one place: structured content mode, JSON format.

Every output is one JSON object holding the whole event (``specversion``, ``id``,
``source``, ``type``, ``subject``, ``time``, ``datacontenttype`` and ``data``), sent with
``content-type: application/cloudevents+json; charset=utf-8``: on Kafka as a record header
(`KAFKA_HEADERS`, no ``ce_*`` headers, which would mark binary mode), over HTTP as the
Content-Type. The CloudEvents SDKs' ``from_kafka`` and ``from_http`` read it as it is, and
a consumer reading the body as JSON sees the same object as before.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from connectors.http import CLOUDEVENTS_JSON
from monitord.alerts import Alert
from monitord.clock import iso
from monitord.policy import Output
from monitord.retrain import RetrainTrigger

SOURCE = "monitord"
ALERT_TYPE = "io.monitord.drift.alert"
RETRAIN_TYPE = "io.monitord.retrain.requested"
KAFKA_HEADERS = (("content-type", CLOUDEVENTS_JSON.encode()),)
"""The record headers of a structured-mode CloudEvent (Kafka protocol binding, 3.2)."""


def envelope(output: Output) -> dict[str, Any]:
    """The CloudEvent for an alert or retrain request; ``id`` is the output's stable id."""
    data = dataclasses.asdict(output)
    data["start_time"], data["end_time"] = iso(output.start_time), iso(output.end_time)
    if isinstance(output, RetrainTrigger):
        data["idempotency_key"] = output.id
    return {
        "specversion": "1.0",
        "id": output.id,
        "source": f"{SOURCE}/{output.model}",
        "type": ALERT_TYPE if isinstance(output, Alert) else RETRAIN_TYPE,
        "subject": f"{output.model}/{output.version}",
        "time": iso(output.end_time),
        "datacontenttype": "application/json",
        "data": data,
    }


def encode(output: Output) -> bytes:
    return orjson.dumps(envelope(output))


__all__ = [
    "ALERT_TYPE",
    "CLOUDEVENTS_JSON",
    "KAFKA_HEADERS",
    "RETRAIN_TYPE",
    "SOURCE",
    "encode",
    "envelope",
]
