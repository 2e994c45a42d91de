"""Prefect receiver: deployment lookup, the documented create_flow_run request with the
idempotency key, a repeated key as delivered, 409 (parameter validation) as a failure, and
which failures are retried, against a real local HTTP server."""

from __future__ import annotations

import json

import pytest

from connectors.http import Receiver, ReceiverError
from connectors.prefect import PrefectReceiver
from tests.connectors.test_airflow import DATA, KEY, PAYLOAD
from tests.servers import RecordingServer, closed_port_url

API_KEY = "pnu_0123456789abcdefghijklmnopqrstuvwxyz"
DEPLOYMENT_ID = "0b7cf7f4-6b5e-4c43-9a0f-6f1f3b0de001"
RECREATED_ID = "0b7cf7f4-6b5e-4c43-9a0f-6f1f3b0de002"
LOOKUP = "/api/deployments/name/retrain%20fraud/prod"
CREATE = f"/api/deployments/{DEPLOYMENT_ID}/create_flow_run"
RUN = b'{"id": "2e5c1a1e-8a57-4a77-9d4f-0d6e2f1a9b10", "state": {"type": "SCHEDULED"}}'
EXPECTED_BODY = {
    "name": f"monitord-{KEY}",
    "parameters": {"trigger": DATA},
    "idempotency_key": KEY,
}


def _deployment(deployment_id: str) -> bytes:
    return json.dumps({"id": deployment_id, "name": "prod", "flow_id": "f1"}).encode()


def test_receiver_satisfies_the_protocol(server: RecordingServer) -> None:
    receiver: Receiver = PrefectReceiver(server.url + "/api", DEPLOYMENT_ID)
    assert isinstance(receiver, Receiver)  # deliver() is there at run time too


def test_a_named_deployment_is_looked_up_once_then_runs_are_created(
    server: RecordingServer,
) -> None:
    server.reply(200, _deployment(DEPLOYMENT_ID))
    server.reply(201, RUN)
    server.reply(200, RUN)  # the same key again: Prefect returns the run it has
    receiver = PrefectReceiver(server.url + "/api/", "retrain fraud/prod", api_key=API_KEY)

    receiver.deliver(PAYLOAD)
    receiver.deliver(PAYLOAD)

    lookup, first, second = server.requests
    assert (lookup.method, lookup.path, lookup.body) == ("GET", LOOKUP, b"")
    assert lookup.headers["authorization"] == f"Bearer {API_KEY}"
    for create in (first, second):
        assert (create.method, create.path) == ("POST", CREATE)
        assert create.headers["authorization"] == f"Bearer {API_KEY}"
        assert create.headers["content-type"] == "application/json"
        assert create.json() == EXPECTED_BODY


def test_a_deployment_id_needs_no_lookup_and_no_key_sends_no_authorization(
    server: RecordingServer,
) -> None:
    server.reply(201, RUN)

    PrefectReceiver(server.url + "/api", DEPLOYMENT_ID, parameter="request").deliver(PAYLOAD)

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", CREATE)
    assert "authorization" not in request.headers
    assert request.json() == {**EXPECTED_BODY, "parameters": {"request": DATA}}


def test_409_is_a_parameter_validation_failure_not_a_duplicate(server: RecordingServer) -> None:
    # Prefect answers a repeated idempotency key with 200 and the existing run; 409 means the
    # parameters failed the deployment's schema, and sending them again cannot succeed.
    server.reply(
        409,
        b'{"detail": "Error creating flow run: Validation failed for field \'trigger\'."}',
    )
    with pytest.raises(ReceiverError, match="Validation failed") as caught:
        PrefectReceiver(server.url + "/api", DEPLOYMENT_ID).deliver(PAYLOAD)
    assert (caught.value.status, caught.value.retriable) == (409, False)


def test_a_recreated_deployment_is_looked_up_again(server: RecordingServer) -> None:
    server.reply(200, _deployment(DEPLOYMENT_ID))
    server.reply(201, RUN)
    server.reply(404, b'{"detail": "Deployment not found"}')
    server.reply(200, _deployment(RECREATED_ID))
    server.reply(201, RUN)
    receiver = PrefectReceiver(server.url + "/api", "retrain fraud/prod")

    receiver.deliver(PAYLOAD)
    receiver.deliver(PAYLOAD)

    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", LOOKUP),
        ("POST", CREATE),
        ("POST", CREATE),
        ("GET", LOOKUP),
        ("POST", f"/api/deployments/{RECREATED_ID}/create_flow_run"),
    ]


def test_a_deployment_gone_for_good_is_not_retried(server: RecordingServer) -> None:
    server.reply(200, _deployment(DEPLOYMENT_ID))
    server.reply(404, b'{"detail": "Deployment not found"}')
    server.reply(200, _deployment(DEPLOYMENT_ID))  # same id: no point creating again
    receiver = PrefectReceiver(server.url + "/api", "retrain fraud/prod")

    with pytest.raises(ReceiverError) as caught:
        receiver.deliver(PAYLOAD)

    assert (caught.value.status, caught.value.retriable) == (404, False)
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", LOOKUP),
        ("POST", CREATE),
        ("GET", LOOKUP),
    ]


@pytest.mark.parametrize(("status", "retriable"), [(404, False), (401, False), (503, True)])
def test_lookup_failures_are_classified_and_nothing_is_cached(
    server: RecordingServer, status: int, retriable: bool
) -> None:
    server.reply(status, f'{{"detail": "no {API_KEY}"}}'.encode())
    server.reply(200, _deployment(DEPLOYMENT_ID))
    server.reply(201, RUN)
    receiver = PrefectReceiver(server.url + "/api", "retrain fraud/prod", api_key=API_KEY)

    with pytest.raises(ReceiverError) as caught:
        receiver.deliver(PAYLOAD)
    assert (caught.value.status, caught.value.retriable) == (status, retriable)
    assert "'retrain fraud/prod'" in str(caught.value)
    assert API_KEY not in str(caught.value)

    receiver.deliver(PAYLOAD)  # the next attempt looks the deployment up again
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", LOOKUP),
        ("GET", LOOKUP),
        ("POST", CREATE),
    ]


def test_a_lookup_answer_without_an_id_is_not_retried(server: RecordingServer) -> None:
    server.reply(200, b"<html>Prefect UI</html>")
    with pytest.raises(ReceiverError, match="not JSON") as caught:
        PrefectReceiver(server.url, "retrain fraud/prod").deliver(PAYLOAD)
    assert not caught.value.retriable


@pytest.mark.parametrize(
    ("status", "retriable"), [(400, False), (403, False), (422, False), (429, True), (500, True)]
)
def test_create_failures_are_classified(
    server: RecordingServer, status: int, retriable: bool
) -> None:
    server.reply(status, b'{"detail": "nope"}')
    with pytest.raises(ReceiverError) as caught:
        PrefectReceiver(server.url + "/api", DEPLOYMENT_ID).deliver(PAYLOAD)
    assert (caught.value.status, caught.value.retriable) == (status, retriable)


def test_no_answer_is_retriable() -> None:
    with pytest.raises(ReceiverError, match="no answer") as caught:
        PrefectReceiver(closed_port_url() + "/api", DEPLOYMENT_ID).deliver(PAYLOAD)
    assert caught.value.retriable


def test_construction_is_validated() -> None:
    for deployment in ("just-a-flow", "flow/", "/deployment", "a/b/c"):
        with pytest.raises(ValueError, match="'flow-name/deployment-name' or a deployment id"):
            PrefectReceiver("http://prefect:4200/api", deployment)
    with pytest.raises(ValueError, match="parameter must not be empty"):
        PrefectReceiver("http://prefect:4200/api", DEPLOYMENT_ID, parameter="")
    with pytest.raises(ValueError, match="api_url must be an absolute"):
        PrefectReceiver("prefect:4200", DEPLOYMENT_ID)
