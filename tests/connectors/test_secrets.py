"""Secrets never reach the outbox's file, even from a receiver that echoes the request back.

The echo (request line, headers, body: what debugging proxies and some misconfigured
receivers answer) holds every credential a connector sends: Slack's token in the URL path,
basic-auth and bearer headers, PagerDuty's routing key in the body. A failed delivery's
error quotes the answer; what is stored must have them blanked out, in every encoding.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.airflow import AirflowReceiver
from connectors.alertmanager import AlertmanagerReceiver
from connectors.argo import ArgoReceiver
from connectors.http import Receiver
from connectors.kubeflow import KubeflowReceiver
from connectors.outbox import Dispatcher, Outbox
from connectors.pagerduty import PagerDutyReceiver, trigger
from connectors.prefect import PrefectReceiver
from connectors.slack import SlackReceiver, message
from connectors.webhook import WebhookReceiver
from tests.servers import RecordingServer, echo

T0 = 1_700_000_000.0
SLACK_PATH = "/services/T0SLACKTEAM/B0SLACKHOOK/xoxbSlackToken0123456789"
HOOK_PATH = "/hooks/h00kPathSecret0123?token=hookQueryToken0123"
AIRFLOW_USER, AIRFLOW_PASSWORD = "airflow-operator", "airflowPassw0rd!/+="
BASIC = base64.b64encode(f"{AIRFLOW_USER}:{AIRFLOW_PASSWORD}".encode()).decode()
AIRFLOW_TOKEN = "eyJairflowBearerToken0123456789"
ROUTING_KEY = "R0UT1NGKEYpagerduty0123456789ABC"
PREFECT_KEY = "pnu_prefectApiKey0123456789abcdef"
ARGO_TOKEN = "argoServiceAccountToken0123456789"
KUBEFLOW_TOKEN = "kubeflowBearerToken0123456789xyz"
ALERTMANAGER_AUTH = "Bearer amProxyT0kenQRSTUVWXYZ987"
SECRETS = {
    "slack token": SLACK_PATH,
    "webhook path": HOOK_PATH,
    "airflow password": AIRFLOW_PASSWORD,
    "airflow basic auth": BASIC,
    "airflow token": AIRFLOW_TOKEN,
    "pagerduty routing key": ROUTING_KEY,
    "prefect api key": PREFECT_KEY,
    "argo token": ARGO_TOKEN,
    "kubeflow token": KUBEFLOW_TOKEN,
    "alertmanager header": ALERTMANAGER_AUTH,
}
EVENT = json.dumps({"id": "9f86d081884c7d659a2feaa0c55ad015", "data": {"model": "m"}}).encode()


@pytest.fixture
def echoing() -> Iterator[RecordingServer]:
    with RecordingServer(answer=echo(500)) as running:
        yield running


def receivers(url: str) -> dict[str, tuple[Receiver, bytes]]:
    """One connector of each kind with credentials, and a payload it accepts."""
    return {
        "slack": (SlackReceiver(url + SLACK_PATH), message("drift on m")),
        "webhook": (WebhookReceiver(url + HOOK_PATH, b"k" * 32), EVENT),
        "airflow-basic": (
            AirflowReceiver(
                url, "dag", api_version="v1", username=AIRFLOW_USER, password=AIRFLOW_PASSWORD
            ),
            EVENT,
        ),
        "airflow-token": (AirflowReceiver(url, "dag", token=AIRFLOW_TOKEN), EVENT),
        "pagerduty": (
            PagerDutyReceiver(ROUTING_KEY, url=url + "/v2/enqueue"),
            trigger("k", "drift on m", "monitord/m", "critical"),
        ),
        "prefect": (
            PrefectReceiver(url, "00000000-0000-0000-0000-000000000001", api_key=PREFECT_KEY),
            EVENT,
        ),
        "argo": (ArgoReceiver(url, "ml", "retrain", token=ARGO_TOKEN), EVENT),
        "kubeflow": (KubeflowReceiver(url, "pipeline", token=KUBEFLOW_TOKEN), EVENT),
        "alertmanager": (
            AlertmanagerReceiver(url, headers={"Authorization": ALERTMANAGER_AUTH}),
            b'[{"labels": {"alertname": "drift"}}]',
        ),
    }


def fragments(secret: str, width: int = 12) -> set[bytes]:
    """Every ``width``-character piece of ``secret``: a secret cut in two still leaks."""
    data = secret.encode()
    return {data[i : i + width] for i in range(max(1, len(data) - width + 1))}


def test_echoed_credentials_are_not_stored(tmp_path: Path, echoing: RecordingServer) -> None:
    connectors = receivers(echoing.url)
    outbox = Outbox(tmp_path / "outbox.sqlite")
    for name, (_, payload) in connectors.items():
        outbox.enqueue("message-1", name, payload, now=T0)
    report = Dispatcher(outbox, {n: c for n, (c, _) in connectors.items()}).run_due(T0)
    errors = {
        name: (outbox.get("message-1", name) or pytest.fail(name)).last_error or ""
        for name in connectors
    }
    outbox.close()

    assert report.retrying == len(connectors)
    echoed = b"".join(
        r.path.encode() + json.dumps(r.headers).encode() + r.body for r in echoing.requests
    )
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("outbox.sqlite*"))
    for what, secret in SECRETS.items():
        if what != "airflow password":  # sent (and echoed) base64-encoded only
            assert secret.encode() in echoed, f"the echo lacks the {what}: the test proves nothing"
        leaked = [piece for piece in fragments(secret) if piece in stored]
        assert not leaked, f"{what} stored in the outbox: {leaked[:3]}"
    for name, error in errors.items():
        assert "HTTP 500" in error, name  # the failure is still explained
        assert "[redacted]" in error, name


def test_failed_attempts_are_logged_with_receiver_and_status_without_secrets(
    tmp_path: Path, echoing: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    connectors = receivers(echoing.url)
    outbox = Outbox(tmp_path / "outbox.sqlite", max_attempts=2)
    for name, (_, payload) in connectors.items():
        outbox.enqueue("message-1", name, payload, now=T0)
    dispatcher = Dispatcher(outbox, {n: c for n, (c, _) in connectors.items()})
    with caplog.at_level(logging.WARNING, logger="connectors.outbox"):
        first = dispatcher.run_due(T0)
        second = dispatcher.run_due(T0 + 3600)  # every backoff is over: the last attempt
    outbox.close()

    assert (first.retrying, second.failed) == (len(connectors), len(connectors))
    for name in connectors:
        lines = [r for r in caplog.records if f"receiver {name!r}" in r.getMessage()]
        assert [r.levelno for r in lines] == [logging.WARNING, logging.ERROR], name
        assert all("HTTP 500" in r.getMessage() for r in lines), name
        assert "attempt 1" in lines[0].getMessage()
        assert "retrying" in lines[0].getMessage()
        assert "attempt 2" in lines[1].getMessage()
        assert "for good" in lines[1].getMessage()
    logged = caplog.text.encode()
    for what, secret in SECRETS.items():
        leaked = [piece for piece in fragments(secret) if piece in logged]
        assert not leaked, f"{what} logged: {leaked[:3]}"
