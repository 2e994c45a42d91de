"""JSON over HTTP for receivers (Alertmanager, PagerDuty, Slack, webhooks, orchestrators),
standard library only.

`post` and `get` never raise for an HTTP status: they return the `HttpResponse`, and
`classify` turns it into `None` (delivered) or a `ReceiverError` that says whether retrying
can help. Only a failure to get any answer (refused, reset, timeout) raises, as a retriable
`ReceiverError`. `decode_event` reads the CloudEvent payload orchestrator receivers get.

Receiver URLs often are secrets (Slack and webhook URLs carry tokens in the path), so every
message built here names the target as `redact_url(url)`: scheme, host and port only. A
receiver's answer is quoted in errors, which the outbox stores and the daemon logs, and some
receivers echo the request: `classify` blanks out every credential the request carried
(authorization headers, URL credentials and query) and the secrets a connector names, in
the encodings an echo uses (raw, URL-quoted, JSON-escaped, basic auth decoded).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import functools
import http.client
import json
import math
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from connectors.stream import ConnectorError

CLOUDEVENTS_JSON = "application/cloudevents+json; charset=utf-8"
"""The media type of a CloudEvent in structured mode, JSON format (the HTTP and Kafka
bindings' ``content-type``): SDKs read the whole event from the body, not from headers."""

MAX_BODY_BYTES = 64 * 1024
"""Responses are read up to this size: receivers answer with short acknowledgements."""

_NOT_RETRIABLE = frozenset({400, 401, 403, 404, 422})
_RETRIABLE = frozenset({408, 429})
_ERROR_BODY_CHARS = 200
REDACTED = "[redacted]"
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token"}
)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A receiver's answer; `headers` keys are lower-case."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    # Not part of the answer: never compared, never shown in a repr.
    request_secrets: tuple[str, ...] = field(default=(), compare=False, repr=False)
    """The credentials the request carried (see `request_secrets`), blanked out of errors."""


class ReceiverError(ConnectorError):
    """A receiver did not take a payload.

    `status` is the HTTP status (None when no answer came); `retry_after_s` is the receiver's
    own `Retry-After`, which the outbox prefers over its computed backoff.
    """

    def __init__(
        self,
        message: str,
        *,
        retriable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, retriable=retriable)
        self.status = status
        self.retry_after_s = retry_after_s


@runtime_checkable
class Receiver(Protocol):
    """Delivers one outbox payload to one destination; holds that destination's secrets."""

    def deliver(self, payload: bytes) -> None:
        """Send `payload`; return once the receiver acknowledged it, else raise `ReceiverError`."""
        ...


def redact_url(url: str) -> str:
    """`scheme://host:port` of `url`: paths, queries and credentials may hold tokens."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "<invalid url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of a URL that are the credential when the URL itself is the secret (Slack
    and webhook URLs): the whole URL, its path and its query."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return (url,)
    path = parts.path if parts.path not in ("", "/") else ""
    query = f"{path}?{parts.query}" if parts.query else ""
    return tuple(part for part in (url, query, path, parts.query) if part)


def request_secrets(url: str, headers: Mapping[str, str]) -> tuple[str, ...]:
    """What in a request authenticates it: credential headers (and, for basic auth, the
    decoded ``user:password`` and password), URL user info and query."""
    found: list[str] = []
    for name, value in headers.items():
        if name.lower() not in _CREDENTIAL_HEADERS or not value.strip():
            continue
        found.append(value)
        scheme, _, credential = value.strip().partition(" ")
        if credential:
            found.append(credential.strip())
            if scheme.lower() == "basic":
                found += _basic_credentials(credential.strip())
    try:
        parts = urllib.parse.urlsplit(url)
        found += [p for p in (parts.password, parts.query) if p]
    except ValueError:
        pass
    return tuple(found)


def _basic_credentials(encoded: str) -> list[str]:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return []
    password = decoded.partition(":")[2]
    return [decoded, password] if password else [decoded]


def redact_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each secret replaced by `REDACTED`, in every form an echo may hold it."""
    forms = {form for secret in secrets if secret for form in _forms(secret)}
    for form in sorted(forms, key=len, reverse=True):  # a longer form holds shorter ones
        text = text.replace(form, REDACTED)
    return text


def _forms(secret: str) -> set[str]:
    json_escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
    return (
        {
            secret,
            urllib.parse.quote(secret, safe=""),
            urllib.parse.quote(secret, safe="/"),
            urllib.parse.quote_plus(secret),
            json_escaped,
            json_escaped.replace("/", "\\/"),  # JSON encoders that escape the solidus
            json.dumps(secret)[1:-1],  # and those that escape non-ASCII
        }
        - {""}
    )


def validate_url(url: str, parameter: str) -> str:
    """Return `url` if absolute http(s), else raise naming `parameter` (never the URL itself)."""
    try:
        parts = urllib.parse.urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        valid = False
    if not valid:
        raise ValueError(
            f"{parameter} must be an absolute http:// or https:// URL with a host "
            "(value not shown: it may contain a secret)"
        )
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would re-send a redirected POST as a GET without its body; a receiver that
    # redirects is misconfigured, so surface the 3xx instead.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@functools.lru_cache(maxsize=64)
def _opener(tls: ssl.SSLContext) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=tls))


def post(
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
    *,
    tls: ssl.SSLContext | None = None,
) -> HttpResponse:
    """POST `data` to `url`; any HTTP answer is returned, no answer raises a retriable error.

    `tls` verifies an https server (a private CA, a client certificate; see
    `connectors.tls`); None uses the system's CAs and checks the host name."""
    return _send("POST", url, data, headers, timeout_s, tls)


def get(
    url: str,
    headers: Mapping[str, str],
    timeout_s: float,
    *,
    tls: ssl.SSLContext | None = None,
) -> HttpResponse:
    """GET `url`, with the same answers and errors as `post`."""
    return _send("GET", url, None, headers, timeout_s, tls)


def _send(
    method: str,
    url: str,
    data: bytes | None,
    headers: Mapping[str, str],
    timeout_s: float,
    tls: ssl.SSLContext | None,
) -> HttpResponse:
    request = urllib.request.Request(url, data=data, headers=dict(headers), method=method)
    target = redact_url(url)
    sent = request_secrets(url, headers)
    opener = _OPENER if tls is None else _opener(tls)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return HttpResponse(
                response.status,
                _lower(response.headers.items()),
                response.read(MAX_BODY_BYTES),
                sent,
            )
    except urllib.error.HTTPError as error:
        with error:
            body = error.read(MAX_BODY_BYTES)
        return HttpResponse(error.code, _lower(error.headers.items()), body, sent)
    except urllib.error.URLError as error:
        # `reason` is an OSError (refused, DNS, TLS) or a string; neither includes the path.
        raise ReceiverError(
            f"no answer from {target}: {_reason(error.reason)}", retriable=True
        ) from None
    except (OSError, http.client.HTTPException) as error:
        # Timeouts, resets, and TLS errors raised after the handshake (TLS 1.3 servers
        # refuse a missing client certificate at the first read, not in the handshake).
        raise ReceiverError(f"no answer from {target}: {_reason(error)}", retriable=True) from None
    except ValueError:
        # urllib's own message repeats the whole URL.
        raise ReceiverError(f"invalid URL for {target}", retriable=False) from None


def post_json(
    url: str,
    body: object,
    headers: Mapping[str, str],
    timeout_s: float,
    *,
    tls: ssl.SSLContext | None = None,
) -> HttpResponse:
    """POST `body` encoded as compact UTF-8 JSON with `Content-Type: application/json`."""
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return post(url, data, {**headers, "Content-Type": "application/json"}, timeout_s, tls=tls)


def classify(
    response: HttpResponse,
    target: str,
    *,
    conflict_is_delivered: bool = False,
    secrets: Iterable[str] = (),
    now: float | None = None,
) -> ReceiverError | None:
    """`None` if the receiver took the payload, else the error to raise.

    2xx is delivered, and so is 409 when the receiver answers it for an id it already has
    (`conflict_is_delivered`). 408, 429 and 5xx are retriable, honouring `Retry-After`;
    every other status (400, 401, 403, 404, 422, redirects...) is not: sending the same
    request again cannot succeed. `target` names the receiver in the message (pass a
    redacted URL); `secrets`, and the credentials the request carried, are blanked out of
    the response body quoted in it, before it is cut short (so no piece of one remains).
    """
    status = response.status
    if 200 <= status < 300 or (status == 409 and conflict_is_delivered):
        return None
    retriable = status in _RETRIABLE or (status >= 500 and status not in _NOT_RETRIABLE)
    retry_after = None
    if retriable and "retry-after" in response.headers:
        retry_after = retry_after_seconds(
            response.headers["retry-after"], time.time() if now is None else now
        )
    body = response.body.decode("utf-8", "replace")
    detail = redact_secrets(body, (*secrets, *response.request_secrets))
    detail = detail[:_ERROR_BODY_CHARS].strip()
    message = f"{target} answered HTTP {status}" + (f": {detail}" if detail else "")
    return ReceiverError(message, retriable=retriable, status=status, retry_after_s=retry_after)


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """What orchestrator receivers use of a CloudEvent payload (structured JSON mode):
    `id`, the idempotency key, and `data`, the object handed to the run."""

    id: str
    data: Mapping[str, object]


def decode_event(payload: bytes, target: str) -> CloudEvent:
    """The `id` and `data` of a CloudEvent payload; a non-retriable error if it is not one."""
    try:
        event = json.loads(payload)
    except ValueError:
        event = None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not event["id"]
        or not isinstance(event.get("data"), dict)
    ):
        raise ReceiverError(
            f"{target}: the payload must be a CloudEvent JSON object with a non-empty string "
            "id and an object data (build it with monitord.cloudevent.encode)",
            retriable=False,
        )
    return CloudEvent(event["id"], event["data"])


def json_answer(response: HttpResponse, target: str) -> object:
    """The decoded JSON body of a successful answer.

    A body that is not JSON is not retriable: the URL reaches something other than the API
    (a login page, a UI), and asking again will not change that.
    """
    try:
        return json.loads(response.body)
    except ValueError:
        raise ReceiverError(
            f"{target} answered HTTP {response.status} with a body that is not JSON: "
            "check that the URL points at the API",
            retriable=False,
            status=response.status,
        ) from None


def retry_after_seconds(value: str, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date), None if invalid."""
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, IndexError):
            return None
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


def _reason(reason: object) -> str:
    if isinstance(reason, BaseException):
        text = str(reason)
        return f"{type(reason).__name__}: {text}" if text else type(reason).__name__
    return str(reason)


__all__ = [
    "CLOUDEVENTS_JSON",
    "MAX_BODY_BYTES",
    "REDACTED",
    "CloudEvent",
    "HttpResponse",
    "Receiver",
    "ReceiverError",
    "classify",
    "decode_event",
    "get",
    "json_answer",
    "post",
    "post_json",
    "redact_secrets",
    "redact_url",
    "request_secrets",
    "retry_after_seconds",
    "url_secrets",
    "validate_url",
]
