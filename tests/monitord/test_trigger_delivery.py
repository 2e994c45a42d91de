"""Retrain requests through the daemon to orchestrator receivers, via the durable outbox.

The daemon runs over in-memory records with a drift; its `Delivery` stores each request once
per matching trigger receiver before anything is sent. The receivers are real connectors
(Airflow, the signed webhook) posting to a local HTTP server.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.outbox import Outbox
from connectors.stream import Record
from connectors.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from monitord.cloudevent import RETRAIN_TYPE, encode, envelope
from monitord.config import Config, ConfigError, parse_config
from monitord.daemon import Daemon
from monitord.delivery import Delivery, build_receivers
from monitord.retrain import RetrainTrigger
from tests.connectors.test_airflow import PAYLOAD
from tests.servers import Recorded, RecordingServer, Reply

AIRFLOW_TOKEN = "airflow-token-0123456789"
HOOK_KEY = "webhook-signing-key-0123456789"
ENVIRON = {"AF_TOKEN": AIRFLOW_TOKEN, "HOOK_KEY": HOOK_KEY}
RUNS = "/api/v2/dags/retrain_m/dagRuns"
DOWN_BODY = b'{"detail": "scheduler unavailable"}'
DOWN: Reply = (503, {}, DOWN_BODY)
START = 1_800_000_000.0
TIMEOUT_S = 10.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _records() -> list[Record]:
    """4,000 events of model m; y shifts by 1.5 sd from row 2,500: one retrain request."""
    rng = np.random.default_rng(11)
    values = rng.normal(size=(4000, 2))
    values[2500:, 1] += 1.5
    events = [
        orjson.dumps({"model": "m", "model_version": "1", "features": {"x": x, "y": y}})
        for x, y in values.tolist()
    ]
    return [Record("in", 0, i, b"m", event, 0) for i, event in enumerate(events)]


def _config(tmp_path: Path, receivers: list[dict[str, object]]) -> Config:
    return parse_config(
        {
            "detection": {"warmup_events": 1000, "window_size": 500},
            "receivers": receivers,
            "state_dir": str(tmp_path / "state"),
        }
    )


def _airflow(url: str, **extra: object) -> dict[str, object]:
    return {
        "name": "airflow",
        "type": "airflow",
        "url": url,
        "dag_id": "retrain_m",
        "secret_env": "AF_TOKEN",
        **extra,
    }


def _delivery(
    config: Config,
    clock: Callable[[], float],
    interval_s: float = 1.0,
    backoff_s: tuple[float, float] = (1.0, 300.0),
) -> tuple[Delivery, Outbox]:
    """A delivery over the outbox file in the config's state dir (kept across restarts)."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(
        config.state_dir / "outbox.sqlite",
        base_backoff_s=backoff_s[0],
        max_backoff_s=backoff_s[1],
        random=random.Random(3).random,
    )
    connectors = build_receivers(config.receivers, ENVIRON)
    return Delivery(config.receivers, outbox, connectors, clock, interval_s), outbox


def _run(config: Config, delivery: Delivery) -> list[RetrainTrigger]:
    daemon = Daemon(config, MemorySource(_records()), MemorySink(), [delivery], lambda m, v: None)
    return [o for o in daemon.drain() if isinstance(o, RetrainTrigger)]


def _to(path: str, requests: list[Recorded]) -> list[Recorded]:
    return [r for r in requests if r.path == path]


def _expected_conf(request: RetrainTrigger) -> object:
    return json.loads(encode(request))["data"]


def test_a_drift_reaches_each_matching_trigger_receiver_exactly_once(
    tmp_path: Path, server: RecordingServer
) -> None:
    hook = {"type": "webhook", "secret_env": "HOOK_KEY"}
    config = _config(
        tmp_path,
        [
            _airflow(server.url),
            {**hook, "name": "hook", "url": server.url + "/hook", "events": ["triggers"]},
            {**hook, "name": "alert-hook", "url": server.url + "/alert-hook"},  # alerts only
            _airflow(server.url, name="other", dag_id="retrain_other", match={"model": ["z"]}),
        ],
    )
    clock = Clock(START)
    delivery, outbox = _delivery(config, clock)

    (request,) = _run(config, delivery)

    assert server.requests == []  # stored, not sent: the dispatcher sends
    for name in ("airflow", "hook"):
        stored = outbox.get(request.id, name)
        assert stored is not None
        assert (stored.state, stored.attempts, stored.payload) == ("pending", 0, encode(request))
    assert outbox.get(request.id, "other") is None
    assert outbox.get(request.id, "alert-hook") is None

    delivery.deliver_due()

    (run,) = _to(RUNS, server.requests)
    assert run.headers["authorization"] == f"Bearer {AIRFLOW_TOKEN}"
    assert run.json() == {
        "dag_run_id": f"monitord__{request.id}",
        "logical_date": None,
        "conf": _expected_conf(request),
    }
    (signed,) = _to("/hook", server.requests)
    assert signed.body == encode(request)
    assert verify(
        HOOK_KEY.encode(),
        signed.headers[TIMESTAMP_HEADER.lower()],
        signed.body,
        signed.headers[SIGNATURE_HEADER.lower()],
        now=time.time(),  # the webhook signs with the wall clock
    )
    assert envelope(request)["type"] == RETRAIN_TYPE
    alerts = [r.json() for r in _to("/alert-hook", server.requests)]
    assert alerts, "the alert webhook got no alert"
    assert all(isinstance(a, dict) and a["type"] == "io.monitord.drift.alert" for a in alerts)
    assert _to("/api/v2/dags/retrain_other/dagRuns", server.requests) == []
    sent = len(server.requests)

    # A restart that replays the input decides the same request again: it is not re-sent.
    delivery.close()
    clock.now += 600
    replay, outbox = _delivery(config, clock)
    (again,) = _run(config, replay)
    assert again.id == request.id
    replay.deliver_due()
    assert len(server.requests) == sent
    for name in ("airflow", "hook"):
        stored = outbox.get(request.id, name)
        assert stored is not None
        assert (stored.state, stored.attempts) == ("delivered", 1)
    replay.close()


def test_a_receiver_that_is_down_gets_the_request_from_the_outbox_after_a_restart(
    tmp_path: Path, server: RecordingServer
) -> None:
    server.default = DOWN
    config = _config(tmp_path, [_airflow(server.url)])
    clock = Clock(START)
    delivery, outbox = _delivery(config, clock)
    (request,) = _run(config, delivery)

    delivery.deliver_due()
    delivery.deliver_due()  # the retry is not due yet: backoff

    (refused,) = server.requests
    stored = outbox.get(request.id, "airflow")
    assert stored is not None
    assert (stored.state, stored.attempts, stored.last_status) == ("pending", 1, 503)
    assert stored.next_attempt_at > START
    delivery.close()  # the daemon stops while the receiver is down

    server.default = (200, {}, b'{"state": "queued"}')  # it comes back
    clock.now += 600  # beyond the longest backoff
    restarted, outbox = _delivery(config, clock)
    restarted.deliver_due()

    refused_again, accepted = server.requests
    assert refused_again == refused
    assert accepted.path == RUNS
    assert accepted.json() == refused.json()
    assert accepted.json() == {
        "dag_run_id": f"monitord__{request.id}",
        "logical_date": None,
        "conf": _expected_conf(request),
    }
    stored = outbox.get(request.id, "airflow")
    assert stored is not None
    assert (stored.state, stored.attempts) == ("delivered", 2)
    restarted.deliver_due()
    assert len(server.requests) == 2
    restarted.close()


def test_the_dispatch_thread_retries_with_backoff_until_delivered(
    tmp_path: Path, server: RecordingServer
) -> None:
    server.reply(503, DOWN_BODY)
    server.reply(503, DOWN_BODY)
    config = _config(tmp_path, [_airflow(server.url)])
    delivery, outbox = _delivery(config, time.time, 0.01, (0.01, 0.02))
    (request,) = _run(config, delivery)

    delivery.start()
    try:
        assert server.wait_for(lambda requests: len(requests) == 3, TIMEOUT_S)
        _until(lambda: _state(outbox, request.id) == "delivered", "delivered")
        history = [(a.outcome, a.status) for a in reversed(outbox.history())]
        assert history == [("retry", 503), ("retry", 503), ("delivered", None)]
    finally:
        delivery.close()
    assert len(server.requests) == 3
    assert all(r.path == RUNS and r.json() == server.requests[0].json() for r in server.requests)


def _state(outbox: Outbox, message_id: str) -> str | None:
    item = outbox.get(message_id, "airflow")
    return None if item is None else item.state


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {TIMEOUT_S:g}s"
        pause.wait(0.01)


def test_airflow_credentials_from_the_environment_are_exchanged_for_a_token(
    tmp_path: Path, server: RecordingServer
) -> None:
    server.reply(201, b'{"access_token": "jwt-1"}')
    server.reply(200, b'{"state": "queued"}')
    config = _config(
        tmp_path, [_airflow(server.url, username_env="AF_USER", secret_env="AF_PASSWORD")]
    )
    receivers = build_receivers(config.receivers, {"AF_USER": "svc", "AF_PASSWORD": "pw-0123"})

    receivers["airflow"].deliver(PAYLOAD)

    token, run = server.requests
    assert (token.path, token.json()) == ("/auth/token", {"username": "svc", "password": "pw-0123"})
    assert (run.path, run.headers["authorization"]) == (RUNS, "Bearer jwt-1")


def test_orchestrator_receivers_from_config(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        [
            _airflow("http://airflow:8080", api_version="v1"),
            {
                "name": "prefect",
                "type": "prefect",
                "url": "http://prefect:4200/api",
                "deployment": "retrain/prod",
                "parameter": "request",
            },
            {
                "name": "argo",
                "type": "argo",
                "url": "https://argo:2746",
                "namespace": "ml",
                "template": "retrain",
                "cluster_template": True,
            },
            {
                "name": "kfp",
                "type": "kubeflow",
                "url": "http://ml-pipeline:8888",
                "pipeline_id": "p-1",
                "experiment_id": "e-1",
            },
            {"name": "am", "type": "alertmanager", "url": "http://am:9093"},
            {
                "name": "both",
                "type": "webhook",
                "url": "http://hook",
                "secret_env": "HOOK_KEY",
                "events": ["alerts", "triggers"],
            },
        ],
    )
    assert [r.events for r in config.receivers] == [
        ("triggers",),
        ("triggers",),
        ("triggers",),
        ("triggers",),
        ("alerts",),
        ("alerts", "triggers"),
    ]
    receivers = build_receivers(config.receivers, ENVIRON)
    assert [type(r).__name__ for r in receivers.values()] == [
        "AirflowReceiver",
        "PrefectReceiver",
        "ArgoReceiver",
        "KubeflowReceiver",
        "AlertmanagerReceiver",
        "WebhookReceiver",
    ]


@pytest.mark.parametrize(
    ("receiver", "message"),
    [
        (
            {"name": "a", "type": "airflow", "url": "http://a"},
            "receivers.0: Value error, airflow receivers need dag_id",
        ),
        (
            {"name": "p", "type": "prefect", "url": "http://p"},
            "prefect receivers need deployment",
        ),
        (
            {"name": "g", "type": "argo", "url": "http://g", "namespace": "ml"},
            "argo receivers need template",
        ),
        (
            {"name": "k", "type": "kubeflow", "url": "http://k"},
            "kubeflow receivers need pipeline_id",
        ),
        ({"name": "k", "type": "kubeflow", "pipeline_id": "p"}, "a kubeflow receiver needs url"),
        (
            {"name": "s", "type": "slack", "secret_env": "S", "events": ["triggers"]},
            "events: slack receivers take ['alerts'], got ['triggers']",
        ),
        (
            {
                "name": "a",
                "type": "airflow",
                "url": "http://a",
                "dag_id": "d",
                "events": ["alerts"],
            },
            "events: airflow receivers take ['triggers'], got ['alerts']",
        ),
        (
            {"name": "w", "type": "webhook", "url": "http://w", "secret_env": "S", "events": []},
            "events: webhook receivers take ['alerts', 'triggers'], got []",
        ),
        (
            {"name": "w", "type": "webhook", "url": "http://w", "secret_env": "S", "events": ["x"]},
            "receivers.0.events.0: Input should be 'alerts' or 'triggers'",
        ),
        (
            {"name": "p", "type": "prefect", "url": "http://p", "deployment": "f/d", "dag_id": "d"},
            "dag_id is only read by airflow receivers, not prefect",
        ),
        (
            {"name": "a", "type": "airflow", "url": "http://a", "dag_id": "d", "api_version": "v3"},
            "receivers.0.api_version: Input should be 'v2' or 'v1'",
        ),
        (
            {"name": "a", "type": "airflow", "url": "http://a", "dag_id": "d", "username_env": "U"},
            "username_env needs secret_env too",
        ),
        (
            {"name": "a", "type": "airflow", "url": "http://a", "dag_id": "d", "token": "t"},
            "receivers.0.token: unknown key; allowed keys here:",
        ),
    ],
)
def test_receiver_settings_are_validated(
    tmp_path: Path, receiver: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, [receiver])
    assert message in str(caught.value)


def test_connector_errors_and_missing_variables_name_the_receiver(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        [
            {
                "name": "p",
                "type": "prefect",
                "url": "http://prefect/api",
                "deployment": "no-slash",
            }
        ],
    )
    with pytest.raises(ConfigError, match=r"receivers\.0 \('p'\): deployment must be"):
        build_receivers(config.receivers, {})
    config = _config(tmp_path, [_airflow("http://a", username_env="AF_USER")])
    with pytest.raises(ConfigError, match=r"receivers\.0\.username_env: .* AF_USER is not set"):
        build_receivers(config.receivers, {"AF_TOKEN": "x"})
