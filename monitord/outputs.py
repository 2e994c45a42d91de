"""Where decisions go: a Kafka topic as CloudEvents, and JSON lines on a stream or file."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import IO, Any, Protocol

import orjson

from connectors.stream import Sink
from monitord.alerts import Alert
from monitord.clock import iso
from monitord.cloudevent import KAFKA_HEADERS, encode
from monitord.policy import Output

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def publish(self, outputs: list[Output]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None:
        """Release what the publisher owns; idempotent."""
        ...


FLUSH_TIMEOUT_S = 10.0
"""How long a flush waits for acknowledgements before the daemon reports the broker as
unreachable and waits again (the messages stay in flight meanwhile)."""


class KafkaPublisher:
    """CloudEvents keyed by model: alerts to one topic, retrain requests to another.

    Structured mode (`monitord.cloudevent`): the record's value is the whole event, its
    only header ``content-type: application/cloudevents+json; charset=utf-8``."""

    def __init__(
        self, sink: Sink, alert_topic: str, trigger_topic: str, timeout_s: float = FLUSH_TIMEOUT_S
    ):
        self._sink, self._timeout_s = sink, timeout_s
        self._alert_topic, self._trigger_topic = alert_topic, trigger_topic

    def publish(self, outputs: list[Output]) -> None:
        for output in outputs:
            self._sink.send(
                self._alert_topic if isinstance(output, Alert) else self._trigger_topic,
                output.model.encode(),
                encode(output),
                KAFKA_HEADERS,
            )

    def flush(self) -> None:
        self._sink.flush(self._timeout_s)

    def close(self) -> None:
        """The sink is the daemon's (it also carries dead letters); the daemon closes it."""


def summary(output: Output) -> dict[str, Any]:
    """A flat, human-scannable JSON line: kind, ids, where it fired and the evidence."""
    data = dataclasses.asdict(output)
    data["kind"] = "alert" if isinstance(output, Alert) else "retrain"
    data["row"] = output.offset.first_offset  # input row (replay) / offset (Kafka) that decided
    data["stream_row"] = output.row
    data["partition"] = output.offset.partition
    data["start_time"], data["end_time"] = iso(output.start_time), iso(output.end_time)
    del data["offset"]
    return data


def describe(output: Output) -> str:
    """One readable line: what fired or resolved, or which retrain was requested, and why."""
    if isinstance(output, Alert):
        if output.columns or not output.feature:  # an incident or a change
            moved = ", ".join(sorted({column[0] for column in output.columns}))
            detail = f"columns {moved or 'back to normal'}"
        elif math.isnan(output.threshold):  # an ADWIN change point
            detail = f"change point, means {output.statistic:.3f} apart"
        else:
            detail = f"{output.statistic:.3f} (threshold {output.threshold:.3f})"
        what = f"{output.feature} {output.detector}" if output.feature else output.detector
        return f"{output.severity} {output.model}/{output.version} {what}: {detail}"
    if output.reason == "drift":
        detail = (
            f"{len(output.drifted_features)} columns drifted ({output.feature_share:.0%}) "
            f"for {output.windows} windows"
        )
    else:
        detail = output.detail or output.reason
    return f"{output.model}/{output.version} ({output.reason}): {detail}"


def log_outputs(outputs: list[Output]) -> None:
    """One info line per alert transition and retrain request, with its ids as context."""
    for output in outputs:
        context: dict[str, object] = {
            "model": output.model,
            "model_version": output.version,
            "output_id": output.id,
        }
        if isinstance(output, Alert):
            labels = dict(output.labels)
            context |= {
                "alertname": labels.get("alertname", ""),
                "status": output.status,
                "severity": output.severity,
                "feature": output.feature,
                "detector": output.detector,
            }
            log.info(
                "alert %s: %s %s",
                output.status,
                labels.get("alertname", ""),
                describe(output),
                extra=context,
            )
        else:
            context["reason"] = output.reason
            log.info("retrain requested: %s", describe(output), extra=context)


class JsonLinesPublisher:
    """One JSON object per output and line, flushed per batch (stdout or a file)."""

    def __init__(self, stream: IO[bytes], owned: bool = True) -> None:
        self._stream, self._owned = stream, owned

    def publish(self, outputs: list[Output]) -> None:
        for output in outputs:
            self._stream.write(orjson.dumps(summary(output)) + b"\n")

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        if self._owned:
            self._stream.close()


__all__ = [
    "FLUSH_TIMEOUT_S",
    "JsonLinesPublisher",
    "KafkaPublisher",
    "Publisher",
    "describe",
    "log_outputs",
    "summary",
]
