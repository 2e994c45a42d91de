"""Checkpoint state across monitord versions and from untrusted stores: a checkpoint written
before the state was typed (format 1) restores to the same decisions, every stored field
keeps its name, and state that does not validate is named and left out, never half loaded."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.stream import Record, TopicPartition
from monitord.checkpoint import CheckpointError, LocalStore, decode
from monitord.config import Config, parse_config
from monitord.events import PREDICTION
from monitord.monitor import Evaluation
from monitord.policy import Policy, PolicyState
from tests.monitord.recorded import RecordedRun

FORMAT_1_STORE = Path(__file__).parent / "data" / "checkpoint-format1.sqlite"
"""Written by monitord at commit 4b74750 (untyped state): `_records()` under `_config()`,
nine daemon steps, `Daemon.checkpoint()`, then a crash (`FORMAT_1_STEPS`)."""
FORMAT_1_STEPS = 9
PARTITIONS = (TopicPartition("in", 0), TopicPartition("in", 1))


def _records() -> list[Record]:
    """Model ``m`` on partition 0: two numeric columns that shift one after the other (drift,
    then a change against the recent regime) and a categorical one with missing values;
    model ``w`` on partition 1, still warming up at the checkpoint."""
    rng = np.random.default_rng(11)
    n = 6000
    values = rng.normal(size=(n, 2))
    values[2500:, 0] += 1.5
    values[4000:, 1] += 1.5
    colours = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    records = []
    for i in range(n):
        features: dict[str, Any] = {"a": float(values[i, 0]), "b": float(values[i, 1])}
        features["colour"] = None if i % 53 == 0 else str(colours[i])
        event = {
            "model": "m",
            "model_version": "1",
            "features": features,
            "prediction": float(values[i].sum()),
        }
        records.append(Record("in", 0, i, b"m", orjson.dumps(event), i * 1000))
    for i in range(700):
        kind = ["p", "q"][i % 2] if i % 7 else None
        event = {"model": "w", "model_version": "3", "features": {"x": rng.normal(), "kind": kind}}
        records.append(Record("in", 1, i, b"w", orjson.dumps(event), i * 1000))
    return records


def _config() -> Config:
    return parse_config(
        {
            "detection": {
                "warmup_events": 1000,
                "window_size": 250,
                "window_seconds": None,
                "change_reference_events": 250,
            },
            "alerts": {"fire_windows": 1, "fire_span": 2, "resolve_windows": 2},
            "policy": {"retrain_consecutive_windows": 2, "retrain_cooldown_windows": 4},
            "kafka": {"consumer": {"max_poll_records": 500}},
            "checkpoint": {"interval_events": 100_000, "interval_s": 1e9},
        }
    )


FORMAT_2_MONITOR_FIELDS = {"learner", "unmonitored", "never_seen", "newest_time"}
"""What format 2 of the monitor's document added (columns learned over the warm-up)."""


def _stored(path: Path, without: frozenset[str] = frozenset()) -> list[Any]:
    """Every stored version's metadata (monitor, policy) as JSON, without the pieces'
    format versions (format 1 had none) and the monitor fields ``without``."""
    store = LocalStore(path)
    try:
        found = []
        for tp in PARTITIONS:
            checkpoint = store.load(tp)
            assert checkpoint is not None
            for version in checkpoint.versions:
                monitor = {
                    k: v
                    for k, v in version.monitor.items()
                    if k != "format_version" and k not in without
                }
                policy = version.policy
                if policy is not None:
                    policy = {k: v for k, v in policy.items() if k != "format_version"}
                found.append(json.loads(json.dumps([monitor, policy])))
        return found
    finally:
        store.close()


def _decisions(run: RecordedRun) -> tuple[list[tuple[object, ...]], list[str]]:
    def row(e: Evaluation) -> tuple[object, ...]:
        return e.model, e.regime, e.result.detector, e.result.row, e.result.statistic.tobytes()

    return [row(e) for e in run.evaluations], [o.id for o in run.outputs]


def test_a_format_1_checkpoint_restores_to_the_same_decisions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = _records()
    old = tmp_path / "format1.sqlite"
    shutil.copy(FORMAT_1_STORE, old)
    new = tmp_path / "now.sqlite"
    first = RecordedRun(_config(), records, new)
    first.steps(FORMAT_1_STEPS)
    first.daemon.checkpoint()
    first.crash()

    # The same state is stored under the same names, with the same values, plus what
    # format 2 added; a version warming up holds the columns it is learning, not yet fixed.
    now, then = _stored(new), _stored(old)
    (detecting, _), (learning, _) = now
    assert {k: detecting[k] for k in FORMAT_2_MONITOR_FIELDS & detecting.keys()} == {
        "unmonitored": {"reasons": {}, "overflow": 0, "seen": []},
        "never_seen": [],
        "newest_time": 3799.0,
    }
    assert learning["columns"] is None
    # The prediction's column is learned first (w sends none: reported at the warm-up's end).
    assert then[1][0]["columns"] == [["x"], ["kind"]]
    assert learning["learner"]["names"] == [PREDICTION, "x", "kind"]
    for monitor, _ in [*now, *then]:
        for name in [*FORMAT_2_MONITOR_FIELDS, "columns"]:
            monitor.pop(name, None)
    assert now == then
    monitor, policy = _stored(old)[0]
    assert monitor["regime"]["phase"] == "testing"
    assert policy["retrain"]["in_episode"]

    from_old = RecordedRun(_config(), records, old).drain()
    from_new = RecordedRun(_config(), records, new).drain()
    assert "cannot restore" not in caplog.text
    assert _decisions(from_old) == _decisions(from_new)
    evaluations, outputs = _decisions(from_old)
    assert evaluations
    assert outputs
    # Restored, not started afresh: nothing is warmed up or detected twice.
    assert min(e.result.row for e in from_old.evaluations if e.model == "m") > 2000


FORMAT_1_POLICY: dict[str, Any] = {
    "alerts": [
        ["a", "ks", [1], True, 0, 0, "warning"],
        ["b", "ks", [1], True, 0, 0, "warning"],
        ["c", "ks", [0], False, 0, 0],
        ["", "any", [1], True, 0, 0, "critical"],
    ],
    "retrain": {
        "drifting_windows": 1,
        "clean_windows": 0,
        "in_episode": False,
        "cooldown": 2,
        "episode_first_row": 200,
        "superseded": False,
        "blocked": "cooldown",
        "last_request_row": 199,
        "latest": {
            "profile_id": "ref-1",
            "statistics": [["a", "ks", 0.5, 0.1], ["b", "ks", 0.5, 0.1]],
            "feature_share": 0.5,
            "windows": 1,
            "first_row": 200,
            "row": 299,
            "offset": {"topic": "in", "partition": 0, "first_offset": 1299, "last_offset": 1299},
            "offsets": [{"topic": "in", "partition": 0, "first_offset": 1200, "last_offset": 1299}],
            "start_time": 1795393200.0,
            "end_time": 1795393799.0,
        },
        "model": {
            "seq": 5,
            "current": "2",
            "requests": {"2026-11-23": 2},
            "schedule": {
                "cron": "0 * * * *",
                "last_slot": 1795395600.0,
                "next_slot": 1795399200.0,
            },
        },
    },
    "adwin_cut": ["@prediction"],
    "changed_regime": 2,
}
"""A model version's policy state as monitord at commit 4b74750 wrote it: every field set."""


def _policy() -> Policy:
    models = [{"name": "m", "retrain_schedule": "0 * * * *"}]
    return Policy.from_config(parse_config({"models": models}))


def test_a_format_1_policy_state_restores_every_field() -> None:
    policy = _policy()
    policy.restore(("m", "2"), PolicyState.load(FORMAT_1_POLICY, "test"))
    snapshot = policy.snapshot(("m", "2"))
    assert snapshot is not None
    stored = json.loads(json.dumps(snapshot.dump()))
    stored.pop("format_version", None)
    assert stored == FORMAT_1_POLICY


def test_state_from_before_later_fields_takes_their_defaults() -> None:
    # Format 1 grew: the retrain guards, the model's state, the change episode.
    retrain = {
        k: FORMAT_1_POLICY["retrain"][k]
        for k in ("drifting_windows", "clean_windows", "in_episode", "cooldown")
    }
    early: dict[str, object] = {
        "alerts": [["a", "ks", [1, 0], False, 0, 0]],
        "retrain": {**retrain, "episode_first_row": 200},
        "adwin_cut": [],
    }
    policy = _policy()
    policy.restore(("m", "1"), PolicyState.load(early, "test"))
    snapshot = policy.snapshot(("m", "1"))
    assert snapshot is not None
    stored = json.loads(json.dumps(snapshot.dump()))
    assert stored["changed_regime"] == 0
    assert stored["retrain"]["latest"] is None
    assert (stored["retrain"]["superseded"], stored["retrain"]["blocked"]) == (False, "")
    assert stored["retrain"]["model"]["current"] == "1"


Mangle = Callable[[dict[str, Any], dict[str, Any]], None]
"""Changes a stored version's monitor and policy documents in place."""


def _set(path: str, value: object) -> Mangle:
    """Set the field at ``path`` (``monitor.log.first_row``, ``policy.alerts.0``)."""
    document, *keys = path.split(".")

    def mangle(monitor: dict[str, Any], policy: dict[str, Any]) -> None:
        node: Any = monitor if document == "monitor" else policy
        for key in keys[:-1]:
            node = node[int(key)] if isinstance(node, list) else node[key]
        last = keys[-1]
        node[int(last) if isinstance(node, list) else last] = value

    return mangle


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (
            _set("monitor.log.first_row", "x"),
            "monitor state of version 0: log.first_row: Input should be a valid integer",
        ),
        (
            _set("monitor.regime.phase", "dozing"),
            "monitor state of version 0: regime.phase: Input should be 'idle', 'capturing' "
            "or 'testing' (got 'dozing')",
        ),
        (
            _set("monitor.log", None),
            "monitor state of version 0: a version has a row log exactly when it has a "
            "reference (profile_id)",
        ),
        (
            _set("monitor.format_version", 3),
            "monitor state of version 0: format_version: format 3; this monitord reads format 2",
        ),
        (
            _set("policy.retrain.latest.offsets.0.partition", "p0"),
            "policy state of m/1: retrain.latest.offsets[0].partition: Input should be a valid "
            "integer",
        ),
        (
            _set("policy.alerts.0", ["a", "ks", [1], True, 0]),
            "policy state of m/1: alerts[0][5]: Field required",
        ),
        (_set("policy.adwin_cut", "a"), "policy state of m/1: adwin_cut: Input should be a"),
        (
            _set("policy.retrain.model.requests.1970-01-01", -1),
            "policy state of m/1: retrain.model.requests.1970-01-01: Input should be greater "
            "than or equal to 0 (got -1)",
        ),
    ],
)
def test_malformed_state_is_named_and_its_version_starts_afresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mangle: Mangle, message: str
) -> None:
    path = tmp_path / "format1.sqlite"
    shutil.copy(FORMAT_1_STORE, path)
    store = LocalStore(path)
    checkpoint = store.load(PARTITIONS[0])
    assert checkpoint is not None
    (version,) = checkpoint.versions
    assert version.policy is not None
    mangle(version.monitor, version.policy)
    store.save([checkpoint], [])
    store.close()

    run = RecordedRun(_config(), _records(), path)
    run.steps(1)

    assert f"in[0]: cannot restore a model version ({message}" in caplog.text
    assert "in[1]: cannot restore" not in caplog.text
    versions = run.daemon.monitor.versions
    assert versions["m", "1"].warming_up  # afresh: capturing a new reference
    assert run.daemon.policy.snapshot(("m", "1")) is None  # no policy state half restored
    assert versions["w", "3"].warming_up


def test_malformed_checkpoint_metadata_is_refused_with_the_field() -> None:
    meta = {"format": "monitord.checkpoint", "format_version": 1, "topic": "in", "partition": 0}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    with pytest.raises(CheckpointError, match=r"store \[in-0\]: next_offset: Field required"):
        decode(buffer.getvalue(), "store [in-0]")
