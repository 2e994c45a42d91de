"""Manual retrains: `POST /retrain` on the admin endpoint into a real `Policy`, and the
`monitord retrain` command, through the daemon or `--direct` to a real Kafka-protocol broker
(embedded Tansu), a signed webhook receiver (a local HTTP server) and the audit log."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from connectors.broker import EmbeddedBroker
from connectors.kafka import read_topic
from connectors.outbox import Outbox
from connectors.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from monitord.admin import LOOPBACK, AdminServer, Health, TokenBucket
from monitord.audit import AuditLog
from monitord.cli import main
from monitord.cloudevent import RETRAIN_TYPE
from monitord.metrics import DaemonMetrics
from tests.monitord.test_retrain_policy import T0, RecordingPolicy, make_policy, window
from tests.servers import RecordingServer, closed_port_url

HOOK_KEY = "hook-signing-key-0123456789"


@pytest.fixture
def policy() -> RecordingPolicy:
    """A policy that has seen one window of model m, version 1, and is given a profile
    for version 0 (known, never seen)."""
    policy = make_policy(models=[{"name": "m", "profiles": {"0": "profiles/m@0.npz"}}])
    policy.decide(window(0))
    return policy


def _admin(
    policy: RecordingPolicy | None,
    clients: tuple[str, ...] = LOOPBACK,
    limit: TokenBucket | None = None,
) -> AdminServer:
    return AdminServer(
        "127.0.0.1",
        0,
        DaemonMetrics(),
        Health(),
        dict,
        request_retrain=None if policy is None else policy.request_retrain,
        retrain_clients=clients,
        retrain_limit=limit,
    ).start()


@pytest.fixture
def admin(policy: RecordingPolicy) -> Iterator[AdminServer]:
    with _admin(policy) as server:
        yield server


def post(
    server: AdminServer,
    body: object,
    *,
    path: str = "/retrain",
    content_type: str = "application/json",
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, data, {"Content-Type": content_type})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_post_retrain_queues_a_manual_request_for_the_current_version(
    admin: AdminServer, policy: RecordingPolicy
) -> None:
    status, _, body = post(admin, {"model": "m", "reason": "new labels arrived"})

    assert status == 202
    request_id = json.loads(body)["id"]
    (request,) = policy.due(T0 + 3600)
    assert request.id == request_id
    assert (request.reason, request.model, request.version) == ("manual", "m", "1")
    assert request.detail == "new labels arrived"
    assert (request.first_row, request.row) == (0, 99)  # the latest window's lineage
    assert policy.due(T0 + 3601) == []

    status, _, body = post(admin, {"model": "m", "version": "0", "reason": "rollback"})
    assert status == 202
    assert [(r.id, r.version) for r in policy.due(T0 + 3602)] == [(json.loads(body)["id"], "0")]


def test_post_retrain_refuses_bad_requests_with_advice(
    admin: AdminServer, policy: RecordingPolicy
) -> None:
    refusals = [
        ({"model": "m"}, "reason: say why the model should be retrained"),
        ({"model": "m", "reason": "r", "force": True}, "unknown field 'force'"),
        ({"model": "", "version": 7, "reason": "r"}, "model: a non-empty string is required"),
        (b"{not json", "the body is not valid JSON"),
        ([1, 2], "send a JSON object"),
    ]
    for body, error in refusals:
        status, _, answer = post(admin, body)
        assert status == 400, body
        assert error in json.loads(answer)["error"]
    assert post(admin, {"model": "m", "reason": "r"}, content_type="text/plain")[0] == 415
    status, headers, _ = post(admin, b"", method="GET")
    assert (status, headers["Allow"]) == (405, "POST")
    status, headers, _ = post(admin, {"model": "m", "reason": "r"}, path="/metrics")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    assert policy.due(T0) == []  # nothing was queued


def test_post_retrain_is_refused_for_models_and_versions_the_daemon_does_not_know(
    admin: AdminServer, policy: RecordingPolicy
) -> None:
    refusals = [
        ({"model": "x", "reason": "r"}, "model 'x' is unknown to this daemon (known: m)"),
        (
            {"model": "m", "version": "9", "reason": "r"},
            "model 'm' has no version '9' known to this daemon (known: 0, 1)",
        ),
    ]
    for body, error in refusals:
        status, _, answer = post(admin, body)
        assert status == 404, body
        assert error in json.loads(answer)["error"]
    assert policy.due(T0) == []  # nothing was queued


def test_post_retrain_is_rate_limited_with_retry_after(policy: RecordingPolicy) -> None:
    clock = [1000.0]
    limit = TokenBucket(per_minute=3, burst=2, clock=lambda: clock[0])
    body = {"model": "m", "reason": "new labels"}
    with _admin(policy, limit=limit) as server:
        # A refused request spends nothing: the limit counts retrains, not typos.
        assert post(server, {"model": "m", "version": "9", "reason": "r"})[0] == 404
        answers = [post(server, body) for _ in range(3)]
        clock[0] += 19.0
        early = post(server, body)
        clock[0] += 1.0  # 20 s after the burst: one token (3 a minute) is back
        late = post(server, body)

    assert [status for status, _, _ in answers] == [202, 202, 429]
    _, headers, answer = answers[2]
    assert headers["Retry-After"] == "20"
    assert "too many retrain requests" in json.loads(answer)["error"]
    assert (early[0], early[1]["Retry-After"]) == (429, "1")
    assert late[0] == 202


def test_post_retrain_only_from_allowed_clients_and_only_when_wired(
    policy: RecordingPolicy,
) -> None:
    with _admin(policy, clients=("10.0.0.0/8",)) as server:
        status, _, body = post(server, {"model": "m", "reason": "r"})
    assert status == 403
    assert json.loads(body)["error"] == (
        "127.0.0.1 may not request retrains (admin.retrain_clients)"
    )
    with _admin(None) as server:
        assert post(server, {"model": "m", "reason": "r"})[0] == 501
    assert policy.due(T0) == []


def test_cli_retrain_asks_the_running_daemon(
    admin: AdminServer, policy: RecordingPolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["retrain", "m", "--reason", "drift seen in BI", "--url", admin.url]) == 0
    out, err = capsys.readouterr()
    (request,) = policy.due(T0)
    assert out == f"{request.id}\n"
    assert f"retrain of m requested from {admin.url}" in err
    assert request.detail == "drift seen in BI"

    assert main(["retrain", "nope", "--reason", "r", "--url", admin.url]) == 2
    assert "model 'nope' is unknown to this daemon" in capsys.readouterr().err

    down = closed_port_url()
    assert main(["retrain", "m", "--reason", "r", "--url", down]) == 3
    assert f"no monitord admin endpoint answers at {down}" in capsys.readouterr().err

    assert main(["retrain", "m", "--reason", "r", "--direct"]) == 2
    assert "--direct needs --version" in capsys.readouterr().err


def _direct_config(path: Path, bootstrap: str, topic: str, url: str, state: Path) -> Path:
    hook = 'type = "webhook"\nsecret_env = "MONITORD_TEST_HOOK_KEY"\nevents = ["triggers"]\n'
    path.write_text(
        f'state_dir = "{state}"\n'
        f'[kafka]\nbootstrap_servers = "{bootstrap}"\ntrigger_topic = "{topic}"\n'
        f'[[receivers]]\nname = "hook"\nurl = "{url}/hook"\n{hook}'
        f'[[receivers]]\nname = "other"\nurl = "{url}/other"\n{hook}match = {{ model = ["z"] }}\n'
    )
    return path


@pytest.mark.kafka
def test_cli_retrain_direct_publishes_to_the_topic_the_receivers_and_the_audit_log(
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    server: RecordingServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MONITORD_TEST_HOOK_KEY", HOOK_KEY)
    topic, state = unique_name("retrain"), tmp_path / "state"
    config = _direct_config(tmp_path / "c.toml", broker.bootstrap, topic, server.url, state)
    command = ["retrain", "fraud", "--version", "7", "--direct", "--config", str(config)]

    assert main([*command, "--reason", "quarterly refresh"]) == 0

    out, err = capsys.readouterr()
    request_id = out.strip()
    (record,) = read_topic(broker.bootstrap, topic, timeout_s=10)
    event = orjson.loads(record.value or b"")
    assert record.key == b"fraud"
    assert (event["id"], event["type"], event["subject"]) == (request_id, RETRAIN_TYPE, "fraud/7")
    data = event["data"]
    assert (data["reason"], data["model"], data["version"]) == ("manual", "fraud", "7")
    assert (data["detail"], data["idempotency_key"]) == ("quarterly refresh", request_id)
    (hook,) = server.requests  # "other" matches model z only
    assert (hook.method, hook.path, hook.body) == ("POST", "/hook", record.value)
    assert verify(
        HOOK_KEY.encode(),
        hook.headers[TIMESTAMP_HEADER.lower()],
        hook.body,
        hook.headers[SIGNATURE_HEADER.lower()],
        time.time(),
    )
    assert "receiver hook: delivered" in err
    audit = AuditLog(state / "audit.sqlite")
    try:
        (decision,) = audit.history()
    finally:
        audit.close()
    assert (decision.id, decision.status) == (request_id, "requested")
    assert decision.summary == "retrain fraud/7 (manual): quarterly refresh"

    # A receiver that is down keeps the request in the outbox, for the daemon to retry.
    server.reply(503, b"busy")
    assert main([*command, "--reason", "second try"]) == 0
    second_id = capsys.readouterr().out.strip()
    outbox = Outbox(state / "outbox.sqlite")
    try:
        item = outbox.get(second_id, "hook")
        assert item is not None
        assert (item.state, item.attempts, item.last_status) == ("pending", 1, 503)
        assert outbox.get(second_id, "other") is None
    finally:
        outbox.close()
    assert len(read_topic(broker.bootstrap, topic, timeout_s=10)) == 2
