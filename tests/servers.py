"""Real servers the tests talk to: a recording HTTP server, and Alertmanager."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from connectors.broker import free_port


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the server saw it; header names lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


Reply = tuple[int, dict[str, str], bytes]


class RecordingServer:
    """A loopback HTTP server that records requests and answers scripted replies in order,
    then `default`. The request is recorded before the reply is sent, so it is visible as
    soon as the client call returns."""

    def __init__(
        self,
        default: Reply = (200, {}, b"ok"),
        *,
        answer: Callable[[Recorded], Reply] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.requests: list[Recorded] = []
        self.default = default
        self.answer = answer  # replies computed from the request, when no scripted one waits
        self._replies: list[Reply] = []
        self._changed = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._answer("POST")

            def do_GET(self) -> None:
                self._answer("GET")

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                status, reply_headers, reply = server._record(
                    Recorded(method, self.path, headers, body)
                )
                self.send_response(status)
                for name, value in reply_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._scheme = "http"
        if tls is not None:  # https: a client that fails the handshake is never recorded
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
            self._scheme = "https"
        # A short poll interval: `shutdown()` waits for it, once per test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Queue the answer to the next request not yet answered."""
        with self._changed:
            self._replies.append((status, headers or {}, body))

    def wait_for(self, predicate: Callable[[list[Recorded]], bool], timeout_s: float) -> bool:
        """Block until `predicate(requests)` holds (True) or `timeout_s` passes (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self.requests)), timeout_s)

    def _record(self, request: Recorded) -> Reply:
        with self._changed:
            self.requests.append(request)
            self._changed.notify_all()
            if self._replies:
                return self._replies.pop(0)
            return self.answer(request) if self.answer is not None else self.default

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def echo(status: int) -> Callable[[Recorded], Reply]:
    """Answer ``status`` with the request echoed back, as debugging proxies and some
    misconfigured receivers do: request line, headers, then the body."""

    def answer(request: Recorded) -> Reply:
        headers = "".join(f"{name}: {value}\n" for name, value in request.headers.items())
        text = f"{request.method} {request.path}\n{headers}\n".encode() + request.body
        return status, {"Content-Type": "text/plain"}, text

    return answer


def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


BINARY = Path("/usr/bin/prometheus-alertmanager")
READY_TIMEOUT_S = 30.0
NOTIFY_TIMEOUT_S = 30.0

CONFIG = """\
global:
  resolve_timeout: 5m
route:
  receiver: test-webhook
  group_by: [alertname, model]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: test-webhook
    webhook_configs:
      - url: {webhook_url}
        send_resolved: true
"""


@contextmanager
def running_alertmanager(tmp_path: Path, webhook: RecordingServer) -> Iterator[str]:
    """The base URL of a running, ready Alertmanager that notifies `webhook`."""
    if not BINARY.exists():
        pytest.fail(
            f"{BINARY} is not installed: run `apt-get install -y prometheus-alertmanager` "
            "(`make test` does it)"
        )
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(webhook_url=webhook.url + "/alerts"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "alertmanager.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(BINARY),
                f"--config.file={config}",
                f"--storage.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",  # no gossip: one instance, no public port
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed whole at the end
        )
    try:
        wait_until_ready(base_url, process, log_path)
        yield base_url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_until_ready(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url + "/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        try:
            # Doubles as the poll interval and as a check that the process is still alive.
            code = process.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"alertmanager exited with {code}:\n{log_path.read_text()[-2000:]}")
    pytest.fail(f"alertmanager not ready after {READY_TIMEOUT_S}s:\n{log_path.read_text()[-2000:]}")
