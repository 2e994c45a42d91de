"""Retrain requests to a real Prefect 3 server: one flow run per idempotency key."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connectors.outbox import Outbox
from connectors.prefect import PrefectReceiver
from monitord.alerts import stable_id
from monitord.cloudevent import encode
from tests.orchestrators.conftest import (
    DAEMON_KEY,
    DAEMON_LINEAGE,
    AcknowledgementLost,
    Prefect,
    SimulatedCrashError,
    daemon_config,
    payload,
    retrain_trigger,
    run_daemon,
)

pytestmark = [pytest.mark.slow, pytest.mark.orchestrators]


def test_a_trigger_creates_one_flow_run_with_its_lineage(
    prefect: Prefect, prefect_deployment: tuple[str, str]
) -> None:
    name, deployment_id = prefect_deployment
    key = stable_id("prefect", "one run")
    sent = payload(retrain_trigger(key))

    PrefectReceiver(prefect.api_url, name).deliver(sent)

    runs = prefect.flow_runs(deployment_id)
    assert len(runs) == 1
    run = runs[0]
    assert run["idempotency_key"] == key
    assert run["name"] == f"monitord-{key}"
    assert run["deployment_id"] == deployment_id
    assert run["flow_id"] == prefect.flow_id
    assert run["state_type"] == "SCHEDULED"  # created; no worker in this test runs it
    data = orjson.loads(sent)["data"]
    assert run["parameters"] == {"trigger": data}
    trigger = run["parameters"]["trigger"]
    assert trigger["idempotency_key"] == key
    assert trigger["model"] == "fraud-scorer"
    assert trigger["version"] == "7"
    assert trigger["reason"] == "drift"
    assert trigger["drifted_features"] == ["amount", "country"]
    assert trigger["statistics"] == [["amount", "ks", 0.21, 0.08], ["country", "psi", 0.4, 0.25]]
    assert trigger["offsets"] == [
        {"topic": "inference", "partition": 0, "first_offset": 6000, "last_offset": 8999},
        {"topic": "inference", "partition": 1, "first_offset": 40, "last_offset": 77},
    ]
    assert trigger["start_time"] == "2026-11-18T11:06:40.000Z"
    assert trigger["profile_id"] == "b3f1c2d4e5a6978812345678abcdef01"
    assert trigger["config_hash"] == "c0ffee00c0ffee00"


def test_the_same_trigger_delivered_twice_leaves_one_flow_run(
    prefect: Prefect, prefect_deployment: tuple[str, str]
) -> None:
    name, deployment_id = prefect_deployment
    key = stable_id("prefect", "redelivered")
    sent = payload(retrain_trigger(key))

    PrefectReceiver(prefect.api_url, name).deliver(sent)
    first = prefect.flow_runs(deployment_id)
    # A restart before the outbox recorded the acknowledgement: a new receiver, same payload.
    PrefectReceiver(prefect.api_url, deployment_id).deliver(sent)

    runs = prefect.flow_runs(deployment_id)
    assert len(runs) == 1
    assert runs[0]["id"] == first[0]["id"]
    assert runs[0]["idempotency_key"] == key


def test_a_second_trigger_makes_a_second_flow_run(
    prefect: Prefect, prefect_deployment: tuple[str, str]
) -> None:
    name, deployment_id = prefect_deployment
    receiver = PrefectReceiver(prefect.api_url, name)
    first, second = stable_id("prefect", "first"), stable_id("prefect", "second")

    receiver.deliver(payload(retrain_trigger(first)))
    receiver.deliver(payload(retrain_trigger(second, version="8")))
    receiver.deliver(payload(retrain_trigger(first)))

    runs = prefect.flow_runs(deployment_id)
    assert sorted(r["idempotency_key"] for r in runs) == sorted([first, second])
    versions = {r["idempotency_key"]: r["parameters"]["trigger"]["version"] for r in runs}
    assert versions == {first: "7", second: "8"}


def test_a_drift_through_the_daemon_makes_one_flow_run_across_a_restart(
    prefect: Prefect, prefect_deployment: tuple[str, str], tmp_path: Path
) -> None:
    name, deployment_id = prefect_deployment
    config = daemon_config(
        tmp_path, {"name": "prefect", "type": "prefect", "url": prefect.api_url, "deployment": name}
    )
    outbox_path = tmp_path / "outbox.sqlite"

    # First life: the daemon decides one request and stores it; Prefect takes it, then the
    # daemon dies before the outbox records the acknowledgement.
    delivery, (request,) = run_daemon(config, AcknowledgementLost(outbox_path), {})
    assert request.id == DAEMON_KEY
    with pytest.raises(SimulatedCrashError):
        delivery.deliver_due()
    delivery.close()
    first = prefect.flow_runs(deployment_id)
    assert [run["idempotency_key"] for run in first] == [DAEMON_KEY]

    # Second life: without a checkpoint it reads the input again and decides the same request;
    # the outbox still holds it as pending, so it is delivered again and Prefect answers with
    # the run it already has.
    outbox = Outbox(outbox_path)
    delivery, (again,) = run_daemon(config, outbox, {})
    assert again.id == request.id
    delivery.deliver_due()
    stored = outbox.get(request.id, "prefect")
    assert stored is not None
    assert (stored.state, stored.attempts) == ("delivered", 1)
    delivery.close()

    runs = prefect.flow_runs(deployment_id)
    assert [run["id"] for run in runs] == [first[0]["id"]]
    trigger = runs[0]["parameters"]["trigger"]
    assert trigger == orjson.loads(encode(request))["data"]
    assert DAEMON_LINEAGE.items() <= trigger.items()
