"""AlertmanagerReceiver against the real Alertmanager (Debian package `prometheus-alertmanager`).

Alertmanager runs on 127.0.0.1 with a free port, clustering off and its storage in tmp_path,
and routes every alert to a webhook served by the test. The binary missing is a failure, not
a skip: `make test` installs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.alertmanager import AlertmanagerReceiver, encode_alerts, postable_alert
from connectors.broker import free_port
from connectors.http import ReceiverError
from tests.connectors.test_http import Recorded, RecordingServer

pytestmark = pytest.mark.alertmanager

BINARY = Path("/usr/bin/prometheus-alertmanager")
READY_TIMEOUT_S = 30.0
NOTIFY_TIMEOUT_S = 30.0

CONFIG = """\
global:
  resolve_timeout: 5m
route:
  receiver: test-webhook
  group_by: [alertname, model]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test-webhook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""


def get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def webhook() -> Iterator[RecordingServer]:
    with RecordingServer() as running:
        yield running


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: RecordingServer) -> Iterator[str]:
    """The base URL of a running, ready Alertmanager that notifies `webhook`."""
    if not BINARY.exists():
        pytest.fail(
            f"{BINARY} is not installed: run `apt-get install -y prometheus-alertmanager` "
            "(`make test` does it)"
        )
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(webhook_url=webhook.url + "/alerts"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(BINARY),
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip: one instance, no public port
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole at the end
        )
    try:
        wait_until_ready(base_url, process, log_path)
        yield base_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            # Doubles as the poll interval and as a check that the process is still alive.
            code = process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"alertmanager exited with {code}:\n{log_path.read_text()[-2000:]}")
    pytest.fail(f"alertmanager not ready after {READY_TIMEOUT_S}s:\n{log_path.read_text()[-2000:]}")


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
