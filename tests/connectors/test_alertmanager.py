"""AlertmanagerReceiver against the real Alertmanager (Debian package `prometheus-alertmanager`).

Alertmanager runs on 127.0.0.1 with a free port, clustering off and its storage in tmp_path,
and routes every alert to a webhook served by the test. The binary missing is a failure, not
a skip: `make test` installs it.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from connectors.alertmanager import AlertmanagerReceiver, encode_alerts, postable_alert
from connectors.http import ReceiverError
from tests.servers import NOTIFY_TIMEOUT_S, Recorded, RecordingServer

pytestmark = pytest.mark.alertmanager


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def firing_notification(requests: list[Recorded]) -> bool:
    return any(
        isinstance(body := r.json(), dict) and body.get("status") == "firing" for r in requests
    )


def test_alert_reaches_alertmanager_and_its_receiver(
    alertmanager: str, webhook: RecordingServer
) -> None:
    labels = {"alertname": "DriftDetected", "model": "fraud", "severity": "warning"}
    now = time.time()
    alert = postable_alert(
        labels,
        {"summary": "PSI 0.31 on feature amount"},
        starts_at=now,
        ends_at=now + 600,
        generator_url="http://monitord.test/models/fraud",
    )

    AlertmanagerReceiver(alertmanager).deliver(encode_alerts([alert]))

    alerts = get_json(alertmanager + "/api/v2/alerts")
    assert isinstance(alerts, list)
    assert [a["labels"] for a in alerts] == [labels]
    assert alerts[0]["annotations"] == {"summary": "PSI 0.31 on feature amount"}
    assert alerts[0]["generatorURL"] == "http://monitord.test/models/fraud"

    assert webhook.wait_for(firing_notification, NOTIFY_TIMEOUT_S), (
        f"no firing notification within {NOTIFY_TIMEOUT_S}s; got {webhook.requests}"
    )
    notification = next(r for r in webhook.requests if firing_notification([r]))
    assert notification.path == "/alerts"
    body = notification.json()
    assert isinstance(body, dict)
    assert body["receiver"] == "test-webhook"
    assert [a["labels"] for a in body["alerts"]] == [labels]
    assert body["alerts"][0]["status"] == "firing"


def test_invalid_alert_is_refused_and_not_retriable(alertmanager: str) -> None:
    # Hand-built to get past postable_alert's validation: Alertmanager rejects empty labels.
    bad = json.dumps([{"labels": {}, "annotations": {}}]).encode()
    receiver = AlertmanagerReceiver(alertmanager)
    with pytest.raises(ReceiverError, match="HTTP 400") as caught:
        receiver.deliver(bad)
    assert not caught.value.retriable
