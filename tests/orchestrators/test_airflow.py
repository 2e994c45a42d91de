"""Retrain requests to a real Airflow 3 (`airflow standalone`): one DAG run per idempotency key."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.airflow import AirflowReceiver
from connectors.outbox import Outbox
from monitord.alerts import stable_id
from monitord.cloudevent import encode
from tests.orchestrators.conftest import (
    DAEMON_KEY,
    DAEMON_LINEAGE,
    AcknowledgementLost,
    Airflow,
    SimulatedCrashError,
    daemon_config,
    payload,
    retrain_trigger,
    run_daemon,
)

pytestmark = [pytest.mark.slow, pytest.mark.orchestrators]


NewRuns = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def new_runs(airflow: Airflow) -> NewRuns:
    """The DAG runs created since the test began (the server is shared by the session)."""
    before = {run["dag_run_id"] for run in airflow.dag_runs()}
    return lambda: [run for run in airflow.dag_runs() if run["dag_run_id"] not in before]


def _receiver(airflow: Airflow) -> AirflowReceiver:
    return AirflowReceiver(
        airflow.base_url, airflow.dag_id, username=airflow.username, password=airflow.password
    )


def test_a_trigger_creates_one_dag_run_with_its_lineage(
    airflow: Airflow, new_runs: NewRuns
) -> None:
    key = stable_id("airflow", "one run")
    sent = payload(retrain_trigger(key))

    _receiver(airflow).deliver(sent)

    runs = new_runs()
    assert len(runs) == 1
    run = runs[0]
    assert run["dag_run_id"] == f"monitord__{key}"
    assert run["dag_id"] == airflow.dag_id
    assert run["logical_date"] is None
    assert run["run_type"] == "manual"
    assert run["triggered_by"] == "rest_api"
    assert run["triggering_user_name"] == airflow.username
    assert run["state"] == "queued"  # the DAG is paused: created, never executed
    assert run["conf"] == orjson.loads(sent)["data"]
    assert run["conf"]["idempotency_key"] == key
    assert run["conf"]["model"] == "fraud-scorer"
    assert run["conf"]["drifted_features"] == ["amount", "country"]
    assert run["conf"]["offset"] == {
        "topic": "inference",
        "partition": 0,
        "first_offset": 8999,
        "last_offset": 8999,
    }
    assert run["conf"]["end_time"] == "2026-11-18T11:16:40.500Z"


def test_the_same_trigger_delivered_twice_leaves_one_dag_run(
    airflow: Airflow, new_runs: NewRuns
) -> None:
    key = stable_id("airflow", "redelivered")
    sent = payload(retrain_trigger(key))

    _receiver(airflow).deliver(sent)
    # A restart before the outbox recorded the acknowledgement: a new receiver (and a new
    # token), the same payload; Airflow answers 409, which counts as delivered.
    _receiver(airflow).deliver(sent)

    runs = new_runs()
    assert [run["dag_run_id"] for run in runs] == [f"monitord__{key}"]
    assert runs[0]["conf"] == orjson.loads(sent)["data"]


def test_a_second_trigger_makes_a_second_dag_run(airflow: Airflow, new_runs: NewRuns) -> None:
    receiver = AirflowReceiver(airflow.base_url, airflow.dag_id, token=airflow.token())
    first, second = stable_id("airflow", "first"), stable_id("airflow", "second")

    receiver.deliver(payload(retrain_trigger(first)))
    receiver.deliver(payload(retrain_trigger(second, version="8")))
    receiver.deliver(payload(retrain_trigger(first)))

    runs = new_runs()
    versions = {run["dag_run_id"]: run["conf"]["version"] for run in runs}
    assert len(runs) == 2
    assert versions == {f"monitord__{first}": "7", f"monitord__{second}": "8"}


def _listeners(namespace: str | None) -> list[str]:
    """`ss -ltnpH` lines: TCP listeners with their processes, here or in `namespace`."""
    command = ["ss", "-ltnpH"]
    if namespace is not None:
        command = ["ip", "netns", "exec", namespace, *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def test_airflow_listens_only_inside_its_namespace(airflow: Airflow) -> None:
    inside = _listeners(airflow.namespace)
    local_addresses = {line.split()[3] for line in inside}
    # Airflow's log servers bind every interface (IPv4 and IPv6); its API binds the veth.
    assert {"0.0.0.0:8793", "0.0.0.0:8794", "[::]:8793", "[::]:8794"} <= local_addresses
    api = airflow.base_url.removeprefix("http://")
    assert api in local_addresses
    pids = subprocess.run(
        ["ip", "netns", "pids", airflow.namespace], capture_output=True, text=True, check=True
    ).stdout.split()
    assert str(airflow.server.process.pid) in pids
    outside = [line for line in _listeners(None) if any(f"pid={pid}," in line for pid in pids)]
    assert outside == []


def test_a_drift_through_the_daemon_makes_one_dag_run_across_a_restart(
    airflow: Airflow, new_runs: NewRuns, tmp_path: Path
) -> None:
    config = daemon_config(
        tmp_path,
        {
            "name": "airflow",
            "type": "airflow",
            "url": airflow.base_url,
            "dag_id": airflow.dag_id,
            "username_env": "AIRFLOW_USER",
            "secret_env": "AIRFLOW_PASSWORD",
        },
    )
    environ = {"AIRFLOW_USER": airflow.username, "AIRFLOW_PASSWORD": airflow.password}
    outbox_path = tmp_path / "outbox.sqlite"

    # First life: the daemon decides one request and stores it; Airflow takes it, then the
    # daemon dies before the outbox records the acknowledgement.
    delivery, (request,) = run_daemon(config, AcknowledgementLost(outbox_path), environ)
    assert request.id == DAEMON_KEY
    with pytest.raises(SimulatedCrashError):
        delivery.deliver_due()
    delivery.close()
    assert [run["dag_run_id"] for run in new_runs()] == [f"monitord__{request.id}"]

    # Second life: without a checkpoint it reads the input again and decides the same request;
    # the outbox still holds it as pending, so it is delivered again and Airflow answers 409.
    outbox = Outbox(outbox_path)
    delivery, (again,) = run_daemon(config, outbox, environ)
    assert again.id == request.id
    delivery.deliver_due()
    stored = outbox.get(request.id, "airflow")
    assert stored is not None
    assert (stored.state, stored.attempts) == ("delivered", 1)
    delivery.close()

    runs = new_runs()
    assert [run["dag_run_id"] for run in runs] == [f"monitord__{DAEMON_KEY}"]
    conf = runs[0]["conf"]
    assert conf == orjson.loads(encode(request))["data"]
    assert DAEMON_LINEAGE.items() <= conf.items()
