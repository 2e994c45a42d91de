"""Argo Workflows receiver: the documented submit request (WorkflowSubmitRequest with
SubmitOpts), 409 AlreadyExists as delivered, and which failures are retried, against a real
local HTTP server."""

from __future__ import annotations

import json

import pytest

from connectors.argo import ArgoReceiver, label_value, workflow_name
from connectors.http import Receiver, ReceiverError
from tests.connectors.test_airflow import DATA, KEY, PAYLOAD
from tests.servers import RecordingServer, closed_port_url

TOKEN = "eyJhbGciOiJSUzI1NiJ9.service-account-token"
SUBMIT = "/api/v1/workflows/ml-pipelines/submit"
WORKFLOW = b'{"metadata": {"name": "retrain-5f0c2d8e9a7b4c61a3e2f0d9c8b7a6e5"}}'


def test_receiver_satisfies_the_protocol(server: RecordingServer) -> None:
    receiver: Receiver = ArgoReceiver(server.url, "ml-pipelines", "retrain")
    assert isinstance(receiver, Receiver)  # deliver() is there at run time too


def test_submits_from_the_workflow_template_with_parameters_name_and_label(
    server: RecordingServer,
) -> None:
    server.reply(200, WORKFLOW)

    ArgoReceiver(server.url + "/", "ml-pipelines", "retrain", token=TOKEN).deliver(PAYLOAD)

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", SUBMIT)
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body == {
        "namespace": "ml-pipelines",
        "resourceKind": "WorkflowTemplate",
        "resourceName": "retrain",
        "submitOptions": {
            "name": f"retrain-{KEY}",
            "parameters": [
                "trigger=" + json.dumps(DATA, separators=(",", ":")),
                "model=fraud-scorer",
                "model_version=7",
                "reason=drift",
            ],
            "labels": f"monitord.io/idempotency-key={KEY}",
        },
    }
    assert isinstance(body, dict)
    trigger = body["submitOptions"]["parameters"][0]
    assert json.loads(trigger.partition("=")[2]) == DATA  # Argo splits at the first "="


def test_a_cluster_template_and_no_token(server: RecordingServer) -> None:
    server.reply(200, WORKFLOW)

    ArgoReceiver(server.url, "ml-pipelines", "retrain", cluster_template=True).deliver(PAYLOAD)

    (request,) = server.requests
    assert "authorization" not in request.headers
    body = request.json()
    assert isinstance(body, dict)
    assert (body["resourceKind"], body["resourceName"]) == ("ClusterWorkflowTemplate", "retrain")


def test_409_already_exists_counts_as_delivered(server: RecordingServer) -> None:
    server.reply(
        409,
        b'{"code": 6, "message": "workflows.argoproj.io \\"retrain-5f0c\\" already exists"}',
    )
    ArgoReceiver(server.url, "ml-pipelines", "retrain").deliver(PAYLOAD)  # does not raise
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("status", "retriable"),
    [(400, False), (401, False), (403, False), (404, False), (500, True), (503, True)],
)
def test_failures_are_classified(server: RecordingServer, status: int, retriable: bool) -> None:
    server.reply(status, f'{{"message": "denied for {TOKEN}"}}'.encode())
    with pytest.raises(ReceiverError) as caught:
        ArgoReceiver(server.url, "ml-pipelines", "retrain", token=TOKEN).deliver(PAYLOAD)
    assert (caught.value.status, caught.value.retriable) == (status, retriable)
    assert TOKEN not in str(caught.value)


def test_no_answer_is_retriable() -> None:
    with pytest.raises(ReceiverError, match="no answer") as caught:
        ArgoReceiver(closed_port_url(), "ml-pipelines", "retrain").deliver(PAYLOAD)
    assert caught.value.retriable


def test_workflow_names_are_valid_kubernetes_names_per_template_and_key() -> None:
    assert workflow_name("retrain", KEY) == f"retrain-{KEY}"
    # A key that is no DNS label is replaced by its SHA-256 prefix; the template is lowered.
    assert (
        workflow_name("Retrain_Fraud.Scorer", "fraud/7 episode#3")
        == "retrain-fraud-scorer-1bdaf60dca819ed2f47be68161c9d808"
    )
    # A long template is cut so the name stays within 63 characters.
    name = workflow_name("t" * 80, KEY)
    assert name == "t" * 30 + f"-{KEY}"
    assert len(name) == 63
    assert workflow_name("other", KEY) != workflow_name("retrain", KEY)
    with pytest.raises(ValueError, match="key must not be empty"):
        workflow_name("retrain", "")


def test_label_values_are_the_key_when_valid() -> None:
    assert label_value(KEY) == KEY
    assert label_value("Run_1.a") == "Run_1.a"
    assert label_value("fraud/7 episode#3") == "1bdaf60dca819ed2f47be68161c9d808"
    assert label_value("x" * 63) == "x" * 63
    assert label_value("x" * 64) == "7ce100971f64e7001e8fe5a51973ecdf"  # too long for a label


def test_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="namespace must be a Kubernetes namespace name"):
        ArgoReceiver("http://argo:2746", "ML_Pipelines", "retrain")
    with pytest.raises(ValueError, match="template must not be empty"):
        ArgoReceiver("http://argo:2746", "ml", "")
    with pytest.raises(ValueError, match="token must not be empty"):
        ArgoReceiver("http://argo:2746", "ml", "retrain", token=" ")
