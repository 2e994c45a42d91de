"""Reference profiles from a real MLflow model registry: logged by `monitord reference build
--mlflow`, fetched by the daemon when a version appears on the broker, cached, and named in
the evidence of every alert and retrain request."""

from __future__ import annotations

import csv
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.broker import EmbeddedBroker, free_port
from connectors.kafka import KafkaSink, ensure_topics, read_topic
from connectors.mlflow import MlflowClient
from detectors.profile import ReferenceProfile
from monitord.cli import main
from monitord.config import Config, RegistrySettings, parse_config
from monitord.daemon import Daemon
from monitord.reference import load_profile, profile_from_rows
from monitord.registry import RegistryReferences, log_profile
from monitord.tabular import read_rows
from tests.registry.conftest import Mlflow

ARTIFACT = "monitord/profile.npz"
ROWS, WINDOW = 2000, 500
FAST_CONSUMER = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
SETTLE_S = 60.0

pytestmark = pytest.mark.registry


def training_data(path: Path, x_mean: float, seed: int) -> Path:
    """``ROWS`` training rows: "x" around ``x_mean``, "y" the same for every version."""
    rng = np.random.default_rng(seed)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y"])
        for x, y in zip(rng.normal(x_mean, 1.0, ROWS), rng.normal(5.0, 2.0, ROWS), strict=True):
            writer.writerow([f"{x:.6f}", f"{y:.6f}"])
    return path


def build_and_log(
    mlflow: Mlflow, tmp_path: Path, model: str, version: str, x_mean: float, seed: int
) -> ReferenceProfile:
    """`monitord reference build --mlflow`: the profile file, also logged to the version."""
    data = training_data(tmp_path / f"train-{version}.csv", x_mean, seed)
    out = tmp_path / f"{model}@{version}.npz"
    code = main(
        [
            *("reference", "build", str(data), "--model", model, "--version", version),
            *("--out", str(out), "--mlflow", "--tracking-uri", mlflow.url),
        ]
    )
    assert code == 0
    return load_profile(out)


@pytest.fixture
def model(mlflow: Mlflow, unique_name: Callable[[str], str]) -> str:
    name = unique_name("fraud-scorer")
    mlflow.register(name)
    return name


def config(
    bootstrap: str, names: dict[str, str], state_dir: Path, registry: dict[str, Any]
) -> Config:
    return parse_config(
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topics": [names["events"]],
                "group_id": names["group"],
                "dead_letter_topic": names["dead"],
                "alert_topic": names["alerts"],
                "trigger_topic": names["triggers"],
                "connect_timeout_s": 5.0,
                "consumer": FAST_CONSUMER,
            },
            "detection": {"window_size": WINDOW, "warmup_events": ROWS},
            "state_dir": str(state_dir),
            "registry": registry,
        },
        environ={},
    )


@pytest.fixture
def names(unique_name: Callable[[str], str]) -> dict[str, str]:
    return {key: unique_name(key) for key in ("events", "group", "dead", "alerts", "triggers")}


def produce(bootstrap: str, topic: str, model: str, version: str, x: np.ndarray) -> None:
    rng = np.random.default_rng(7)
    with KafkaSink(bootstrap) as sink:
        for i, (a, b) in enumerate(zip(x, rng.normal(5.0, 2.0, len(x)), strict=True)):
            body = {
                "model": model,
                "model_version": version,
                "event_id": f"{version}-{i}",
                "features": {"x": float(a), "y": float(b)},
            }
            sink.send(topic, model.encode(), orjson.dumps(body))
        sink.flush(timeout_s=20)


def step_until(daemon: Daemon, consumed: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while daemon.stats.events < consumed:
        assert time.monotonic() < deadline, f"consumed {daemon.stats.events} of {consumed}"
        daemon.step(0.5)


def cloudevents(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value or b"null") for r in read_topic(bootstrap, topic, timeout_s=10)]


def identity(profile: ReferenceProfile | None) -> str | None:
    return None if profile is None else profile.content_hash


def registry_of(daemon: Daemon) -> RegistryReferences:
    found = daemon.registry
    assert isinstance(found, RegistryReferences)
    return found


@pytest.mark.kafka
def test_each_version_is_monitored_against_its_own_training_profile(
    mlflow: Mlflow,
    model: str,
    broker: EmbeddedBroker,
    names: dict[str, str],
    daemons: Callable[[Config], Daemon],
    tmp_path: Path,
) -> None:
    # Version 1 trained on x ~ N(0, 1), version 2 on x ~ N(1, 1); live traffic of both is
    # x ~ N(0, 1): quiet against version 1's training data, drifted against version 2's.
    v1, run1 = mlflow.new_version(model)
    v2, run2 = mlflow.new_version(model)
    profile1 = build_and_log(mlflow, tmp_path, model, v1, x_mean=0.0, seed=1)
    profile2 = build_and_log(mlflow, tmp_path, model, v2, x_mean=1.0, seed=2)
    assert profile1.profile_id != profile2.profile_id
    # MLflow's own client finds the profiles where the daemon will look.
    logged = mlflow.download_with_mlflow(run2, ARTIFACT, tmp_path / "oracle")
    assert logged == profile2.to_bytes()

    ensure_topics(broker.bootstrap, {names["events"]: 1})
    live = np.random.default_rng(3).normal(0.0, 1.0, 1500)
    produce(broker.bootstrap, names["events"], model, v1, live)
    produce(broker.bootstrap, names["events"], model, v2, live)
    registry = {"tracking_uri": mlflow.url, "retries": 0}
    daemon = daemons(config(broker.bootstrap, names, tmp_path / "state", registry))
    step_until(daemon, 3000)

    # Detection started at the first event of each version, against its own profile.
    status = daemon.status()["models"]
    assert isinstance(status, dict)
    for version, profile in ((v1, profile1), (v2, profile2)):
        monitored = status[model][version]
        assert monitored["reference"] == "registry"
        assert monitored["reference_id"] == profile.profile_id
        assert monitored["reference_uri"] == f"models:/{model}/{version}"
        assert monitored["status"] == "monitoring"
    provenance1 = daemon.monitor.versions[model, v1].provenance
    assert provenance1 is not None
    assert provenance1.run_id == run1

    alerts = cloudevents(broker.bootstrap, names["alerts"])
    triggers = cloudevents(broker.bootstrap, names["triggers"])
    assert alerts, "x ~ N(0, 1) drifted from version 2's training data"
    assert {a["data"]["version"] for a in alerts} == {v2}, "version 1 stays quiet"
    assert {a["data"]["feature"] for a in alerts if a["data"]["feature"]} == {"x"}
    expected = {
        "registry": "mlflow",
        "tracking_uri": mlflow.url,
        "model_uri": f"models:/{model}/{v2}",
        "run_id": run2,
        "artifact_uri": f"mlflow-artifacts:/0/{run2}/artifacts/{ARTIFACT}",
        "sha256": hashlib.sha256(profile2.to_bytes()).hexdigest(),
    }
    for alert in alerts:
        assert alert["data"]["profile_id"] == profile2.profile_id
        assert alert["data"]["registry"] == expected
        annotations = dict(alert["data"]["annotations"])
        assert annotations["reference_uri"] == f"models:/{model}/{v2}"
        assert annotations["reference_registry"] == mlflow.url
    [trigger] = triggers
    assert trigger["data"]["version"] == v2
    assert trigger["data"]["profile_id"] == profile2.profile_id
    assert trigger["data"]["registry"] == expected


@pytest.mark.kafka
def test_a_restart_uses_the_cache_without_the_registry(
    mlflow: Mlflow,
    model: str,
    broker: EmbeddedBroker,
    names: dict[str, str],
    daemons: Callable[[Config], Daemon],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    version, run = mlflow.new_version(model)
    profile = build_and_log(mlflow, tmp_path, model, version, x_mean=0.0, seed=4)
    ensure_topics(broker.bootstrap, {names["events"]: 1})
    produce(broker.bootstrap, names["events"], model, version, np.zeros(100))
    state = tmp_path / "state"
    first = daemons(config(broker.bootstrap, names, state, {"tracking_uri": mlflow.url}))
    step_until(first, 100)
    assert first.monitor.versions[model, version].profile is not None
    first.close()

    # Restarted while the registry is gone: the checkpoint's version is restored against
    # the cached profile (its bytes checked against their sha256), and monitoring goes on.
    gone = f"http://127.0.0.1:{free_port()}"
    caplog.set_level(logging.INFO, logger="monitord.registry")
    produce(broker.bootstrap, names["events"], model, version, np.zeros(100))
    second = daemons(config(broker.bootstrap, names, state, {"tracking_uri": gone, "retries": 0}))
    step_until(second, 100)  # the 100 after the checkpoint
    monitor = second.monitor.versions[model, version]
    assert monitor.profile is not None
    assert monitor.profile.profile_id == profile.profile_id
    assert monitor.provenance is not None
    assert monitor.provenance.run_id == run
    assert monitor.provenance.tracking_uri == mlflow.url  # where it was fetched from
    assert registry_of(second).settle(SETTLE_S)
    messages = [r.getMessage() for r in caplog.records]
    assert any("from the registry cache" in m for m in messages), messages
    assert any("registry unreachable" in m and "its cached profile" in m for m in messages)


def test_a_changed_artifact_is_noticed_and_replaces_the_cached_profile(
    mlflow: Mlflow, model: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version, _ = mlflow.new_version(model)
    old = build_and_log(mlflow, tmp_path, model, version, x_mean=0.0, seed=5)
    settings = RegistrySettings(tracking_uri=mlflow.url)
    first = RegistryReferences(settings, tmp_path / "cache")
    assert identity(first.load(model, version)) == old.content_hash
    first.close()

    # Someone logs a new profile to the same version (here with the library call the CLI's
    # --mlflow makes).
    rows = training_data(tmp_path / "new.csv", 0.5, seed=6)
    new = profile_from_rows(read_rows(rows), model, version)
    client = MlflowClient(mlflow.url, timeout_s=10, max_bytes=settings.max_profile_bytes)
    logged = log_profile(client, new, ARTIFACT)
    assert logged.sha256 == hashlib.sha256(new.to_bytes()).hexdigest()

    caplog.set_level(logging.INFO, logger="monitord.registry")
    second = RegistryReferences(settings, tmp_path / "cache")
    try:
        assert identity(second.load(model, version)) == old.content_hash  # at once
        assert second.settle(SETTLE_S)
        assert identity(second.arrived(model, version)) == new.content_hash
        assert second.arrived(model, version) is None  # handed over once
        provenance = second.provenance(new.profile_id)
        assert provenance is not None
        assert provenance.model_uri == f"models:/{model}/{version}"
    finally:
        second.close()
    assert any("profile changed" in r.getMessage() for r in caplog.records)
    # The cache now holds the new one.
    third = RegistryReferences(settings.model_copy(update={"retries": 0}), tmp_path / "cache")
    try:
        assert identity(third.load(model, version)) == new.content_hash
    finally:
        third.close()


@pytest.mark.kafka
def test_a_profile_that_comes_late_replaces_the_warm_up(
    mlflow: Mlflow,
    model: str,
    broker: EmbeddedBroker,
    names: dict[str, str],
    daemons: Callable[[Config], Daemon],
    tmp_path: Path,
) -> None:
    version, _ = mlflow.new_version(model)
    profile = build_and_log(mlflow, tmp_path, model, version, x_mean=0.0, seed=8)
    ensure_topics(broker.bootstrap, {names["events"]: 1})
    produce(broker.bootstrap, names["events"], model, version, np.zeros(50))
    # wait_s = 0: the loop never waits for the registry; the version starts warming up.
    registry = {"tracking_uri": mlflow.url, "wait_s": 0}
    daemon = daemons(config(broker.bootstrap, names, tmp_path / "state", registry))
    step_until(daemon, 50)
    assert registry_of(daemon).settle(SETTLE_S)
    produce(broker.bootstrap, names["events"], model, version, np.zeros(50))
    step_until(daemon, 100)
    monitor = daemon.monitor.versions[model, version]
    assert not monitor.warming_up
    assert monitor.profile is not None
    assert monitor.profile.profile_id == profile.profile_id
    assert monitor.provenance is not None
    assert monitor.provenance.model_uri == f"models:/{model}/{version}"


def test_a_version_without_a_profile_warms_up_saying_so(
    mlflow: Mlflow, model: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    version, _ = mlflow.new_version(model)  # registered, no profile logged
    caplog.set_level(logging.INFO, logger="monitord.registry")
    registry = RegistryReferences(RegistrySettings(tracking_uri=mlflow.url), tmp_path / "cache")
    try:
        assert registry.load(model, version) is None
        assert registry.load(model, "999") is None  # no such version
        assert registry.settle(SETTLE_S)
    finally:
        registry.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    for missing in (version, "999"):
        assert any(
            line.startswith(f"{model}/{missing} has no reference profile in the registry")
            and "warms up" in line
            for line in lines
        ), lines
    assert not list((tmp_path / "cache").glob("*.npz"))


def test_an_unreachable_registry_means_a_warm_up_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = RegistrySettings(
        tracking_uri=f"http://127.0.0.1:{free_port()}",
        timeout_s=1.0,
        retries=2,
        retry_backoff_s=0.01,
    )
    registry = RegistryReferences(settings, tmp_path / "cache")
    try:
        started = time.monotonic()
        assert registry.load("m", "1") is None
        assert time.monotonic() - started < settings.wait_s + settings.timeout_s
        assert registry.settle(SETTLE_S)
        assert registry.arrived("m", "1") is None
    finally:
        registry.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("registry unreachable" in w for w in warnings) == 3  # the first try, 2 retries
    assert "giving up: it stays on its warm-up reference" in warnings[-1]
