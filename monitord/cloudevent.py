"""All CloudEvents 1.0 construction in one place (structured JSON mode)."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson

from monitord.alerts import Alert
from monitord.clock import iso
from monitord.policy import Output
from monitord.retrain import RetrainTrigger

SOURCE = "monitord"
ALERT_TYPE = "io.monitord.drift.alert"
RETRAIN_TYPE = "io.monitord.retrain.requested"


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


__all__ = ["ALERT_TYPE", "RETRAIN_TYPE", "SOURCE", "encode", "envelope"]
