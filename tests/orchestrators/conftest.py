"""Real orchestrators, one of each per test session: a Prefect 3 server on 127.0.0.1, and
Airflow 3 (`airflow standalone`) inside a network namespace of its own.

Both are installed into their own virtualenvs by `tests/orchestrators/install.sh` (`make test`
runs it), under `$MONITORD_ORCHESTRATORS_DIR` (default `.orchestrators/`). Each server runs in
its own process group, killed whole at teardown, with its home, SQLite database and logs in a
temporary directory.

Airflow's log servers (the worker's and the triggerer's) listen on every interface and have no
setting to change that, so Airflow runs in a network namespace with only a loopback and one
end of a veth pair: the other end, in this namespace, carries a link-local /30 and nothing
else, and the namespace has no default route, so nothing Airflow opens is reachable from
anywhere but this machine. Creating a namespace needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.broker import free_port
from connectors.memory import MemorySink, MemorySource
from connectors.outbox import Outbox, OutboxItem
from connectors.stream import Record
from monitord.cloudevent import encode
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from monitord.delivery import Delivery, build_receivers
from monitord.monitor import OffsetRange
from monitord.retrain import RetrainTrigger

ROOT = Path(__file__).resolve().parents[2]
INSTALL = "tests/orchestrators/install.sh"
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 10.0

FLOW = "monitord-retrain"
DAG_ID = "monitord_retrain"
AIRFLOW_USER = "monitord"
AIRFLOW_PORT = 8080  # inside Airflow's own namespace: nothing else listens there

DAG_FILE = f'''\
"""Retraining DAG for monitord's tests: a run's conf is the retrain request's lineage."""

from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, catchup=False, tags=["monitord"])
def monitord_retrain():
    @task
    def retrain(**context):
        conf = context["dag_run"].conf
        print("retrain", conf["model"], conf["version"], "key", conf["idempotency_key"])

    retrain()


monitord_retrain()
'''


def orchestrators_dir() -> Path:
    configured = os.environ.get("MONITORD_ORCHESTRATORS_DIR")
    return Path(configured) if configured else ROOT / ".orchestrators"


def executable(venv: str, name: str) -> Path:
    """`name` from the orchestrator virtualenv `venv`, or fail saying how to install it."""
    path = orchestrators_dir() / venv / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is not installed: run `{INSTALL}` (`make test` does it)")
    return path


def clean_environment(drop_prefix: str, **extra: str) -> dict[str, str]:
    """This process's environment without the orchestrator's own settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefix)}
    env.update(extra)
    return env


# --- HTTP -----------------------------------------------------------------------------------


def request_json(
    method: str,
    url: str,
    body: object | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any]:
    """The status and decoded JSON answer (None if empty or not JSON) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, None


def answers(url: str) -> bool:
    """True once `url` answers 200 (a server still starting refuses or resets)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


# --- processes ------------------------------------------------------------------------------


@dataclass
class Server:
    """A process started in a process group of its own, with its output in `log_path`."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @classmethod
    def start(cls, name: str, command: list[str], env: dict[str, str], log_path: Path) -> Server:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=log_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own, killed whole
            )
        return cls(name, process, log_path)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_until(self, ready: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S) -> None:
        """Poll `ready` until it holds; fail early if the server exits, late at the deadline."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if ready():
                return
            try:
                # Doubles as the poll interval and as the check that it is still running.
                code = self.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            pytest.fail(f"{self.name} exited with {code}:\n{self.log_tail()}")
        pytest.fail(f"{self.name} not ready after {timeout_s:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the whole group, SIGKILL to whatever is left of it after the grace time."""
        group = self.process.pid
        deadline = time.monotonic() + STOP_TIMEOUT_S
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=STOP_TIMEOUT_S)
        # The leader may be gone (reaped above) while its children still shut down.
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling the group's end, bounded by the deadline
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        self.process.wait()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


# --- Prefect --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prefect:
    """A running Prefect server; `api_url` ends in `/api`."""

    api_url: str
    flow_id: str

    def create_deployment(self, name: str) -> tuple[str, str]:
        """A deployment of the retrain flow taking one parameter, `trigger: dict`, as Prefect
        derives it from `def retrain(trigger: dict)`. Returns (`flow/deployment`, id)."""
        status, deployment = request_json(
            "POST",
            f"{self.api_url}/deployments/",
            {
                "name": name,
                "flow_id": self.flow_id,
                "parameter_openapi_schema": {
                    "title": "Parameters",
                    "type": "object",
                    "properties": {
                        "trigger": {"title": "trigger", "type": "object", "position": 0}
                    },
                    "required": ["trigger"],
                },
                "enforce_parameter_schema": True,
            },
        )
        assert status == 201, deployment
        return f"{FLOW}/{name}", str(deployment["id"])

    def flow_runs(self, deployment_id: str) -> list[dict[str, Any]]:
        """Every flow run of one deployment, oldest first."""
        status, runs = request_json(
            "POST",
            f"{self.api_url}/flow_runs/filter",
            {"deployments": {"id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC"},
        )
        assert status == 200, runs
        assert isinstance(runs, list)
        return runs


@pytest.fixture(scope="session")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prefect]:
    """A Prefect 3 server on 127.0.0.1 (SQLite, API only: no UI, no background services)
    with the retrain flow registered; tests add their own deployments."""
    prefect_bin = executable("prefect", "prefect")
    home = tmp_path_factory.mktemp("prefect")
    port = free_port()
    env = clean_environment(
        "PREFECT_",
        PREFECT_HOME=str(home),
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
    )
    server = Server.start(
        "prefect server",
        [
            str(prefect_bin),
            *("server", "start", "--host", "127.0.0.1", "--port", str(port)),
            *("--no-services", "--no-ui", "--analytics-off"),
        ],
        env,
        home / "server.log",
    )
    try:
        api_url = f"http://127.0.0.1:{port}/api"
        server.wait_until(lambda: answers(f"{api_url}/health"))
        status, flow = request_json("POST", f"{api_url}/flows/", {"name": FLOW})
        assert status in (200, 201), flow
        yield Prefect(api_url, str(flow["id"]))
    finally:
        server.stop()


@pytest.fixture
def prefect_deployment(prefect: Prefect, unique_name: Callable[[str], str]) -> tuple[str, str]:
    """A fresh deployment for this test alone: (`flow/deployment`, deployment id)."""
    return prefect.create_deployment(unique_name("retrain"))


# --- Airflow --------------------------------------------------------------------------------


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def _namespace_pids(name: str) -> list[int]:
    return [int(pid) for pid in _ip("netns", "pids", name, check=False).split()]


def _free_link() -> tuple[str, str]:
    """Two addresses of a link-local /30 no interface here uses: (this side, Airflow's side)."""
    used = {
        ipaddress.ip_interface(field).network
        for line in _ip("-4", "-o", "addr", "show").splitlines()
        for field in line.split()[3:4]
    }
    pool = ipaddress.IPv4Network("169.254.100.0/22")  # clear of 169.254.169.254 (metadata)
    blocks = list(pool.subnets(new_prefix=30))
    start = os.getpid() % len(blocks)  # concurrent sessions start apart
    for block in blocks[start:] + blocks[:start]:
        if not any(block.overlaps(network) for network in used):
            hosts = list(block.hosts())
            return str(hosts[0]), str(hosts[1])
    raise RuntimeError(f"no free /30 left in {pool}")


@contextlib.contextmanager
def network_namespace() -> Iterator[tuple[str, str]]:
    """A new network namespace reachable from here over a veth pair: (name, its address).

    Deleting the namespace at the end also deletes the veth pair.
    """
    if os.geteuid() != 0:
        pytest.fail("Airflow runs in a network namespace of its own: run the tests as root")
    for stale in re.findall(r"^monitord-airflow-(\d+)", _ip("netns", "list"), re.MULTILINE):
        # Left by a session that died before its teardown; still in use if it has processes.
        name = f"monitord-airflow-{stale}"
        if not _pid_alive(int(stale)) and not _namespace_pids(name):
            _ip("netns", "delete", name, check=False)
    name = f"monitord-airflow-{os.getpid()}"
    outside, inside = f"mdaf{os.getpid()}o", f"mdaf{os.getpid()}i"  # at most 15 characters
    here, there = _free_link()
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", name)
        _ip("addr", "add", f"{here}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", name, "addr", "add", f"{there}/30", "dev", inside)
        _ip("-n", name, "link", "set", inside, "up")
        yield name, there
    finally:
        for pid in _namespace_pids(name):  # only processes this session started live there
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _ip("netns", "delete", name, check=False)
        _ip("link", "delete", outside, check=False)  # gone with the namespace, normally


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Airflow:
    """A running Airflow 3 (`airflow standalone`) with the retrain DAG parsed (and paused: runs
    are created and queued, never executed)."""

    base_url: str
    dag_id: str
    username: str
    password: str
    namespace: str
    server: Server

    def token(self) -> str:
        """A JWT from the simple auth manager for the known user."""
        status, answer = request_json(
            "POST",
            f"{self.base_url}/auth/token",
            {"username": self.username, "password": self.password},
        )
        assert status in (200, 201), answer
        return str(answer["access_token"])

    def get(self, path: str) -> tuple[int, Any]:
        return request_json(
            "GET", self.base_url + path, headers={"Authorization": f"Bearer {self.token()}"}
        )

    def dag_runs(self) -> list[dict[str, Any]]:
        """Every run of the DAG, oldest first."""
        status, answer = self.get(
            f"/api/v2/dags/{self.dag_id}/dagRuns?limit=1000&order_by=run_after"
        )
        assert status == 200, answer
        runs = answer["dag_runs"]
        assert isinstance(runs, list)
        assert len(runs) == answer["total_entries"]
        return runs


def _airflow_ready(airflow: Airflow) -> bool:
    """Healthy (database, scheduler, DAG processor) and the DAG parsed."""
    try:
        status, health = request_json("GET", f"{airflow.base_url}/api/v2/monitor/health")
        if status != 200:
            return False
        parts = ("metadatabase", "scheduler", "dag_processor")
        if not all(health.get(part, {}).get("status") == "healthy" for part in parts):
            return False
        status, dag = airflow.get(f"/api/v2/dags/{airflow.dag_id}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False  # still starting: refused, reset or slow
    return status == 200 and not dag["is_stale"]


@pytest.fixture(scope="session")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    """Airflow 3 standalone (SQLite, LocalExecutor, simple auth manager with one known user)
    inside its own network namespace; its API is reached at the namespace's address."""
    airflow_bin = executable("airflow", "airflow")
    home = tmp_path_factory.mktemp("airflow")
    dags = home / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(DAG_FILE)
    password = secrets.token_urlsafe(16)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({AIRFLOW_USER: password}))
    with network_namespace() as (namespace, address):
        base_url = f"http://{address}:{AIRFLOW_PORT}"
        env = clean_environment(
            "AIRFLOW",
            # standalone starts its components as `airflow ...` from PATH
            PATH=f"{airflow_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}",
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__DAGS_FOLDER=str(dags),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            AIRFLOW__CORE__PARALLELISM="1",  # one idle worker process instead of 32
            AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{AIRFLOW_USER}:admin",
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
            AIRFLOW__API__HOST=address,
            AIRFLOW__API__PORT=str(AIRFLOW_PORT),
            AIRFLOW__API__BASE_URL=base_url,
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
        )
        server = Server.start(
            "airflow standalone",
            ["ip", "netns", "exec", namespace, str(airflow_bin), "standalone"],
            env,
            home / "standalone.log",
        )
        try:
            running = Airflow(base_url, DAG_ID, AIRFLOW_USER, password, namespace, server)
            server.wait_until(lambda: _airflow_ready(running))
            yield running
        finally:
            server.stop()


# --- triggers -------------------------------------------------------------------------------


def retrain_trigger(key: str, model: str = "fraud-scorer", version: str = "7") -> RetrainTrigger:
    """A drift-triggered retrain request with idempotency key `key` and fixed lineage."""
    return RetrainTrigger(
        id=key,
        reason="drift",
        model=model,
        version=version,
        drifted_features=("amount", "country"),
        statistics=(("amount", "ks", 0.21, 0.08), ("country", "psi", 0.4, 0.25)),
        feature_share=1.0,
        windows=3,
        profile_id="b3f1c2d4e5a6978812345678abcdef01",
        first_row=6000,
        row=8999,
        offset=OffsetRange("inference", 0, 8999, 8999),
        offsets=(OffsetRange("inference", 0, 6000, 8999), OffsetRange("inference", 1, 40, 77)),
        start_time=1_795_000_000.0,
        end_time=1_795_000_600.5,
        config_hash="c0ffee00c0ffee00",
    )


def payload(trigger: RetrainTrigger) -> bytes:
    """What the outbox holds for `trigger`: its CloudEvent as JSON."""
    return encode(trigger)


# --- through the daemon ---------------------------------------------------------------------


def drifting_records() -> list[Record]:
    """4,000 events of model m, version 1, one every 100 ms from 2026-11-18T11:06:40Z (the
    record timestamp); y shifts by 1.5 sd from row 2,500: one retrain request."""
    rng = np.random.default_rng(11)
    values = rng.normal(size=(4000, 2))
    values[2500:, 1] += 1.5
    events = [
        orjson.dumps({"model": "m", "model_version": "1", "features": {"x": x, "y": y}})
        for x, y in values.tolist()
    ]
    start_ms = 1_795_000_000_000
    return [
        Record("inference", 0, i, b"m", event, start_ms + 100 * i) for i, event in enumerate(events)
    ]


def daemon_config(state_dir: Path, receiver: dict[str, object]) -> Config:
    return parse_config(
        {
            "detection": {"warmup_events": 1000, "window_size": 500},
            "receivers": [receiver],
            "state_dir": str(state_dir),
        }
    )


DAEMON_KEY = "f2a41d8cb0b94fa9ee3c3ec480192222"
"""The idempotency key of the request the daemon decides over `drifting_records`."""
DAEMON_LINEAGE = {
    "idempotency_key": DAEMON_KEY,
    "reason": "drift",
    "model": "m",
    "version": "1",
    "drifted_features": ["y"],
    "windows": 2,
    "first_row": 1500,
    "row": 2499,
    "offsets": [{"topic": "inference", "partition": 0, "first_offset": 3000, "last_offset": 3499}],
    "start_time": "2026-11-18T11:11:40.000Z",
    "end_time": "2026-11-18T11:12:29.900Z",
}
"""What that request's data says (as JSON), the config hash aside: it covers `state_dir`."""


class SimulatedCrashError(Exception):
    """The daemon process dies here."""


class AcknowledgementLost(Outbox):
    """An outbox whose process dies right after a receiver took a message, before the
    outbox recorded it as delivered: the message is still pending at the next start."""

    def delivered(self, item: OutboxItem, now: float) -> None:
        raise SimulatedCrashError(f"died before recording the delivery of {item.message_id}")


def run_daemon(
    config: Config, outbox: Outbox, environ: Mapping[str, str]
) -> tuple[Delivery, list[RetrainTrigger]]:
    """One life of the daemon over `drifting_records` (no checkpoint: it reads them all):
    its delivery, holding what it decided in `outbox`, and the retrain requests decided."""
    delivery = Delivery(config.receivers, outbox, build_receivers(config.receivers, environ))
    daemon = Daemon(
        config, MemorySource(drifting_records()), MemorySink(), [delivery], lambda m, v: None
    )
    return delivery, [o for o in daemon.drain() if isinstance(o, RetrainTrigger)]
