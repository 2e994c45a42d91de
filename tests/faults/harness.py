"""What the fault tests share: a drifting multi-model stream, `monitord run` as a process,
and reading back what it committed and published.

Waiting is always polling a condition with a deadline (never a fixed sleep); the one random
delay in these tests is where a fault is injected, drawn from a seeded generator.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition

from connectors.kafka import KafkaSink, ensure_topics, read_topic

FAST_CONSUMER = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
POLL_S = 0.05


@dataclass(frozen=True)
class Stream:
    """``models`` x ``per_model`` events on ``partitions`` partitions of ``topic``; model i
    lives on partition i % partitions. Each model drifts: "x" shifts by 1 sd over the second
    fifth of its events and comes back, "y" doubles its spread from 70% on."""

    topic: str
    partitions: int
    models: int
    per_model: int
    seed: int = 20261124
    keyed: bool = True  # False: event j of the stream goes to partition j % partitions

    @property
    def total(self) -> int:
        return self.models * self.per_model

    def messages(self) -> Iterator[tuple[int, bytes, bytes]]:
        """``(partition, key, value)`` in production order (models interleaved)."""
        rng = np.random.default_rng(self.seed)
        n = self.per_model
        columns = []
        for _ in range(self.models):
            x, y, z = rng.normal(size=(3, n))
            x[n // 5 : 2 * n // 5] += 1.0
            y[7 * n // 10 :] *= 2.0
            columns.append((x, y, z))
        j = 0
        for i in range(n):
            for m in range(self.models):
                x, y, z = columns[m]
                event = {
                    "model": f"m{m}",
                    "model_version": "1",
                    "timestamp": 1_700_000_000 + i,
                    "features": {"x": float(x[i]), "y": float(y[i]), "z": float(z[i])},
                    "prediction": float(x[i] - y[i]),
                }
                partition = m % self.partitions if self.keyed else j % self.partitions
                j += 1
                yield partition, f"m{m}".encode(), orjson.dumps(event)

    def produce(self, bootstrap: str, start: int = 0, stop: int | None = None) -> None:
        """Produce messages ``start``..``stop`` (production order) of the stream."""
        ensure_topics(bootstrap, {self.topic: self.partitions})
        with KafkaSink(bootstrap) as sink:
            for partition, key, value in itertools.islice(self.messages(), start, stop):
                sink.send(self.topic, key, value, partition=partition)
            sink.flush(timeout_s=60)


@dataclass(frozen=True)
class Topic:
    """A topic's name, partitions and record count: what `finish` waits for."""

    topic: str
    partitions: int
    total: int


class Partitioned(Protocol):
    """A topic of records to consume: a `Stream`, or any other with these three."""

    @property
    def topic(self) -> str: ...

    @property
    def partitions(self) -> int: ...

    @property
    def total(self) -> int: ...


def write_toml(path: Path, data: Mapping[str, Any]) -> Path:
    """A minimal TOML writer for test configs: scalars, lists and nested tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines: list[str] = []

    def table(prefix: str, items: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in items.items() if not isinstance(v, Mapping)}
        if prefix:
            lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in items.items():
            if isinstance(v, Mapping):
                table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    path.write_text("\n".join(lines) + "\n")
    return path


def daemon_config(
    tmp: Path,
    name: str,
    bootstrap: str,
    stream: Partitioned,
    group: str,
    client: str = "kafka-python",
    **sections: Mapping[str, Any],
) -> Path:
    """Config file ``name``.toml: the stream in, outputs to ``<group>.alerts`` / ``.retrain``,
    read and written by the Kafka ``client`` (`kafka.client`)."""
    data: dict[str, Any] = {
        "state_dir": str(tmp / f"{name}-state"),
        "kafka": {
            "client": client,
            "bootstrap_servers": bootstrap,
            "input_topics": [stream.topic],
            "group_id": group,
            "dead_letter_topic": f"{group}.dead-letter",
            "alert_topic": f"{group}.alerts",
            "trigger_topic": f"{group}.retrain",
            "connect_timeout_s": 5.0,
            "consumer": dict(FAST_CONSUMER),
        },
        "detection": {"warmup_events": 2000, "window_size": 1000},
        "admin": {"enabled": True, "port": 0},
    }
    for key, section in sections.items():
        data[key] = {**data.get(key, {}), **section}
    return write_toml(tmp / f"{name}.toml", data)


class Daemon:
    """`monitord run` in its own process group, its output appended to ``log``."""

    def __init__(self, config: Path, log: Path, env: Mapping[str, str] | None = None) -> None:
        self.config, self.log = config, log
        # Where this daemon's lines start: daemons restarted in turn share one log.
        self.log_start = log.stat().st_size if log.exists() else 0
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitord.cli", "run", "--config", str(config)],
                env={**os.environ, **(env or {})},
                cwd=config.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: signal.Signals) -> None:
        if self.alive():
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@contextmanager
def daemons() -> Iterator[Callable[[Path, Path], Daemon]]:
    """Start daemons; any still running when the block ends is killed."""
    started: list[Daemon] = []

    def start(config: Path, log: Path) -> Daemon:
        started.append(Daemon(config, log))
        return started[-1]

    try:
        yield start
    finally:
        for daemon in started:
            daemon.kill()


def until(
    condition: Callable[[], bool],
    what: str,
    timeout_s: float,
    alive: Daemon | list[Daemon] | None = None,
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout_s`` or when a
    daemon that should be running exits."""
    watched = alive if isinstance(alive, list) else [alive] if alive else []
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while not condition():
        for daemon in watched:
            code = daemon.process.poll()
            assert code is None, f"monitord exited with {code} waiting for {what}:\n{daemon.tail()}"
        logs = "\n".join(d.tail() for d in watched)
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:g}s:\n{logs}"
        pause.wait(POLL_S)


class Offsets:
    """Reads a group's committed offsets."""

    def __init__(self, bootstrap: str) -> None:
        self._admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)

    def committed(self, group: str, stream: Partitioned) -> int:
        """Sum over the stream's partitions of the committed next offsets."""
        partitions = [KafkaTopicPartition(stream.topic, p) for p in range(stream.partitions)]
        offsets = self._admin.list_group_offsets({group: partitions})[group]
        return sum(max(0, int(o.offset)) for o in offsets.values())

    def close(self) -> None:
        self._admin.close()


def published(bootstrap: str, group: str) -> dict[str, dict[str, Any]]:
    """Every alert and retrain request a group published: id -> CloudEvent data.

    A repeated id must carry the same data: deterministic outputs, at least once.
    """
    by_id: dict[str, dict[str, Any]] = {}
    for topic in (f"{group}.alerts", f"{group}.retrain"):
        for record in read_topic(bootstrap, topic, timeout_s=30):
            event = orjson.loads(record.value or b"null")
            data = event["data"]
            assert by_id.setdefault(event["id"], data) == data, f"id {event['id']} changed"
    return by_id


_ADMIN = re.compile(r"admin endpoint on (http://127\.0\.0\.1:\d+)")


def admin_url(daemon: Daemon, timeout_s: float = 60.0) -> str:
    """The admin endpoint ``daemon`` logged at startup (configs here use port 0)."""
    found: list[str] = []

    def logged() -> bool:
        with daemon.log.open("rb") as log:
            log.seek(daemon.log_start)
            found[:] = _ADMIN.findall(log.read().decode(errors="replace"))
        return bool(found)

    until(logged, "the admin endpoint in the log", timeout_s, daemon)
    return found[-1]


def get(url: str) -> tuple[int, bytes]:
    """Status and body of a GET (an HTTP error status is an answer, not an exception)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def assert_same_outputs(
    got: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> None:
    """The same ids, each with the same data (rows, statistics, data range, ...)."""

    def brief(data: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(data.get(k) for k in ("model", "feature", "detector", "status", "row"))

    # Sorted as text: a retrain request has no feature nor detector (None).
    missing = sorted((brief(expected[k]) for k in set(expected) - set(got)), key=str)
    extra = sorted((brief(got[k]) for k in set(got) - set(expected)), key=str)
    assert (missing, extra) == ([], []), "(missing, unexpected)"
    differing = {
        key: {
            field: (got[key].get(field), value)
            for field, value in data.items()
            if got[key].get(field) != value
        }
        for key, data in expected.items()
        if got[key] != data
    }
    assert not differing, f"(got, expected) per differing field: {differing}"


def finish(
    daemon: Daemon, offsets: Offsets, group: str, stream: Partitioned, grace_s: float = 60.0
) -> None:
    """Wait until ``group`` committed the whole stream and ``daemon`` is ready, then
    SIGTERM it: exit 0.

    Ready, because the stream may be committed before this daemon even started (a killed
    predecessor finished it): a SIGTERM before `monitord run` installs its handler ends the
    process by the signal, not by a drain.
    """
    until(
        lambda: offsets.committed(group, stream) == stream.total,
        f"the whole stream committed by {group}",
        180,
        daemon,
    )
    url = admin_url(daemon)
    until(lambda: get(url + "/readyz")[0] == 200, "the daemon ready", 120, daemon)
    daemon.signal(signal.SIGTERM)
    assert daemon.process.wait(timeout=grace_s) == 0, daemon.tail()


def reference_config(
    tmp: Path, bootstrap: str, stream: Stream, group: str, client: str = "kafka-python"
) -> Path:
    """An uninterrupted single daemon's config, no checkpoints: what the others must equal."""
    return daemon_config(
        tmp, "reference", bootstrap, stream, group, client, checkpoint={"store": "none"}
    )
