"""Alerts and retrain requests on the wire, read back with the official CloudEvents SDK.

Every kind of output (each alert type, firing and resolved; each retrain reason) goes
through the real paths: `KafkaPublisher` to the embedded broker, read back with the SDK's
``from_kafka``; `Delivery` through the outbox to webhook receivers on a local HTTP server,
read back with ``from_http`` (and the Standard Webhooks library verifying the signature).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.v1.http import from_http as legacy_from_http
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connectors.broker import EmbeddedBroker
from connectors.kafka import KafkaSink, ensure_topics, read_topic
from connectors.outbox import Outbox
from monitord.alerts import (
    CHANGE_ALERT,
    CHANGE_DETECTOR,
    FEATURE_ALERT,
    MODEL_ALERT,
    MODEL_DETECTOR,
    PERFORMANCE_ALERTS,
    Alert,
)
from monitord.cloudevent import ALERT_TYPE, RETRAIN_TYPE, envelope
from monitord.config import ConfigError, parse_config
from monitord.delivery import Delivery, build_receivers
from monitord.monitor import OffsetRange
from monitord.outputs import KafkaPublisher
from monitord.policy import Output
from monitord.retrain import RetrainTrigger
from tests.servers import RecordingServer

OFFSETS = (OffsetRange("events", 2, 4000, 4499),)
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks example key
MONITORD_SECRET = "webhook-secret-0123456789"


def _alert(alertname: str, detector: str, status: str, feature: str = "") -> Alert:
    labels = (("alertname", alertname), ("model", "fraud"), ("model_version", "7"))
    return Alert(
        id=f"{alertname}-{detector}-{status}",
        status="firing" if status == "firing" else "resolved",
        severity="critical" if alertname == MODEL_ALERT else "warning",
        model="fraud",
        version="7",
        feature=feature,
        detector=detector,
        statistic=0.31,
        threshold=float("nan") if detector == "adwin" else 0.2,  # ADWIN has no threshold
        profile_id="ref-1",
        first_row=4000,
        row=4499,
        offset=OffsetRange("events", 2, 4499, 4499),
        offsets=OFFSETS,
        start_time=1_764_900_000.0,
        end_time=1_764_900_600.25,
        labels=(*labels, ("detector", detector)),
        annotations=(("summary", f"{detector} on {feature or 'the model'}"),),
        columns=(("amount", "ks", 0.31, 0.2),) if alertname != FEATURE_ALERT else (),
        regime_profile_id="regime-2" if alertname == CHANGE_ALERT else None,
        evidence=(("accuracy", 0.81), ("reference_accuracy", 0.93))
        if detector in PERFORMANCE_ALERTS
        else (),
    )


def _trigger(reason: str) -> RetrainTrigger:
    return RetrainTrigger(
        id=f"retrain-{reason}",
        reason=reason,  # type: ignore[arg-type]
        model="fraud",
        version="7",
        drifted_features=("amount",) if reason == "drift" else (),
        statistics=(("amount", "ks", 0.31, 0.2),) if reason == "drift" else (),
        feature_share=0.5,
        windows=3,
        profile_id="ref-1",
        first_row=4000,
        row=4499,
        offset=OffsetRange("events", 2, 4499, 4499),
        offsets=OFFSETS,
        start_time=1_764_900_000.0,
        end_time=1_764_900_600.25,
        config_hash="c0ffee",
        detail={"schedule": "0 3 * * 1", "manual": "after the data fix"}.get(reason, ""),
        requested_at=1_764_900_700.0 if reason in ("schedule", "manual") else None,
        evidence=(("error_rate", 0.19),) if reason == "performance" else (),
    )


def every_kind() -> list[Output]:
    """One output of each kind: every alert type firing and resolved, every retrain reason."""
    alerts = [
        (FEATURE_ALERT, "ks", "amount"),
        (FEATURE_ALERT, "adwin", "@prediction"),
        (MODEL_ALERT, MODEL_DETECTOR, ""),
        (CHANGE_ALERT, CHANGE_DETECTOR, ""),
        *((name, detector, "") for detector, name in sorted(PERFORMANCE_ALERTS.items())),
    ]
    outputs: list[Output] = [
        _alert(name, detector, status, feature)
        for name, detector, feature in alerts
        for status in ("firing", "resolved")
    ]
    return outputs + [_trigger(r) for r in ("drift", "schedule", "manual", "performance")]


def assert_is_the_output(event: BaseCloudEvent, output: Output) -> None:
    """The SDK's event carries every attribute and the data of `output`'s envelope."""
    expected = orjson.loads(orjson.dumps(envelope(output)))  # as JSON has it (NaN: null)
    assert event.get_specversion() == "1.0"
    assert event.get_id() == output.id
    assert event.get_type() == (ALERT_TYPE if isinstance(output, Alert) else RETRAIN_TYPE)
    assert event.get_source() == f"monitord/{output.model}"
    assert event.get_subject() == f"{output.model}/{output.version}"
    assert event.get_datacontenttype() == "application/json"
    time = event.get_time()
    assert time is not None
    assert time.isoformat().replace("+00:00", "Z") == "2025-12-05T02:10:00.250000Z"
    assert event.get_data() == expected["data"]


@pytest.mark.kafka
def test_the_sdk_reads_every_output_from_kafka(
    broker: EmbeddedBroker, unique_name: Callable[[str], str]
) -> None:
    alerts, triggers = unique_name("alerts"), unique_name("retrain")
    ensure_topics(broker.bootstrap, {alerts: 1, triggers: 1})
    outputs = every_kind()
    with KafkaSink(broker.bootstrap) as sink:
        publisher = KafkaPublisher(sink, alerts, triggers)
        publisher.publish(outputs)
        publisher.flush()

    records = read_topic(broker.bootstrap, alerts) + read_topic(broker.bootstrap, triggers)
    by_id = {output.id: output for output in outputs}
    assert len(records) == len(outputs)
    for record in records:
        assert record.headers == (("content-type", b"application/cloudevents+json; charset=utf-8"),)
        assert record.value is not None
        message = KafkaMessage(dict(record.headers), record.key, record.value)
        event = from_kafka(message, JSONFormat())
        output = by_id.pop(event.get_id())
        assert_is_the_output(event, output)
        assert record.key == b"fraud"
        assert event.get_extension("partitionkey") == "fraud"  # the record key
        # Readers of the body as plain JSON see the same object as before.
        assert orjson.loads(record.value) == orjson.loads(orjson.dumps(envelope(output)))
    assert by_id == {}


def _receivers(url: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "standard",
            "type": "webhook",
            "url": url + "/standard",
            "secret_env": "STANDARD_KEY",
            "signing": "standard",
            "events": ["alerts", "triggers"],
        },
        {
            "name": "monitord",
            "type": "webhook",
            "url": url + "/monitord",
            "secret_env": "MONITORD_KEY",
            "events": ["alerts", "triggers"],
        },
    ]


def test_the_sdk_reads_every_output_from_http_and_verifies_standard_signatures(
    tmp_path: Path, server: RecordingServer
) -> None:
    config = parse_config({"receivers": _receivers(server.url)}, environ={})
    environ = {"STANDARD_KEY": STANDARD_SECRET, "MONITORD_KEY": MONITORD_SECRET}
    outbox = Outbox(tmp_path / "outbox.sqlite")
    delivery = Delivery(config.receivers, outbox, build_receivers(config.receivers, environ))
    outputs = every_kind()
    delivery.publish(outputs)
    for _ in range(3):  # a label set's resolution waits for its firing: one per pass
        delivery.deliver_due()
    assert outbox.pending() == 0
    delivery.close()

    by_path: dict[str, dict[str, Output]] = {
        path: {output.id: output for output in outputs} for path in ("/standard", "/monitord")
    }
    assert len(server.requests) == 2 * len(outputs)
    webhook = Webhook(STANDARD_SECRET)
    for request in server.requests:
        assert request.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
        event = from_http(HTTPMessage(request.headers, request.body), JSONFormat())
        assert_is_the_output(event, by_path[request.path].pop(event.get_id()))
        legacy = legacy_from_http(request.headers, request.body)  # the SDK's 1.x API
        assert (legacy["id"], legacy.data) == (event.get_id(), event.get_data())
        if request.path == "/standard":
            assert request.headers["webhook-id"] == event.get_id()  # stable across retries
            assert webhook.verify(request.body, request.headers) == orjson.loads(request.body)
            tampered = request.body.replace(b'"fraud"', b'"fraud2"', 1)
            with pytest.raises(WebhookVerificationError):
                webhook.verify(tampered, request.headers)
            assert "x-monitord-signature" not in request.headers
        else:
            assert "webhook-signature" not in request.headers
            assert request.headers["x-monitord-signature"].startswith("sha256=")
    assert by_path == {"/standard": {}, "/monitord": {}}


def test_a_standard_webhooks_secret_that_is_not_one_is_a_config_error(tmp_path: Path) -> None:
    config = parse_config({"receivers": _receivers("http://127.0.0.1:9")}, environ={})
    with pytest.raises(ConfigError, match=r"receivers\.0 \('standard'\): .*must be base64") as e:
        build_receivers(
            config.receivers, {"STANDARD_KEY": "not base64!", "MONITORD_KEY": MONITORD_SECRET}
        )
    assert "not base64!" not in str(e.value)
    with pytest.raises(ConfigError, match="decodes to 3 bytes; at least 16"):
        build_receivers(
            config.receivers, {"STANDARD_KEY": "whsec_YWJj", "MONITORD_KEY": MONITORD_SECRET}
        )
