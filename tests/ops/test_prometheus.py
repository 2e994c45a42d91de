"""A real Prometheus scrapes a running daemon, and a stalled daemon makes the shipped
MonitordStalled rule fire into a real Alertmanager (issue 7).

One scenario, in the order an SRE meets it: the live scrape passes `promtool check
metrics` and says what the stream implies; Prometheus scrapes the daemon with the shipped
scrape job and evaluates the shipped rules, time windows scaled down; an idle daemon with
nothing waiting raises nothing ("no drift" is not "stalled"); a daemon whose broker stops
answering in the middle of a burst turns not ready, MonitordStalled fires through
Alertmanager to its receiver, and both recover once the broker is back.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import signal
import subprocess
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors.broker import EmbeddedBroker, free_port
from monitord.events import PREDICTION
from monitord.metrics import BAD_RECORD_REASONS
from tests.deploy.test_deploy import CATALOGUE, RUNTIME_FAMILIES
from tests.faults.harness import (
    FAST_CONSUMER,
    Daemon,
    Offsets,
    Stream,
    admin_url,
    daemon_config,
    daemons,
    get,
    until,
)
from tests.servers import Recorded, RecordingServer

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
SCRAPE = ROOT / "deploy" / "prometheus" / "scrape.yml"
PROMETHEUS = Path("/usr/bin/prometheus")
PROMTOOL = Path("/usr/bin/promtool")

TIME_SCALE = 60
"""The shipped rules' windows shrink by this factor: their minutes become seconds."""

STALLED = "MonitordStalled"

# Two models on two partitions. Each model's "x" drifts from row per_model / 5 on: the test
# reads only rows before it, so no drift alert goes out, and no output delivery to a
# stopped broker delays the loop's own broker check.
PER_MODEL = 100_000
SETTLED = 6_000
"""Messages first consumed to the end: 3000 rows per model, 2000 warm-up and one window."""
BURST_END = 40_000
"""The burst is messages SETTLED..BURST_END: rows 3000..19999 of each model."""
FIRST_EVENT_TIME = 1_700_000_000  # Stream: row i of a model has event time FIRST + i

NUMERIC_DETECTORS = ("ks", "psi", "missing", "out_of_range")
"""What the default detector suite reports per numeric column at every window."""
COLUMNS = ("x", "y", "z", PREDICTION)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test alone: stalling the shared one would stall other tests."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running


# --- the shipped rules with their time windows scaled down --------------------------------

_UNIT_MS = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}
_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_DURATION = r"(?:\d+(?:ms|[smhdwy]))+"
# A range selector [10m], a subquery [10m:1m] or [10m:], and an offset modifier.
_RANGE = re.compile(rf"\[({_DURATION})(?::({_DURATION})?)?\]")
_OFFSET = re.compile(rf"\boffset(\s+)(-?)({_DURATION})\b")


def scaled_duration(duration: str) -> str:
    """A Prometheus duration divided by `TIME_SCALE`: ``"10m"`` -> ``"10s"``."""
    parts = _PART.findall(duration)
    assert "".join(n + unit for n, unit in parts) == duration, f"not a duration: {duration!r}"
    ms, remainder = divmod(sum(int(n) * _UNIT_MS[unit] for n, unit in parts), TIME_SCALE)
    assert remainder == 0, f"{duration} does not divide by {TIME_SCALE}"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def scaled_expression(expr: str) -> str:
    """``expr`` with its range selectors, subquery steps and offsets scaled; scalars (such as
    seconds compared with time()) are left alone."""

    def window(match: re.Match[str]) -> str:
        length, step = match.group(1), match.group(2)
        if ":" not in match.group(0):
            return f"[{scaled_duration(length)}]"
        return f"[{scaled_duration(length)}:{scaled_duration(step) if step else ''}]"

    def offset(match: re.Match[str]) -> str:
        space, sign, duration = match.groups()
        return f"offset{space}{sign}{scaled_duration(duration)}"

    return _OFFSET.sub(offset, _RANGE.sub(window, expr))


def scaled_rules(shipped: dict[str, Any]) -> dict[str, Any]:
    """The shipped rule file with every ``for:``, group ``interval:`` and window in the
    expressions divided by `TIME_SCALE`. The expressions are otherwise the shipped ones, so
    what fires here is what fires in production, 60 times sooner."""
    groups = []
    for group in shipped["groups"]:
        rules = []
        for rule in group["rules"]:
            copy = {**rule, "expr": scaled_expression(rule["expr"])}
            if "for" in rule:
                copy["for"] = scaled_duration(rule["for"])
            rules.append(copy)
        scaled = {**group, "rules": rules}
        if "interval" in group:
            scaled["interval"] = scaled_duration(group["interval"])
        groups.append(scaled)
    return {**shipped, "groups": groups}


def shipped_rule(name: str) -> dict[str, Any]:
    rules = yaml.safe_load(RULES.read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name]
    return dict(rule)


def test_scaled_rules_change_only_the_time_windows() -> None:
    assert scaled_duration("10m") == "10s"
    assert scaled_duration("1h30m") == "90s"
    assert scaled_duration("90s") == "1500ms"
    assert scaled_expression("rate(a[10m]) > 600 and max_over_time(b[1h:5m] offset 30m)") == (
        "rate(a[10s]) > 600 and max_over_time(b[60s:5s] offset 30s)"
    )
    shipped = yaml.safe_load(RULES.read_text())
    scaled = scaled_rules(shipped)
    stalled = next(r for g in scaled["groups"] for r in g["rules"] if r.get("alert") == STALLED)
    assert "increase(monitord_events_consumed_total[10s])" in stalled["expr"]
    durations = re.compile(rf"\[{_DURATION}[^\]]*\]|offset\s+-?{_DURATION}")
    for before, after in zip(
        (r for g in shipped["groups"] for r in g["rules"]),
        (r for g in scaled["groups"] for r in g["rules"]),
        strict=True,
    ):
        assert durations.sub("W", before["expr"]) == durations.sub("W", after["expr"])
        assert {k: v for k, v in before.items() if k not in ("expr", "for")} == {
            k: v for k, v in after.items() if k not in ("expr", "for")
        }
        if "for" in before:
            assert scaled_duration(before["for"]) == after["for"]


# --- a real Prometheus ----------------------------------------------------------------------


class Prometheus:
    """`prometheus` on 127.0.0.1 (a free port) in its own process group; queries its API."""

    def __init__(self, config: Path, data: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.started = time.time()
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    str(PROMETHEUS),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_running(self) -> None:
        code = self.process.poll()
        tail = self.log.read_text(errors="replace")[-3000:]
        assert code is None, f"prometheus exited with {code}:\n{tail}"

    def ready(self) -> bool:
        self.check_running()
        try:
            return get(self.url + "/-/ready")[0] == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False  # not listening yet

    def api(self, path: str, **params: str) -> Any:
        self.check_running()
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = get(f"{self.url}/api/v1/{path}{query}")
        reply = json.loads(body)
        assert (status, reply["status"]) == (200, "success"), reply
        return reply["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` (at ``at``, default now)."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """Pending and firing alerts named ``name``."""
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextmanager
def running_prometheus(tmp: Path, target: str, alertmanager: str) -> Iterator[Prometheus]:
    """Prometheus scraping ``target`` (host:port) every second with the shipped scrape job,
    evaluating the scaled shipped rules every second, alerting to ``alertmanager`` (URL)."""
    rules = tmp / "rules.yml"
    rules.write_text(yaml.safe_dump(scaled_rules(yaml.safe_load(RULES.read_text()))))
    (job,) = [
        j
        for j in yaml.safe_load(SCRAPE.read_text())["scrape_configs"]
        if j["job_name"] == "monitord"
    ]
    # Debian builds Prometheus without Kubernetes discovery; the static target takes its
    # place, and the shipped relabelling (which keeps static targets) stays.
    del job["kubernetes_sd_configs"]
    job.update(scrape_interval="1s", scrape_timeout="1s", static_configs=[{"targets": [target]}])
    config = tmp / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "alerting": {
                    "alertmanagers": [
                        {
                            "static_configs": [
                                {"targets": [urllib.parse.urlsplit(alertmanager).netloc]}
                            ]
                        }
                    ]
                },
                "scrape_configs": [job],
            }
        )
    )
    if not PROMETHEUS.exists():
        pytest.fail(f"{PROMETHEUS} is not installed: apt-get install prometheus (make test does)")
    prometheus = Prometheus(config, tmp / "prometheus-data", tmp / "prometheus.log")
    try:
        deadline = time.monotonic() + 30
        while not prometheus.ready():
            assert time.monotonic() < deadline, "prometheus not ready within 30s"
            with contextlib.suppress(subprocess.TimeoutExpired):
                prometheus.process.wait(timeout=0.1)  # the poll interval, watching for an exit
        yield prometheus
    finally:
        prometheus.stop()


# --- reading a scrape -----------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: str, name: str) -> Samples:
    """The samples named ``name`` (or its _bucket/_count/_sum): (name, labels) -> value."""
    found: Samples = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name or sample.name.startswith(name + "_"):
                found[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return found


def by_labels(exposition: str, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Samples of exactly ``name`` keyed by the values of ``labels``."""
    return {
        tuple(dict(key)[label] for label in labels): value
        for (sample, key), value in samples(exposition, name).items()
        if sample == name
    }


def promtool_check_metrics(exposition: bytes) -> tuple[int, str]:
    if not PROMTOOL.exists():
        pytest.fail(f"{PROMTOOL} is not installed: apt-get install prometheus (make test does)")
    done = subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=exposition,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace")


def notified(requests: list[Recorded], status: str) -> bool:
    """Whether Alertmanager posted a ``status`` notification carrying MonitordStalled."""
    for request in requests:
        payload = request.json()
        assert isinstance(payload, dict)
        if request.path == "/alerts" and any(
            alert["status"] == status and alert["labels"]["alertname"] == STALLED
            for alert in payload["alerts"]
        ):
            return True
    return False


# --- the scenario ---------------------------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.alertmanager
@pytest.mark.prometheus
def test_prometheus_scrapes_the_daemon_and_a_stall_fires_the_shipped_rule(
    tmp_path: Path,
    own_broker: EmbeddedBroker,
    alertmanager: str,
    webhook: RecordingServer,
    unique_name: Callable[[str], str],
) -> None:
    bootstrap = own_broker.bootstrap
    stream = Stream(unique_name("events"), partitions=2, models=2, per_model=PER_MODEL)
    group = unique_name("monitord")
    config = daemon_config(
        tmp_path,
        "daemon",
        bootstrap,
        stream,
        group,
        # One record per batch keeps the loop far slower than the producer, so the burst
        # waits on the broker; small fetches keep little of it in the consumer, so once the
        # broker stops the loop runs dry within a second and the rest stays waiting.
        kafka={
            "consumer": {
                **FAST_CONSUMER,
                "max_poll_records": 1,
                "max_partition_fetch_bytes": 16 * 1024,
                "fetch_max_bytes": 32 * 1024,
            }
        },
        # A checkpoint, then a commit, after every SETTLED events, none by time alone
        # while the broker is stopped.
        checkpoint={"interval_events": SETTLED, "interval_s": 60.0},
    )
    offsets = Offsets(bootstrap)
    stream.produce(bootstrap, 0, SETTLED)
    with daemons() as start:
        daemon = start(config, tmp_path / "daemon.log")
        url = admin_url(daemon)
        target = urllib.parse.urlsplit(url).netloc
        until(lambda: offsets.committed(group, stream) == SETTLED, "the commit", 60, daemon)
        until(lambda: get(url + "/readyz")[0] == 200, "ready", 30, daemon)

        # 1. The live scrape: valid exposition, the catalogue, the values the stream implies.
        status, exposition = get(url + "/metrics")
        assert status == 200
        assert promtool_check_metrics(exposition) == (0, "")
        text = exposition.decode()
        check_catalogue(text)
        check_settled_values(text, stream)

        with running_prometheus(tmp_path, target, alertmanager) as prometheus:
            # 2. Prometheus scrapes the daemon and has loaded every shipped rule.
            up = f'up{{job="monitord", instance="{target}"}} == 1'
            until(lambda: bool(prometheus.query(up)), "the target up in Prometheus", 30, daemon)
            loaded = {
                rule["name"]
                for group_ in prometheus.api("rules")["groups"]
                for rule in group_["rules"]
            }
            shipped = yaml.safe_load(RULES.read_text())
            assert loaded == {r["alert"] for g in shipped["groups"] for r in g["rules"]}

            # Idle with nothing waiting: nothing consumed in the window, yet no stall.
            idle = "sum by (job, instance) (increase(monitord_events_consumed_total[10s])) == 0"
            until(lambda: bool(prometheus.query(idle)), "an idle window", 30, daemon)
            stalled_expr = scaled_expression(shipped_rule(STALLED)["expr"])
            assert prometheus.query("sum(monitord_consumer_lag_records) == 0")
            assert prometheus.query(stalled_expr) == []
            assert prometheus.alerts(STALLED) == []

            # 3. A burst, and the broker stops answering part-way through it.
            stream.produce(bootstrap, SETTLED, BURST_END)
            until(lambda: offsets.committed(group, stream) > SETTLED, "a burst commit", 60, daemon)
            own_broker.pause()
            paused_at = time.time()
            try:
                check_stall(prometheus, alertmanager, webhook, url, target, daemon)
            finally:
                own_broker.resume()

            # Never pending or firing before the pause, busy with a lag or idle.
            before = f'ALERTS{{alertname="{STALLED}"}}'
            window = f"{math.ceil(paused_at - prometheus.started)}s"
            assert prometheus.query(f"count_over_time({before}[{window}])", at=paused_at) == []

            until(lambda: get(url + "/readyz")[0] == 200, "ready after the stall", 60, daemon)
            assert webhook.wait_for(lambda r: notified(r, "resolved"), 60), webhook.requests
    offsets.close()


def check_catalogue(text: str) -> None:
    """Every family of the catalogue (tests/deploy), of its type and labels, and no other."""
    families = {family.name: family for family in text_string_to_metric_families(text)}
    expected = {m.name.removesuffix("_total") if m.type == "counter" else m.name for m in CATALOGUE}
    runtime = {name for name in families if name.startswith(("process_", "python_"))}
    assert runtime >= RUNTIME_FAMILIES
    assert set(families) - runtime == expected
    for metric in CATALOGUE:
        family = families[
            metric.name.removesuffix("_total") if metric.type == "counter" else metric.name
        ]
        assert family.type == metric.type, metric
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(metric.labels), (metric, sample)


def check_settled_values(text: str, stream: Stream) -> None:
    """The values after consuming and committing SETTLED messages of a stable stream."""
    rows = SETTLED // stream.models
    models = [f"m{i}" for i in range(stream.models)]
    assert by_labels(text, "monitord_events_consumed_total") == {(): SETTLED}
    assert by_labels(text, "monitord_model_events_total", "model") == {(m,): rows for m in models}
    assert by_labels(text, "monitord_bad_records_total", "reason") == {
        (reason,): 0.0 for reason in BAD_RECORD_REASONS
    }
    assert by_labels(text, "monitord_consumer_lag_records", "topic", "partition") == {
        (stream.topic, str(p)): 0.0 for p in range(stream.partitions)
    }
    assert by_labels(text, "monitord_last_event_timestamp_seconds", "model") == {
        (m,): FIRST_EVENT_TIME + rows - 1 for m in models
    }
    now = time.time()
    last_seen = by_labels(text, "monitord_model_last_seen_timestamp_seconds", "model")
    assert set(last_seen) == {(m,) for m in models}
    assert all(now - 120 < at <= now for at in last_seen.values()), last_seen
    histogram = samples(text, "monitord_batch_duration_seconds")
    count = histogram[("monitord_batch_duration_seconds_count", frozenset())]
    assert count == SETTLED  # one record per batch
    assert (
        histogram[("monitord_batch_duration_seconds_bucket", frozenset({("le", "+Inf")}))] == count
    )

    # One window per model after the warm-up: every column tested, none drifted; ADWIN
    # reports only the change points it cuts at, and a stable stream has none.
    statistics = by_labels(text, "monitord_drift_statistic", "model", "feature", "detector")
    thresholds = by_labels(text, "monitord_drift_threshold", "model", "feature", "detector")
    series = {(m, c, d) for m in models for c in COLUMNS for d in NUMERIC_DETECTORS}
    assert set(thresholds) == series
    assert set(statistics) == series
    assert all(statistics[key] < limit for key, limit in thresholds.items()), statistics
    assert by_labels(text, "monitord_alert_transitions_total", "model", "status") == {}
    assert by_labels(text, "monitord_alerts_firing", "model") == {(m,): 0.0 for m in models}
    assert by_labels(text, "monitord_retrain_triggers_total", "model", "reason") == {}
    assert by_labels(text, "monitord_deliveries_total", "receiver", "outcome") == {}
    assert by_labels(text, "monitord_outbox_pending_messages", "receiver") == {}

    (checkpoint,) = by_labels(text, "monitord_checkpoint_last_success_timestamp_seconds").values()
    (heartbeat,) = by_labels(text, "monitord_loop_heartbeat_timestamp_seconds").values()
    assert now - 120 < checkpoint <= heartbeat <= now
    assert by_labels(text, "monitord_ready") == {(): 1.0}
    assert by_labels(text, "monitord_metric_series_dropped_total") == {(): 0.0}
    build = (metadata.version("monitord"), platform.python_version())
    assert by_labels(text, "monitord_build_info", "version", "python") == {build: 1.0}


def check_stall(
    prometheus: Prometheus,
    alertmanager: str,
    webhook: RecordingServer,
    url: str,
    target: str,
    daemon: Daemon,
) -> None:
    """With the broker stopped: not ready, and MonitordStalled from Prometheus through
    Alertmanager to the receiver, for the records left waiting."""

    def in_alertmanager() -> list[dict[str, Any]]:
        status, body = get(alertmanager + "/api/v2/alerts")
        assert status == 200, body
        return [a for a in json.loads(body) if a["labels"]["alertname"] == STALLED]

    until(lambda: bool(in_alertmanager()), f"{STALLED} in Alertmanager", 45, daemon)
    (alert,) = in_alertmanager()
    assert alert["status"]["state"] == "active", alert
    assert {k: alert["labels"][k] for k in ("job", "instance", "severity", "service")} == {
        "job": "monitord",
        "instance": target,
        "severity": "critical",
        "service": "monitord",
    }
    assert webhook.wait_for(lambda r: notified(r, "firing"), 30), webhook.requests

    # It fired for records waiting with none consumed: its value is the frozen lag, and the
    # daemon still answers scrapes (a stalled monitor, not a dead one).
    text = get(url + "/metrics")[1].decode()
    lag = sum(by_labels(text, "monitord_consumer_lag_records", "topic", "partition").values())
    (consumed,) = by_labels(text, "monitord_events_consumed_total").values()
    assert lag > 0, text
    assert SETTLED < consumed < BURST_END, text
    (firing,) = prometheus.alerts(STALLED)
    assert (firing["state"], float(firing["value"])) == ("firing", lag), firing
    assert prometheus.query(f'up{{instance="{target}"}} == 1')

    until(lambda: get(url + "/readyz")[0] == 503, "not ready during the stall", 40, daemon)
    reasons = json.loads(get(url + "/readyz")[1])["reasons"]
    assert any(reason.startswith("broker:") for reason in reasons), reasons
