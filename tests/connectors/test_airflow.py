"""Airflow receiver: the documented dagRuns requests (v2 and v1), token exchange and refresh,
409 as delivered, and which failures are retried, against a real local HTTP server."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from connectors.airflow import AirflowReceiver, run_id
from connectors.http import Receiver, ReceiverError
from tests.servers import RecordingServer, closed_port_url

KEY = "5f0c2d8e9a7b4c61a3e2f0d9c8b7a6e5"
DATA: dict[str, object] = {
    "id": KEY,
    "idempotency_key": KEY,
    "reason": "drift",
    "model": "fraud-scorer",
    "version": "7",
    "drifted_features": ["amount", "country"],
    "statistics": [["amount", "ks", 0.31, 0.12], ["country", "psi", 0.4, 0.2]],
    "feature_share": 0.5,
    "profile_id": "sha256:00ff",
    "offsets": [{"topic": "events", "partition": 0, "first_offset": 4000, "last_offset": 4999}],
    "start_time": "2026-11-23T12:00:00.000Z",
    "end_time": "2026-11-23T12:10:00.000Z",
    "config_hash": "0123456789abcdef",
}
EVENT = {
    "specversion": "1.0",
    "id": KEY,
    "source": "monitord/fraud-scorer",
    "type": "io.monitord.retrain.requested",
    "subject": "fraud-scorer/7",
    "time": "2026-11-23T12:10:00.000Z",
    "datacontenttype": "application/json",
    "data": DATA,
}
PAYLOAD = json.dumps(EVENT).encode()
"""A retrain request's CloudEvent as the outbox holds it; shared by the orchestrator tests."""

TOKEN = "static-token-0123456789"
USER, PASSWORD = "monitord", "pa55word-0123"
BASIC = "Basic bW9uaXRvcmQ6cGE1NXdvcmQtMDEyMw=="  # base64("monitord:pa55word-0123")
RUNS_V2 = "/api/v2/dags/retrain_fraud/dagRuns"
RUNS_V1 = "/api/v1/dags/retrain_fraud/dagRuns"
CREATED = b'{"dag_run_id": "monitord__5f0c2d8e9a7b4c61a3e2f0d9c8b7a6e5", "state": "queued"}'


def _jwt(value: str) -> bytes:
    return json.dumps({"access_token": value}).encode()


def test_receiver_satisfies_the_protocol(server: RecordingServer) -> None:
    receiver: Receiver = AirflowReceiver(server.url, "retrain_fraud")
    assert isinstance(receiver, Receiver)  # deliver() is there at run time too


def test_v2_posts_one_dag_run_with_the_key_as_run_id(server: RecordingServer) -> None:
    server.reply(200, CREATED)

    AirflowReceiver(server.url + "/", "retrain_fraud", token=TOKEN).deliver(PAYLOAD)

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", RUNS_V2)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "dag_run_id": "monitord__5f0c2d8e9a7b4c61a3e2f0d9c8b7a6e5",
        "logical_date": None,
        "conf": DATA,
    }


def test_v1_uses_basic_auth_and_sends_no_logical_date(server: RecordingServer) -> None:
    server.reply(200, CREATED)

    receiver = AirflowReceiver(
        server.url, "retrain_fraud", api_version="v1", username=USER, password=PASSWORD
    )
    receiver.deliver(PAYLOAD)

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", RUNS_V1)
    assert request.headers["authorization"] == BASIC
    assert request.json() == {"dag_run_id": f"monitord__{KEY}", "conf": DATA}


def test_v2_exchanges_credentials_for_a_jwt_once_and_reuses_it(server: RecordingServer) -> None:
    server.reply(201, _jwt("jwt-1"))
    server.reply(200, CREATED)
    server.reply(200, CREATED)
    receiver = AirflowReceiver(server.url, "retrain_fraud", username=USER, password=PASSWORD)

    receiver.deliver(PAYLOAD)
    receiver.deliver(PAYLOAD)

    token, first, second = server.requests
    assert (token.method, token.path) == ("POST", "/auth/token")
    assert token.headers["content-type"] == "application/json"
    assert "authorization" not in token.headers
    assert token.json() == {"username": USER, "password": PASSWORD}
    assert [(r.path, r.headers["authorization"]) for r in (first, second)] == [
        (RUNS_V2, "Bearer jwt-1"),
        (RUNS_V2, "Bearer jwt-1"),
    ]


def test_v2_fetches_a_new_jwt_once_on_401(server: RecordingServer) -> None:
    server.reply(201, _jwt("jwt-1"))
    server.reply(200, CREATED)
    server.reply(401, b'{"detail": "Token expired"}')
    server.reply(201, _jwt("jwt-2"))
    server.reply(200, CREATED)
    receiver = AirflowReceiver(server.url, "retrain_fraud", username=USER, password=PASSWORD)

    receiver.deliver(PAYLOAD)
    receiver.deliver(PAYLOAD)  # the cached jwt-1 expired in between

    assert [(r.path, r.headers.get("authorization")) for r in server.requests] == [
        ("/auth/token", None),
        (RUNS_V2, "Bearer jwt-1"),
        (RUNS_V2, "Bearer jwt-1"),
        ("/auth/token", None),
        (RUNS_V2, "Bearer jwt-2"),
    ]
    assert server.requests[2].json() == server.requests[4].json()


def test_v2_gives_up_when_the_fresh_jwt_is_refused_too(server: RecordingServer) -> None:
    server.reply(201, _jwt("jwt-1"))
    server.reply(401, b'{"detail": "Invalid token"}')
    server.reply(201, _jwt("jwt-2"))
    server.reply(401, b'{"detail": "Invalid token jwt-2"}')
    receiver = AirflowReceiver(server.url, "retrain_fraud", username=USER, password=PASSWORD)

    with pytest.raises(ReceiverError) as caught:
        receiver.deliver(PAYLOAD)

    assert (caught.value.status, caught.value.retriable) == (401, False)
    assert [r.path for r in server.requests] == ["/auth/token", RUNS_V2, "/auth/token", RUNS_V2]
    assert "jwt-2" not in str(caught.value)


def test_a_static_token_refused_with_401_is_not_refreshed_or_retried(
    server: RecordingServer,
) -> None:
    server.reply(401, f'{{"detail": "bad token {TOKEN}"}}'.encode())

    with pytest.raises(ReceiverError) as caught:
        AirflowReceiver(server.url, "retrain_fraud", token=TOKEN).deliver(PAYLOAD)

    assert (caught.value.status, caught.value.retriable) == (401, False)
    assert [r.path for r in server.requests] == [RUNS_V2]
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(("status", "retriable"), [(401, False), (403, False), (503, True)])
def test_token_endpoint_failures_are_classified(
    server: RecordingServer, status: int, retriable: bool
) -> None:
    server.reply(status, f'{{"detail": "rejected {PASSWORD}"}}'.encode())
    receiver = AirflowReceiver(server.url, "retrain_fraud", username=USER, password=PASSWORD)

    with pytest.raises(ReceiverError) as caught:
        receiver.deliver(PAYLOAD)

    assert (caught.value.status, caught.value.retriable) == (status, retriable)
    assert [r.path for r in server.requests] == ["/auth/token"]
    assert PASSWORD not in str(caught.value)
    assert "token endpoint" in str(caught.value)


def test_a_token_answer_without_access_token_is_not_retried(server: RecordingServer) -> None:
    server.reply(201, b'{"token": "x"}')
    receiver = AirflowReceiver(server.url, "retrain_fraud", username=USER, password=PASSWORD)
    with pytest.raises(ReceiverError, match="without an access_token") as caught:
        receiver.deliver(PAYLOAD)
    assert not caught.value.retriable


@pytest.mark.parametrize("api_version", ["v2", "v1"])
def test_409_for_an_existing_run_id_counts_as_delivered(
    server: RecordingServer, api_version: Literal["v2", "v1"]
) -> None:
    server.reply(409, b'{"detail": "DAG Run already exists"}')
    receiver = AirflowReceiver(server.url, "retrain_fraud", api_version=api_version, token=TOKEN)

    receiver.deliver(PAYLOAD)  # does not raise

    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "retriable"),
    [(400, False), (403, False), (404, False), (422, False), (429, True), (500, True), (503, True)],
)
def test_dag_run_failures_are_classified(
    server: RecordingServer, status: int, retriable: bool
) -> None:
    server.reply(status, b'{"detail": "nope"}')
    with pytest.raises(ReceiverError) as caught:
        AirflowReceiver(server.url, "retrain_fraud", token=TOKEN).deliver(PAYLOAD)
    assert (caught.value.status, caught.value.retriable) == (status, retriable)
    assert "Airflow at http://127.0.0.1:" in str(caught.value)


def test_no_answer_is_retriable() -> None:
    with pytest.raises(ReceiverError, match="no answer") as caught:
        AirflowReceiver(closed_port_url(), "retrain_fraud", token=TOKEN).deliver(PAYLOAD)
    assert caught.value.retriable


def test_a_payload_that_is_not_a_cloudevent_is_refused_unsent(server: RecordingServer) -> None:
    receiver = AirflowReceiver(server.url, "retrain_fraud", token=TOKEN)
    for payload in (b"[1]", b"{oops", json.dumps({"id": "", "data": {}}).encode()):
        with pytest.raises(ReceiverError, match="CloudEvent") as caught:
            receiver.deliver(payload)
        assert not caught.value.retriable
    assert server.requests == []


def test_dag_id_is_quoted_into_the_path(server: RecordingServer) -> None:
    server.reply(200, CREATED)
    AirflowReceiver(server.url, "team a/retrain", token=TOKEN).deliver(PAYLOAD)
    assert server.requests[0].path == "/api/v2/dags/team%20a%2Fretrain/dagRuns"


def test_run_ids_are_valid_for_airflow_and_distinct() -> None:
    assert run_id(KEY) == f"monitord__{KEY}"
    assert run_id("m:7.ep~1+x_y-z") == "monitord__m:7.ep~1+x_y-z"
    # Characters outside [A-Za-z0-9_.~:+-]: readable part plus a digest of the whole key.
    assert (
        run_id("fraud/7 episode#3") == "monitord~fraud-7-episode-3~1bdaf60dca819ed2f47be68161c9d808"
    )
    assert run_id("fraud/7 episode#3") != run_id("fraud 7/episode#3")
    # Too long for Airflow's 250-character column: cut to 100 readable characters.
    long_id = run_id("x" * 245)
    assert long_id == "monitord~" + "x" * 100 + "~becad1fd31bd361e30adaa11df969d1d"
    assert len(run_id("x" * 240)) == 250
    with pytest.raises(ValueError, match="key must not be empty"):
        run_id("")


def test_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="username and password go together"):
        AirflowReceiver("http://airflow:8080", "d", username=USER)
    with pytest.raises(ValueError, match="either token or username"):
        AirflowReceiver("http://airflow:8080", "d", token=TOKEN, username=USER, password="p")
    with pytest.raises(ValueError, match="api_version must be 'v2'"):
        AirflowReceiver("http://airflow:8080", "d", api_version="v3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dag_id must not be empty"):
        AirflowReceiver("http://airflow:8080", " ")
    with pytest.raises(ValueError, match="base_url must be an absolute"):
        AirflowReceiver("airflow:8080", "d")
