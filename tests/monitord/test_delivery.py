"""Alerts through the daemon to receivers: PagerDuty and Slack contracts, a real Alertmanager."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.outbox import Outbox
from connectors.stream import Record
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from monitord.delivery import Delivery, build_receivers
from tests.servers import Recorded, RecordingServer

ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"


def _records() -> list[Record]:
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(14_000, 2))
    rows[6_000:10_000, 0] += 1.0  # x drifts, then recovers; y never moves
    values = [
        orjson.dumps({"model": "m", "model_version": "1", "features": {"x": x, "y": y}})
        for x, y in rows.tolist()
    ]
    return [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(values)]


def _deliver(
    config: Config, environ: dict[str, str], clock: Callable[[], float] | None = None
) -> Delivery:
    """Run the daemon over the records, then deliver everything the outbox holds.

    The default clock ticks 10 s per reading, so ids of time-bucketed re-sends are fixed.
    """
    ticks = iter(float(t) for t in range(1_000_000, 2_000_000, 10))
    config.state_dir.mkdir(parents=True)
    outbox = Outbox(config.state_dir / "outbox.sqlite")
    delivery = Delivery(
        config.receivers,
        outbox,
        build_receivers(config.receivers, environ),
        clock=clock or (lambda: next(ticks)),
    )
    daemon = Daemon(config, MemorySource(_records()), MemorySink(), [delivery], lambda m, v: None)
    daemon.drain()
    for _ in range(5):  # each pass delivers what is due; nothing here fails, so one would do
        delivery.deliver_due()
    assert outbox.pending() == 0
    return delivery


def _config(tmp_path: Path, receivers: list[dict[str, object]]) -> Config:
    return parse_config(
        {
            "detection": {"warmup_events": 2000, "window_size": 1000},
            "receivers": receivers,
            "state_dir": str(tmp_path / "state"),
        }
    )


def test_pagerduty_and_slack_get_one_trigger_and_one_resolve_per_label_set(
    tmp_path: Path, server: RecordingServer
) -> None:
    server.default = (202, {}, b'{"status": "success"}')
    config = _config(
        tmp_path,
        [
            {
                "name": "pd",
                "type": "pagerduty",
                "url": server.url + "/v2/enqueue",
                "secret_env": "PD_KEY",
            },
            {
                "name": "chat",
                "type": "slack",
                "secret_env": "SLACK_URL",
                "match": {"severity": ["critical"]},
            },
        ],
    )
    delivery = _deliver(config, {"PD_KEY": ROUTING_KEY, "SLACK_URL": server.url + "/slack"})
    delivery.close()
    pd = [r.json() for r in server.requests if r.path == "/v2/enqueue"]
    slack = [r.json() for r in server.requests if r.path == "/slack"]
    assert pd, "no PagerDuty event"
    assert all(isinstance(e, dict) and e["routing_key"] == ROUTING_KEY for e in pd)
    actions = Counter((e["dedup_key"], e["event_action"]) for e in pd if isinstance(e, dict))
    keys = {key for key, _ in actions}
    for key in keys:  # no incident opened twice, every one closed after the recovery
        assert actions[(key, "trigger")] == 1
        assert actions[(key, "resolve")] == 1
    triggers = [e for e in pd if isinstance(e, dict) and e["event_action"] == "trigger"]
    details = [t["payload"]["custom_details"] for t in triggers]
    assert {d.get("feature") for d in details} <= {"x", None}  # y never alerted
    assert any(d.get("feature") == "x" and d["detector"] == "ks" for d in details)
    assert all(t["payload"]["source"] == "monitord/m" for t in triggers)
    # Slack is routed critical alerts only: the model-level alert, firing then resolved.
    texts = [m["text"] for m in slack if isinstance(m, dict)]
    assert len(texts) == 2
    assert texts[0].startswith(":rotating_light: FIRING")
    assert texts[1].startswith(":white_check_mark: RESOLVED")


@pytest.mark.alertmanager
def test_alerts_reach_a_real_alertmanager_then_resolve(
    tmp_path: Path, alertmanager: str, webhook: RecordingServer
) -> None:
    config = _config(tmp_path, [{"name": "am", "type": "alertmanager", "url": alertmanager}])
    config.state_dir.mkdir(parents=True)
    records = _records()
    source = MemorySource(records[:9_000])  # stationary, then the drift: no recovery yet
    delivery = Delivery(  # the real clock: Alertmanager drops alerts dated 1970
        config.receivers,
        Outbox(config.state_dir / "outbox.sqlite"),
        build_receivers(config.receivers, {}),
    )
    daemon = Daemon(config, source, MemorySink(), [delivery], lambda m, v: None)
    daemon.drain()
    delivery.deliver_due()
    with urllib.request.urlopen(alertmanager + "/api/v2/alerts", timeout=5) as answer:
        alerts = json.loads(answer.read())
    ours = [a for a in alerts if a["labels"].get("model") == "m"]
    names = {a["labels"]["alertname"] for a in ours}
    assert names == {"MonitordFeatureDrift", "MonitordModelDrift"}, alerts
    assert any(a["labels"].get("feature") == "x" and a["labels"]["detector"] == "ks" for a in ours)
    assert not any(a["labels"].get("feature") == "y" for a in ours)
    assert all(a["labels"]["model_version"] == "1" for a in ours)
    assert all(a["status"]["state"] == "active" and "summary" in a["annotations"] for a in ours)
    assert webhook.wait_for(lambda requests: _notified(requests, "firing"), 30.0)

    source.extend(records[9_000:])  # the drift ends
    daemon.drain()
    for _ in range(5):  # a change fires and resolves in this stretch: two sends of one key
        delivery.deliver_due()
    delivery.close()
    assert webhook.wait_for(lambda requests: _notified(requests, "resolved"), 30.0)
    with urllib.request.urlopen(alertmanager + "/api/v2/alerts", timeout=5) as answer:
        assert not [a for a in json.loads(answer.read()) if a["labels"].get("model") == "m"]


def _notified(requests: list[Recorded], status: str) -> bool:
    """Alertmanager sent its webhook a notification of ``status`` for model m."""
    bodies = [request.json() for request in requests]
    return any(
        isinstance(body, dict)
        and body.get("status") == status
        and any(a["labels"].get("model") == "m" for a in body.get("alerts", []))
        for body in bodies
    )


def test_alertmanager_resends_survive_a_restart(tmp_path: Path) -> None:
    # A deploy restarts the daemon while an alert fires: Alertmanager must keep hearing of it.
    config = _config(
        tmp_path,
        [
            {
                "name": "am",
                "type": "alertmanager",
                "url": "http://127.0.0.1:9",
                "resend_interval_s": 60,
            }
        ],
    )
    state = tmp_path / "resend.json"
    now = [1_000_000.0]
    config.state_dir.mkdir(parents=True)
    first = Delivery(
        config.receivers,
        Outbox(config.state_dir / "outbox.sqlite"),
        {},
        clock=lambda: now[0],
        resend_state=state,
    )
    Daemon(config, MemorySource(_records()), MemorySink(), [first], lambda m, v: None).drain()
    # Firing alerts, and resolved ones still re-sent for resolved_resend_s.
    active = set(first._active)
    assert active
    first.close()

    now[0] += 61
    outbox = Outbox(config.state_dir / "outbox.sqlite")
    second = Delivery(config.receivers, outbox, {}, clock=lambda: now[0], resend_state=state)
    assert set(second._active) == active
    before = outbox.pending()
    second.flush()
    assert outbox.pending() == before + len(second._active)  # every alert re-sent
    second.close()
