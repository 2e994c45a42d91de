from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from connectors.outbox import Outbox
from connectors.stream import Record
from detectors.detection import Detection
from monitord.admin import AdminServer, Health
from monitord.config import AdminSettings, ConfigError, parse_config
from monitord.metrics import DaemonMetrics
from monitord.monitor import Evaluation, OffsetRange

PROMTOOL = Path("/usr/bin/promtool")


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000.0)


@pytest.fixture
def health(clock: Clock) -> Health:
    return Health(liveness_timeout_s=60.0, clock=clock)


@pytest.fixture
def metrics() -> DaemonMetrics:
    return DaemonMetrics(version="1.2.3", clock=lambda: 1_800_000_000.0)


@pytest.fixture
def admin(metrics: DaemonMetrics, health: Health) -> Iterator[AdminServer]:
    status = {"models": {"fraud": {"version": "7", "warming_up": False}}, "ready": False}
    with AdminServer("127.0.0.1", 0, metrics, health, lambda: status) as server:
        yield server


def request(
    server: AdminServer, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_binds_loopback_and_a_free_port(admin: AdminServer) -> None:
    assert admin.port > 0
    assert admin.url == f"http://127.0.0.1:{admin.port}"


def test_livez_follows_the_heartbeat(admin: AdminServer, health: Health, clock: Clock) -> None:
    assert request(admin, "/livez")[::2] == (200, b"ok\n")
    clock.at = 1_060.0  # a slow start is not a dead loop: counted from construction
    assert request(admin, "/livez")[::2] == (200, b"ok\n")
    clock.at = 1_061.5
    status, headers, body = request(admin, "/livez")
    assert (status, headers["Content-Type"]) == (503, "application/json")
    assert json.loads(body) == {
        "live": False,
        "reason": "no heartbeat since start for 61.5s (limit 60s)",
    }
    health.heartbeat()
    assert request(admin, "/livez")[::2] == (200, b"ok\n")
    clock.at = 1_121.5
    assert request(admin, "/livez")[::2] == (200, b"ok\n")
    clock.at = 1_121.75
    status, _, body = request(admin, "/livez")
    assert (status, json.loads(body)["reason"]) == (503, "no heartbeat for 60.2s (limit 60s)")


def test_readyz_lists_what_is_missing(admin: AdminServer, health: Health) -> None:
    status, headers, body = request(admin, "/readyz")
    assert (status, headers["Content-Type"]) == (503, "application/json")
    assert json.loads(body) == {
        "ready": False,
        "reasons": [
            "config: not reported yet",
            "assigned: not reported yet",
            "state_restored: not reported yet",
            "broker: not reported yet",
        ],
    }
    for condition in ("config", "assigned", "state_restored", "broker"):
        health.set_condition(condition, True, "")
    assert request(admin, "/readyz")[::2] == (200, b"ok\n")
    health.set_condition("broker", False, "127.0.0.1:9092 unreachable for 12s")
    status, _, body = request(admin, "/readyz")
    assert (status, json.loads(body)) == (
        503,
        {"ready": False, "reasons": ["broker: 127.0.0.1:9092 unreachable for 12s"]},
    )
    health.set_condition("broker", True, "")
    assert request(admin, "/readyz")[::2] == (200, b"ok\n")


def test_a_watched_problem_fails_its_condition_whatever_was_reported(
    admin: AdminServer, health: Health
) -> None:
    problem: list[str] = []
    health.watch("broker", lambda: problem[0] if problem else None)
    for condition in ("config", "assigned", "state_restored", "broker"):
        health.set_condition(condition, True, "")
    assert request(admin, "/readyz")[::2] == (200, b"ok\n")
    problem.append("no connection to any broker")  # the loop has not noticed (blocked)
    status, _, body = request(admin, "/readyz")
    assert (status, json.loads(body)["reasons"]) == (503, ["broker: no connection to any broker"])
    problem.clear()
    health.set_condition("broker", False, "commit failed")  # what the loop saw stays
    status, _, body = request(admin, "/readyz")
    assert (status, json.loads(body)["reasons"]) == (503, ["broker: commit failed"])
    with pytest.raises(ValueError, match="unknown readiness condition 'brokr'"):
        health.watch("brokr", lambda: None)


def test_unknown_condition_is_refused(health: Health) -> None:
    with pytest.raises(ValueError, match="unknown readiness condition 'brokr'"):
        health.set_condition("brokr", True, "")


def test_metrics_mirror_readiness_and_heartbeat(
    admin: AdminServer, health: Health, clock: Clock
) -> None:
    status, headers, body = request(admin, "/metrics")
    assert (status, headers["Content-Type"]) == (200, "text/plain; version=0.0.4; charset=utf-8")
    lines = body.decode().splitlines()
    assert "monitord_ready 0.0" in lines
    assert not [line for line in lines if line.startswith("monitord_loop_heartbeat")]
    for condition in ("config", "assigned", "state_restored", "broker"):
        health.set_condition(condition, True, "")
    clock.at = 1_005.25
    health.heartbeat()
    lines = request(admin, "/metrics")[2].decode().splitlines()
    assert "monitord_ready 1.0" in lines
    assert "monitord_loop_heartbeat_timestamp_seconds 1005.25" in lines


def test_status_is_json(admin: AdminServer) -> None:
    status, headers, body = request(admin, "/status")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body) == {
        "models": {"fraud": {"version": "7", "warming_up": False}},
        "ready": False,
    }


def test_a_failing_status_answers_500(metrics: DaemonMetrics, health: Health) -> None:
    def broken() -> dict[str, object]:
        raise RuntimeError("no status")

    with AdminServer("127.0.0.1", 0, metrics, health, broken) as server:
        assert request(server, "/status")[::2] == (500, b"internal error; see the daemon's log\n")
        assert request(server, "/livez")[0] == 200  # the server keeps serving


def test_only_get_and_head_on_known_paths(admin: AdminServer) -> None:
    assert request(admin, "/nope")[0] == 404
    assert request(admin, "/metrics/")[0] == 404
    assert request(admin, "/livez?verbose=1")[::2] == (200, b"ok\n")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = request(admin, "/metrics", method)
        assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, headers, body = request(admin, "/livez", "HEAD")
    assert (status, headers["Content-Length"], body) == (200, "3", b"")


def test_close_releases_the_port_and_is_idempotent(metrics: DaemonMetrics, health: Health) -> None:
    server = AdminServer("127.0.0.1", 0, metrics, health, dict).start()
    port = server.port
    assert request(server, "/livez")[0] == 200
    server.close()
    server.close()
    with pytest.raises(ConnectionRefusedError):
        request(server, "/livez")
    with socket.socket() as probe:
        # SO_REUSEADDR passes over closed connections in TIME_WAIT, never over a listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()


def test_a_port_in_use_fails_at_construction(admin: AdminServer, metrics: DaemonMetrics) -> None:
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{admin.port}"):
        AdminServer("127.0.0.1", admin.port, metrics, Health(), dict)


def _evaluation(model: str, detector: str, features: tuple[str, ...]) -> Evaluation:
    n = len(features)
    statistic = np.linspace(0.1, 0.9, n)
    threshold = np.full(n, np.nan if detector == "adwin" else 0.5)
    result = Detection(
        detector, 0, 99, statistic, threshold, statistic > 0.5, None, np.full(n, 100)
    )
    record = Record("events", 0, 99, None, b"{}", 0)
    offsets = (OffsetRange("events", 0, 0, 99),)
    return Evaluation(model, "1", "p", features, result, offsets, record, 0.0, 1.0)


@pytest.mark.promtool
def test_live_scrape_passes_promtool(tmp_path: Path, health: Health) -> None:
    assert PROMTOOL.exists(), "install promtool: apt-get install -y prometheus (or make test)"
    outbox = Outbox(tmp_path / "outbox.sqlite")
    outbox.enqueue("m1", "alertmanager", b"{}", now=0.0)
    metrics = DaemonMetrics(outbox=tmp_path / "outbox.sqlite", receivers=["alertmanager"])
    metrics.batch(1000, 0.05)
    metrics.bad_records({"invalid_json": 3})
    metrics.model_events("fraud", "1", 997, 1_700_000_000.0)
    metrics.model_events("fraud", "2", 3, 1_700_000_000.0)  # a canary beside version 1
    canary = dataclasses.replace(_evaluation("fraud", "ks", ("amount", "age")), version="2")
    metrics.evaluations(
        [
            _evaluation("fraud", "ks", ("amount", "age")),
            _evaluation("fraud", "adwin", ("@prediction",)),
            canary,
        ]
    )
    metrics.lag({("events", 0): 12})
    metrics.checkpointed(1_700_000_001.0)
    health.heartbeat()
    with AdminServer("127.0.0.1", 0, metrics, health, dict) as server:
        status, _, body = request(server, "/metrics")
    outbox.close()
    assert status == 200
    assert b'monitord_outbox_pending_messages{receiver="alertmanager"} 1.0' in body
    for version in (b"1", b"2"):
        drift = (
            b'monitord_drift_statistic{detector="ks",feature="age",model="fraud",model_version="'
        )
        assert drift + version + b'"}' in body
    checked = subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=body,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, b"", b"")


# What Prometheus 2.x/3.x sends when it scrapes (scrape_protocols at their defaults).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,"
    "application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)


def test_metrics_answer_openmetrics_when_the_scrape_asks_for_it(admin: AdminServer) -> None:
    admin.metrics.model_events("fraud", "7", 10, 1_700_000_000.0)
    status, headers, body = request(admin, "/metrics", headers={"Accept": PROMETHEUS_ACCEPT})
    assert status == 200
    content_type = headers["Content-Type"]
    assert content_type.startswith("application/openmetrics-text; version=1.0.0; charset=utf-8")
    assert body.endswith(b"# EOF\n")
    parsed = text_string_to_metric_families(body.decode())  # type: ignore[no-untyped-call]
    families = {f.name: f for f in parsed}
    (sample,) = families["monitord_model_events"].samples
    assert (sample.name, sample.labels, sample.value) == (
        "monitord_model_events_total",
        {"model": "fraud", "model_version": "7"},
        10.0,
    )
    assert "process_cpu_seconds" in families
    assert "python_info" in families
    # Without an Accept header (curl, older scrapers): the text format 0.0.4.
    status, headers, body = request(admin, "/metrics")
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# EOF" not in body


def test_admin_section_of_the_config() -> None:
    assert parse_config({}).admin == AdminSettings(
        enabled=True, host="127.0.0.1", port=9475, max_feature_series=10_000
    )
    with pytest.raises(ConfigError, match=r"admin\.port: Input should be less than or equal"):
        parse_config({"admin": {"port": 70_000}})
    with pytest.raises(ConfigError, match=r"admin\.max_feature_series"):
        parse_config({"admin": {"max_feature_series": 0}})


def test_a_client_resetting_its_connection_leaves_no_traceback(
    admin: AdminServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A keep-alive client that resets its connection (RST) between requests: one debug
    line, where socketserver printed a traceback to stderr for each (a flood fills it)."""
    caplog.set_level(logging.DEBUG, logger="monitord.admin")
    for _ in range(3):
        client = socket.create_connection(("127.0.0.1", admin.port), timeout=10)
        client.sendall(b"GET /livez HTTP/1.1\r\nHost: monitord\r\n\r\n")
        assert client.recv(4096).startswith(b"HTTP/1.1 200")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # linger 0: a reset, while the server waits for the next request
    deadline, stderr = time.monotonic() + 10, ""
    while sum("dropped the connection" in r.getMessage() for r in caplog.records) < 3:
        stderr += capfd.readouterr().err
        if stderr.count("ConnectionResetError") >= 3:
            break  # the server handled them by printing tracebacks
        assert time.monotonic() < deadline, "the server never saw the resets"
        time.sleep(0.01)
    assert "Traceback" not in stderr + capfd.readouterr().err
