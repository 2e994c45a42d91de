"""The admin HTTP endpoint: /metrics, /livez, /readyz, /status and /retrain, and the health
behind them.

`Health` is what the daemon reports: a heartbeat from every main-loop iteration (liveness)
and named readiness conditions. `AdminServer` serves it with the metrics on a
`ThreadingHTTPServer` in a daemon thread, so a slow scrape never stalls the loop.

- ``GET /metrics``: Prometheus text exposition 0.0.4 (`DaemonMetrics`), or OpenMetrics 1.0
  when the Accept header asks for ``application/openmetrics-text`` (as Prometheus does).
- ``GET /livez``: 200 ``ok`` while the loop made progress within ``liveness_timeout_s``,
  else 503 with ``{"live": false, "reason": ...}``.
- ``GET /readyz``: 200 ``ok`` when every condition holds, else 503 with
  ``{"ready": false, "reasons": [...]}``.
- ``GET /status``: the JSON of the daemon's ``status()`` callable.
- ``POST /retrain``: a manual retrain request, ``{"model": ..., "version": ... (optional:
  the current one), "reason": ...}`` as ``application/json``, handed to the daemon's
  ``request_retrain(model, version, reason) -> id`` callable; 202 with ``{"id": ...}``, 400
  with ``{"error": ...}`` for a request it refuses, 404 for a model or version the daemon
  does not know. Only clients in ``retrain_clients`` (default: loopback) may post; others
  get 403. Accepted requests are rate-limited by a `TokenBucket` (default: bursts of 5, 6
  a minute): over it, 429 with ``Retry-After``.

Other methods get 405, unknown paths 404.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, NamedTuple
from urllib.parse import urlsplit

from monitord.clock import monotonic
from monitord.clock import now as wall_clock
from monitord.metrics import DaemonMetrics

log = logging.getLogger(__name__)

CONDITIONS = ("config", "assigned", "state_restored", "broker")
"""Readiness conditions: config loaded, partitions assigned (or legitimately idle), state
restored from the checkpoint, broker reachable."""

FAULTS = ("state_dir",)
"""Readiness conditions that hold until a fault is reported: ``state_dir`` writable (a full
or read-only disk stops checkpoints, commits and the audit log)."""


class Health:
    """Liveness and readiness, updated by the daemon, read by the admin endpoint.

    Every condition starts not ready ("not reported yet"), except the ``faults``, which
    start ready. Liveness counts from construction until the first heartbeat, so a slow
    start is not a dead daemon.
    """

    def __init__(
        self,
        liveness_timeout_s: float = 60.0,
        *,
        conditions: Iterable[str] = CONDITIONS,
        faults: Iterable[str] = FAULTS,
        clock: Callable[[], float] = wall_clock,
    ) -> None:
        if liveness_timeout_s <= 0:
            raise ValueError(f"liveness_timeout_s must be positive, got {liveness_timeout_s}")
        self.liveness_timeout_s = liveness_timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._beat: float | None = None
        self._conditions: dict[str, tuple[bool, str]] = dict.fromkeys(
            conditions, (False, "not reported yet")
        )
        if not self._conditions:
            raise ValueError("conditions: name at least one readiness condition")
        self._conditions.update(dict.fromkeys(faults, (True, "")))
        self._watches: dict[str, Callable[[], str | None]] = {}

    def heartbeat(self, at: float | None = None) -> None:
        """The main loop completed an iteration (at ``at``, default now)."""
        beat = self._clock() if at is None else at
        with self._lock:
            self._beat = beat

    @property
    def last_heartbeat(self) -> float | None:
        with self._lock:
            return self._beat

    def set_condition(self, name: str, ok: bool, reason: str = "") -> None:
        """Report a readiness condition; ``reason`` says why it does not hold."""
        with self._lock:
            if name not in self._conditions:
                raise ValueError(
                    f"unknown readiness condition {name!r}; known: {sorted(self._conditions)}"
                )
            self._conditions[name] = (ok, reason)

    def watch(self, name: str, problem: Callable[[], str | None]) -> None:
        """Ask ``problem()`` at every readiness question: a reason it returns fails condition
        ``name`` whatever was last reported, so a loop that is blocked (a commit waiting on
        a dead broker) cannot keep /readyz at 200. It must be cheap and thread-safe."""
        with self._lock:
            if name not in self._conditions:
                raise ValueError(
                    f"unknown readiness condition {name!r}; known: {sorted(self._conditions)}"
                )
            self._watches[name] = problem

    def livez(self, now: float | None = None) -> tuple[bool, str]:
        """Whether the loop made progress within ``liveness_timeout_s``, and why not."""
        at = self._clock() if now is None else now
        with self._lock:
            since = self._beat if self._beat is not None else self._started
            never = self._beat is None
        quiet = at - since
        if quiet <= self.liveness_timeout_s:
            return True, "ok"
        what = "no heartbeat since start" if never else "no heartbeat"
        return False, f"{what} for {quiet:.1f}s (limit {self.liveness_timeout_s:g}s)"

    def readyz(self) -> tuple[bool, list[str]]:
        """Whether every condition holds, and ``"name: reason"`` of each that does not."""
        with self._lock:
            conditions, watches = dict(self._conditions), dict(self._watches)
        reasons = []
        for name, (ok, reason) in conditions.items():
            watched = watches[name]() if name in watches else None
            if watched is not None:
                reasons.append(f"{name}: {watched}")
            elif not ok:
                reasons.append(f"{name}: {reason or 'not ready'}")
        return not reasons, reasons


Status = Callable[[], Mapping[str, object]]

RequestRetrain = Callable[[str, str | None, str], str]
"""``request_retrain(model, version, reason) -> request id``; ``version`` None means the
model's current one; raises LookupError for a model or version it does not know, ValueError
for another refusal (either message goes to the client)."""

RETRAIN_BURST = 5
RETRAIN_PER_MINUTE = 6.0


class TokenBucket:
    """A rate limit: up to ``burst`` at once, then ``per_minute`` (tokens refill steadily).

    Manual retrains are rare; the limit keeps a looping script, or any container sharing a
    pod's loopback, from flooding the orchestrators with runs.
    """

    def __init__(
        self, per_minute: float, burst: int, *, clock: Callable[[], float] = monotonic
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError(f"need per_minute > 0 and burst >= 1, got {per_minute}, {burst}")
        self._rate_s = per_minute / 60.0
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._at = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take a token: 0.0 if one was there, else the seconds until one will be."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate_s)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self._rate_s

    def give_back(self) -> None:
        """Return a token taken for a request that was then refused."""
        with self._lock:
            self._tokens = min(self._burst, self._tokens + 1.0)


LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_BODY_BYTES = 16 * 1024


class AdminServer:
    """The admin endpoint on ``host:port`` (port 0 picks a free one; see `port`).

    At each scrape the ``monitord_ready`` and heartbeat gauges are set from ``health``, so
    the daemon reports both to `Health` only.
    """

    def __init__(
        self,
        host: str,
        port: int,
        metrics: DaemonMetrics,
        health: Health,
        status: Status,
        *,
        request_retrain: RequestRetrain | None = None,
        retrain_clients: Sequence[str] = LOOPBACK,
        retrain_limit: TokenBucket | None = None,
    ) -> None:
        self.metrics, self.health, self.status = metrics, health, status
        self.request_retrain = request_retrain
        self._retrain_limit = retrain_limit or TokenBucket(RETRAIN_PER_MINUTE, RETRAIN_BURST)
        self._retrain_clients = [ipaddress.ip_network(n, strict=False) for n in retrain_clients]
        server_class = _IPv6Server if ":" in host else _IPv4Server
        # Binding here, not in start(): a port in use fails at construction, with its address.
        try:
            self._server = server_class((host, port), _Handler)
        except OSError as exc:
            raise OSError(
                exc.errno, f"admin endpoint: cannot listen on {host}:{port} ({exc.strerror})"
            ) from exc
        self._server.admin = self
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> AdminServer:
        """Serve in a daemon thread until `close`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("admin endpoint is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.2},
                    name="monitord-admin",
                    daemon=True,
                )
                self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._server.shutdown()
            thread.join()
        self._server.server_close()

    def __enter__(self) -> AdminServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def respond(self, path: str, accept: str = "") -> tuple[HTTPStatus, str, bytes]:
        """Status, content type and body for a GET of ``path`` (``accept``: the request's
        Accept header, which may ask /metrics for OpenMetrics)."""
        if path == "/metrics":
            ready, _ = self.health.readyz()
            self.metrics.ready(ready)
            beat = self.health.last_heartbeat
            if beat is not None:
                self.metrics.heartbeat(beat)
            exposition, content_type = self.metrics.scrape(accept)
            return HTTPStatus.OK, content_type, exposition
        if path == "/livez":
            live, reason = self.health.livez()
            if live:
                return HTTPStatus.OK, _TEXT, b"ok\n"
            return HTTPStatus.SERVICE_UNAVAILABLE, _JSON, _json({"live": False, "reason": reason})
        if path == "/readyz":
            ready, reasons = self.health.readyz()
            if ready:
                return HTTPStatus.OK, _TEXT, b"ok\n"
            body = {"ready": False, "reasons": reasons}
            return HTTPStatus.SERVICE_UNAVAILABLE, _JSON, _json(body)
        if path == "/status":
            return HTTPStatus.OK, _JSON, _json(dict(self.status()))
        return HTTPStatus.NOT_FOUND, _TEXT, b"not found: try /metrics, /livez, /readyz, /status\n"

    def retrain(self, client: str, content_type: str, body: bytes) -> tuple[HTTPStatus, bytes]:
        """Status and JSON body for a ``POST /retrain`` from ``client`` (its IP address);
        a 429's body says the seconds to wait, which the handler also sends as Retry-After."""
        if not self._client_allowed(client):
            log.warning("admin endpoint: retrain request from %s refused", client)
            return HTTPStatus.FORBIDDEN, _json(
                {"error": f"{client} may not request retrains (admin.retrain_clients)"}
            )
        if self.request_retrain is None:
            return HTTPStatus.NOT_IMPLEMENTED, _json(
                {"error": "this process takes no manual retrain requests"}
            )
        request = _retrain_request(content_type, body)
        if not isinstance(request, _RetrainBody):
            return request  # refused, saying why
        model, version, reason = request
        # Only requests that would queue a retrain count: a refusal gives its token back.
        wait_s = self._retrain_limit.take()
        if wait_s > 0:
            log.warning("admin endpoint: retrain request from %s over the rate limit", client)
            retry_after = math.ceil(wait_s)
            return HTTPStatus.TOO_MANY_REQUESTS, _json(
                {
                    "error": f"too many retrain requests; retry in {retry_after} s",
                    "retry_after_s": retry_after,
                }
            )
        try:
            request_id = self.request_retrain(model, version, reason)
        except LookupError as exc:
            self._retrain_limit.give_back()
            return HTTPStatus.NOT_FOUND, _json({"error": str(exc)})
        except ValueError as exc:
            self._retrain_limit.give_back()
            return HTTPStatus.BAD_REQUEST, _json({"error": str(exc)})
        log.info(
            "manual retrain requested",
            extra={"model": model, "model_version": version, "request_id": request_id},
        )
        return HTTPStatus.ACCEPTED, _json({"id": request_id})

    def _client_allowed(self, client: str) -> bool:
        try:
            address = ipaddress.ip_address(client.split("%", maxsplit=1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._retrain_clients)


_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json"


class _RetrainBody(NamedTuple):
    """A valid ``POST /retrain`` body: the model, its version (None: the current one), and
    why it should be retrained."""

    model: str
    version: str | None
    reason: str


def _retrain_request(content_type: str, body: bytes) -> _RetrainBody | tuple[HTTPStatus, bytes]:
    """The request a ``POST /retrain`` carries, or the status and JSON body refusing it
    (every problem with its fields named at once)."""
    if content_type.split(";", maxsplit=1)[0].strip().lower() != _JSON:
        return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, _json({"error": f"send the request as {_JSON}"})
    try:
        request = json.loads(body)
    except ValueError:
        return HTTPStatus.BAD_REQUEST, _json({"error": "the body is not valid JSON"})
    if not isinstance(request, dict):
        return HTTPStatus.BAD_REQUEST, _json({"error": "send a JSON object"})
    model, version, reason = (request.get(k) for k in _RetrainBody._fields)
    unknown = sorted(set(request) - set(_RetrainBody._fields))
    problems = [f"unknown field {name!r}" for name in unknown]
    if not isinstance(model, str) or not model:
        problems.append("model: a non-empty string is required")
    if version is not None and (not isinstance(version, str) or not version):
        problems.append("version: a non-empty string, or leave it out for the current one")
    if not isinstance(reason, str) or not reason.strip():
        problems.append("reason: say why the model should be retrained")
    if (
        problems
        or not isinstance(model, str)
        or not isinstance(reason, str)
        or not (version is None or isinstance(version, str))
    ):
        return HTTPStatus.BAD_REQUEST, _json({"error": "; ".join(problems)})
    return _RetrainBody(model, version, reason)


def _json(body: Mapping[str, object]) -> bytes:
    return json.dumps(body, sort_keys=True, default=str).encode() + b"\n"


class _IPv4Server(ThreadingHTTPServer):
    daemon_threads = True
    admin: AdminServer

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that drops its connection is routine (a scraper giving up, a probe, a
        flood): a debug line, not socketserver's traceback on stderr. Anything else is
        logged as an error."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            log.debug("admin client %s dropped the connection: %s", client_address, error)
        else:
            log.error("admin request from %s failed", client_address, exc_info=True)


class _IPv6Server(_IPv4Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _IPv4Server
    protocol_version = "HTTP/1.1"
    timeout = 10  # a client that stops sending does not hold a thread for ever
    allowed: ClassVar[str] = "GET, HEAD"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _not_allowed(self) -> None:
        self.close_connection = True  # its body is unread: the connection cannot be reused
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, _TEXT, b"only GET and HEAD\n", body=True)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/retrain":
            self._not_allowed()
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            payload = _json({"error": "send a Content-Length"})
            self._send(HTTPStatus.LENGTH_REQUIRED, _JSON, payload, body=True)
            return
        if int(length) > MAX_BODY_BYTES:
            self.close_connection = True  # not read: the connection cannot be reused
            payload = _json({"error": f"at most {MAX_BODY_BYTES} bytes"})
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _JSON, payload, body=True)
            return
        body = self.rfile.read(int(length))
        headers: dict[str, str] = {}
        try:
            status, payload = self.server.admin.retrain(
                str(self.client_address[0]), self.headers.get("Content-Type", ""), body
            )
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                headers["Retry-After"] = str(json.loads(payload)["retry_after_s"])
        except Exception:
            log.exception("admin endpoint: POST /retrain failed")
            status, payload = (
                HTTPStatus.INTERNAL_SERVER_ERROR,
                _json({"error": "internal error; see the daemon's log"}),
            )
        self._send(status, _JSON, payload, body=True, headers=headers)

    def do_PUT(self) -> None:
        self._not_allowed()

    def do_DELETE(self) -> None:
        self._not_allowed()

    def do_PATCH(self) -> None:
        self._not_allowed()

    def do_OPTIONS(self) -> None:
        self._not_allowed()

    def _answer(self, *, body: bool) -> None:
        path = urlsplit(self.path).path
        if path == "/retrain":
            self._send(HTTPStatus.METHOD_NOT_ALLOWED, _TEXT, b"POST only\n", body=body)
            return
        try:
            accept = self.headers.get("Accept", "")
            status, content_type, payload = self.server.admin.respond(path, accept)
        except Exception:
            log.exception("admin endpoint: %s failed", path)
            status, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, _TEXT
            payload = b"internal error; see the daemon's log\n"
        self._send(status, content_type, payload, body=body)

    def _send(
        self,
        status: HTTPStatus,
        content_type: str,
        payload: bytes,
        *,
        body: bool,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            retrain = urlsplit(self.path).path == "/retrain"
            self.send_header("Allow", "POST" if retrain else self.allowed)
            self.send_header("Connection", "close")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        # Scrapes and probes every few seconds: debug, through logging rather than stderr.
        log.debug("admin endpoint: %s %s", self.address_string(), format % args)


__all__ = [
    "CONDITIONS",
    "FAULTS",
    "LOOPBACK",
    "AdminServer",
    "Health",
    "RequestRetrain",
    "TokenBucket",
]
