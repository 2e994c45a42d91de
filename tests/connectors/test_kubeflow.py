"""Kubeflow Pipelines receiver: the documented v2beta1 lookup (filter JSON) and create-run
requests, an existing run as delivered, the newest version when none is configured, and which
failures are retried, against a real local HTTP server."""

from __future__ import annotations

import json
import urllib.parse

import pytest

from connectors.http import Receiver, ReceiverError
from connectors.kubeflow import KubeflowReceiver, name_filter
from tests.connectors.test_airflow import DATA, KEY, PAYLOAD
from tests.servers import Recorded, RecordingServer, closed_port_url

TOKEN = "kfp-token-0123456789"
PIPELINE = "9c1d4b6e-3f7a-4e2b-8d5c-1a2b3c4d5e6f"
VERSION = "7e8f9a0b-1c2d-4e3f-8a9b-0c1d2e3f4a5b"
EXPERIMENT = "3a4b5c6d-7e8f-4a9b-8c7d-6e5f4a3b2c1d"
NAME = f"monitord-{KEY}"
FILTER = {"predicates": [{"key": "display_name", "operation": "EQUALS", "string_value": NAME}]}
CREATED = b'{"run_id": "r-1", "state": "PENDING"}'
EXPECTED_BODY = {
    "display_name": NAME,
    "description": (
        f"Retrain of fraud-scorer version 7 requested by monitord (drift); idempotency key {KEY}"
    ),
    "pipeline_version_reference": {"pipeline_id": PIPELINE, "pipeline_version_id": VERSION},
    "runtime_config": {
        "parameters": {
            "trigger": DATA,
            "model": "fraud-scorer",
            "model_version": "7",
            "reason": "drift",
        }
    },
}


def _query(request: Recorded) -> tuple[str, dict[str, str]]:
    parts = urllib.parse.urlsplit(request.path)
    query = urllib.parse.parse_qs(parts.query, strict_parsing=True)
    assert all(len(values) == 1 for values in query.values())
    return parts.path, {key: values[0] for key, values in query.items()}


def _runs(*runs: dict[str, object]) -> bytes:
    return json.dumps({"runs": list(runs), "total_size": len(runs)}).encode()


def test_receiver_satisfies_the_protocol(server: RecordingServer) -> None:
    receiver: Receiver = KubeflowReceiver(server.url, PIPELINE)
    assert isinstance(receiver, Receiver)  # deliver() is there at run time too


def test_looks_for_the_run_by_display_name_then_creates_it(server: RecordingServer) -> None:
    server.reply(200, b"{}")  # the gateway omits an empty list of runs
    server.reply(200, CREATED)
    receiver = KubeflowReceiver(
        server.url + "/",
        PIPELINE,
        pipeline_version_id=VERSION,
        experiment_id=EXPERIMENT,
        token=TOKEN,
    )

    receiver.deliver(PAYLOAD)

    lookup, create = server.requests
    assert lookup.method == "GET"
    assert _query(lookup) == (
        "/apis/v2beta1/runs",
        {
            "filter": json.dumps(FILTER, separators=(",", ":")),
            "page_size": "10",
            "experiment_id": EXPERIMENT,
        },
    )
    assert json.loads(_query(lookup)[1]["filter"]) == FILTER
    assert lookup.headers["authorization"] == f"Bearer {TOKEN}"
    assert (create.method, create.path) == ("POST", "/apis/v2beta1/runs")
    assert create.headers["authorization"] == f"Bearer {TOKEN}"
    assert create.headers["content-type"] == "application/json"
    assert create.json() == {**EXPECTED_BODY, "experiment_id": EXPERIMENT}


def test_an_existing_run_with_the_display_name_counts_as_delivered(
    server: RecordingServer,
) -> None:
    server.reply(
        200,
        _runs(
            {
                "run_id": "r-1",
                "display_name": NAME,
                "state": "FAILED",  # still this request: the orchestrator has it
                "pipeline_version_reference": {"pipeline_id": PIPELINE},
            }
        ),
    )

    KubeflowReceiver(server.url, PIPELINE, pipeline_version_id=VERSION).deliver(PAYLOAD)

    (lookup,) = server.requests
    assert lookup.method == "GET"
    assert "experiment_id" not in _query(lookup)[1]


def test_runs_of_another_pipeline_or_name_do_not_count(server: RecordingServer) -> None:
    server.reply(
        200,
        _runs(
            {"display_name": NAME, "pipeline_version_reference": {"pipeline_id": "other"}},
            {"display_name": NAME + "-copy", "pipeline_version_reference": {}},
        ),
    )
    server.reply(200, CREATED)

    KubeflowReceiver(server.url, PIPELINE, pipeline_version_id=VERSION).deliver(PAYLOAD)

    assert [r.method for r in server.requests] == ["GET", "POST"]
    assert server.requests[1].json() == EXPECTED_BODY


def test_without_a_version_the_newest_one_runs(server: RecordingServer) -> None:
    server.reply(200, b'{"total_size": 0}')
    server.reply(
        200,
        json.dumps(
            {"pipeline_versions": [{"pipeline_version_id": VERSION, "display_name": "v3"}]}
        ).encode(),
    )
    server.reply(200, CREATED)

    KubeflowReceiver(server.url, PIPELINE).deliver(PAYLOAD)

    lookup, versions, create = server.requests
    assert lookup.method == versions.method == "GET"
    assert _query(versions) == (
        f"/apis/v2beta1/pipelines/{PIPELINE}/versions",
        {"page_size": "1", "sort_by": "created_at desc"},
    )
    assert create.json() == EXPECTED_BODY


def test_a_pipeline_without_versions_is_not_retried(server: RecordingServer) -> None:
    server.reply(200, b"{}")
    server.reply(200, b"{}")
    with pytest.raises(ReceiverError, match="no version to run") as caught:
        KubeflowReceiver(server.url, PIPELINE).deliver(PAYLOAD)
    assert not caught.value.retriable
    assert [r.method for r in server.requests] == ["GET", "GET"]


@pytest.mark.parametrize(("status", "retriable"), [(401, False), (404, False), (503, True)])
def test_lookup_failures_are_classified_and_nothing_is_created(
    server: RecordingServer, status: int, retriable: bool
) -> None:
    server.reply(status, f'{{"error": "denied {TOKEN}"}}'.encode())
    receiver = KubeflowReceiver(server.url, PIPELINE, pipeline_version_id=VERSION, token=TOKEN)
    with pytest.raises(ReceiverError) as caught:
        receiver.deliver(PAYLOAD)
    assert (caught.value.status, caught.value.retriable) == (status, retriable)
    assert "run lookup" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert [r.method for r in server.requests] == ["GET"]


@pytest.mark.parametrize(
    ("status", "retriable"), [(400, False), (403, False), (409, False), (500, True)]
)
def test_create_failures_are_classified(
    server: RecordingServer, status: int, retriable: bool
) -> None:
    # KFP has no idempotency key, so a 409 cannot mean "this request, already there".
    server.reply(200, b"{}")
    server.reply(status, b'{"error": "nope"}')
    with pytest.raises(ReceiverError) as caught:
        KubeflowReceiver(server.url, PIPELINE, pipeline_version_id=VERSION).deliver(PAYLOAD)
    assert (caught.value.status, caught.value.retriable) == (status, retriable)


def test_a_lookup_answer_that_is_no_run_list_is_not_retried(server: RecordingServer) -> None:
    server.reply(200, b'{"runs": "none"}')
    with pytest.raises(ReceiverError, match="without a list of runs") as caught:
        KubeflowReceiver(server.url, PIPELINE, pipeline_version_id=VERSION).deliver(PAYLOAD)
    assert not caught.value.retriable


def test_no_answer_is_retriable() -> None:
    with pytest.raises(ReceiverError, match="no answer") as caught:
        KubeflowReceiver(closed_port_url(), PIPELINE).deliver(PAYLOAD)
    assert caught.value.retriable


def test_name_filter_is_the_documented_json() -> None:
    assert name_filter("monitord-k") == (
        '{"predicates":[{"key":"display_name","operation":"EQUALS","string_value":"monitord-k"}]}'
    )


def test_construction_is_validated() -> None:
    with pytest.raises(ValueError, match="pipeline_id must not be empty"):
        KubeflowReceiver("http://kfp:8888", "")
    with pytest.raises(ValueError, match="experiment_id must not be empty"):
        KubeflowReceiver("http://kfp:8888", PIPELINE, experiment_id="")
    with pytest.raises(ValueError, match="base_url must be an absolute"):
        KubeflowReceiver("kfp:8888", PIPELINE)
