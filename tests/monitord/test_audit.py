"""The audit log and `monitord alerts`."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from monitord.audit import AuditLog
from monitord.cli import main
from monitord.config import parse_config
from monitord.daemon import Daemon
from monitord.retrain import RetrainTrigger


def _run(audit: AuditLog, rows: np.ndarray, first_offset: int = 0, model: str = "m") -> Daemon:
    values = [
        orjson.dumps({"model": model, "features": {"x": x, "y": y}}) for x, y in rows.tolist()
    ]
    records = [Record("in", 0, first_offset + i, b"m", v, 0) for i, v in enumerate(values)]
    config = parse_config({"detection": {"warmup_events": 2000, "window_size": 1000}})
    daemon = Daemon(config, MemorySource(records), MemorySink(), [audit], lambda m, v: None)
    daemon.drain()
    return daemon


def test_every_decision_is_recorded_once_and_active_alerts_are_listed(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    rows = rng.normal(size=(8_000, 2))
    rows[4_000:, 0] += 1.0  # x drifts and stays drifted
    clock = iter(float(t) for t in range(1_000, 100_000))
    audit = AuditLog(tmp_path / "audit.sqlite", clock=lambda: next(clock))
    _run(audit, rows)
    history = audit.history(100)
    kinds = {(d.kind, d.status) for d in history}
    assert ("alert", "firing") in kinds
    assert ("retrain", "requested") in kinds
    active = audit.active()
    assert {d.labels.get("feature") for d in active} == {"x", None}  # x, and the model alert
    assert all(d.status == "firing" for d in active)
    _run(audit, rows)  # the same stream again: same ids, nothing recorded twice
    assert len(audit.history(1000)) == len(history)
    audit.close()


def test_the_daemon_records_the_requests_its_policy_holds_back(tmp_path: Path) -> None:
    """The policy only returns what it held back; the daemon logs it and its recorder (the
    audit log) keeps it as a *suppressed* row."""
    rng = np.random.default_rng(8)
    rows = rng.normal(size=(8_000, 2))
    rows[4_000:, 0] += 1.0
    values = [orjson.dumps({"model": "m", "features": {"x": x, "y": y}}) for x, y in rows.tolist()]
    records = [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(values)]
    config = parse_config(
        {
            "detection": {"warmup_events": 2000, "window_size": 1000},
            "policy": {"retrain_min_events": 1_000_000},
        }
    )
    audit = AuditLog(tmp_path / "audit.sqlite")
    daemon = Daemon(
        config, MemorySource(records), MemorySink(), [audit], lambda m, v: None, recorder=audit
    )
    outputs = daemon.drain()
    daemon.close()
    audit = AuditLog(tmp_path / "audit.sqlite")
    (held,) = audit.history(100, statuses=["suppressed"])
    audit.close()
    assert (held.kind, held.model) == ("retrain", "m")
    assert "held back by min_events" in held.summary
    assert not any(isinstance(o, RetrainTrigger) for o in outputs)


def test_monitord_alerts_reads_the_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "monitord.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    assert main(["alerts", "--config", str(config)]) == 0
    assert "no audit log" in capsys.readouterr().out
    rng = np.random.default_rng(8)
    rows = rng.normal(size=(8_000, 2))
    rows[4_000:, 0] += 1.0
    audit = AuditLog(tmp_path / "state" / "audit.sqlite")
    _run(audit, rows)
    active = audit.active()
    audit.close()
    assert main(["alerts", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"{len(active)} active alert(s)" in out
    assert all(d.summary in out for d in active)
    assert "Drift firing on x of m/unversioned: ks statistic" in out
    assert "retrain requested" in out


def test_monitord_alerts_filters_by_model_and_state_and_prints_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "monitord.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    assert main(["alerts", "--config", str(config), "--json"]) == 0
    empty = capsys.readouterr()
    assert json.loads(empty.out) == {"active": [], "history": []}
    assert "no audit log" in empty.err
    rng = np.random.default_rng(8)
    rows = rng.normal(size=(8_000, 2))
    rows[4_000:, 0] += 1.0
    audit = AuditLog(tmp_path / "state" / "audit.sqlite")
    _run(audit, rows, model="m")
    _run(audit, rows, model="n")
    firing_n = audit.active(["n"])
    audit.close()
    assert firing_n
    assert {d.model for d in firing_n} == {"n"}

    def alerts(*arguments: str) -> dict[str, list[dict[str, object]]]:
        assert main(["alerts", "--config", str(config), "--json", *arguments]) == 0
        document: dict[str, list[dict[str, object]]] = json.loads(capsys.readouterr().out)
        return document

    only_firing = alerts("--model", "n", "--state", "firing")
    assert list(only_firing) == ["active"]  # what fires now, no history
    assert [a["id"] for a in only_firing["active"]] == [d.id for d in firing_n]
    first = only_firing["active"][0]
    assert set(first) == {
        "id",
        "recorded_at",
        "kind",
        "status",
        "model",
        "model_version",
        "labels",
        "summary",
    }
    assert (first["kind"], first["status"], first["model"]) == ("alert", "firing", "n")
    assert first["model_version"] == "unversioned"
    both = alerts("--model", "m", "--model", "n", "--history", "1000")
    assert {a["model"] for a in both["history"]} == {"m", "n"}
    assert len(both["active"]) == 2 * len(firing_n)
    requested = alerts("--state", "requested")
    assert list(requested) == ["history"]
    assert requested["history"]
    assert {(d["kind"], d["status"]) for d in requested["history"]} == {("retrain", "requested")}
    assert alerts("--model", "absent") == {"active": [], "history": []}

    assert main(["alerts", "--config", str(config), "--state", "firing", "--model", "n"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{len(firing_n)} active alert(s)")
    assert "latest" not in text


def test_version_and_bad_filters(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == (
        f"monitord {metadata.version('monitord')} (Python {platform.python_version()})\n"
    )
    with pytest.raises(SystemExit) as refused:
        main(["alerts", "--state", "pending"])
    assert refused.value.code == 2
    assert "--state: invalid choice: 'pending'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["alerts", "--history", "0"])
    assert "--history: must be at least 1, got 0" in capsys.readouterr().err
