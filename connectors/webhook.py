"""Generic signed webhook receiver, and `verify` for whoever receives it.

The body is a CloudEvent in structured mode (``Content-Type: application/cloudevents+json;
charset=utf-8``), signed by one of two schemes, ``signing``:

``"standard"``: Standard Webhooks (https://www.standardwebhooks.com), which receivers verify
with an existing library (``standardwebhooks`` and its ports, Svix)::

    webhook-id: <the CloudEvent's id: the same on every retry, deduplicate on it>
    webhook-timestamp: <unix seconds, integer>
    webhook-signature: v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}.".encode() + body)>

where the key is the base64 secret after its ``whsec_`` prefix, decoded (`standard_key`).

``"monitord"`` (the default, for receivers written against it; the receiving side must check
both headers, `verify` does)::

    X-Monitord-Timestamp: <unix seconds, integer>
    X-Monitord-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>

`body` is the exact request body bytes (JSON). Signing the timestamp with the body lets a
receiver reject a captured request replayed later: `verify` accepts only timestamps within
`tolerance_s` (default 300 s) of its own clock and compares in constant time. Deliveries are
at-least-once: deduplicate on the id inside the body; answering 409 for an id already seen
counts as delivered.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Literal

from connectors.http import (
    CLOUDEVENTS_JSON,
    ReceiverError,
    classify,
    post,
    redact_url,
    url_secrets,
    validate_url,
)

TIMESTAMP_HEADER = "X-Monitord-Timestamp"
SIGNATURE_HEADER = "X-Monitord-Signature"
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
STANDARD_PREFIX = "whsec_"
MIN_KEY_BYTES = 16

Signing = Literal["monitord", "standard"]


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-Monitord-Signature` value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def sign_standard(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` value for `body` (version ``v1``)."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: ``whsec_`` (optional) then base64.

    Raises ValueError saying what is wrong (never quoting the secret)."""
    encoded = secret.strip().removeprefix(STANDARD_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "a Standard Webhooks secret must be base64, optionally after 'whsec_' (value not shown)"
        ) from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"the Standard Webhooks secret decodes to {len(key)} bytes; at least "
            f"{MIN_KEY_BYTES} are needed (24-64 recommended)"
        )
    return key


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance_s: float = 300.0,
) -> bool:
    """True if `signature` signs `body` at `timestamp`, and `timestamp` is within
    `tolerance_s` of `now` (older ones are replays, newer ones forged clocks)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance_s:
        return False
    expected = sign(secret, sent_at, body).encode()
    return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))


class WebhookReceiver:
    """Posts signed CloudEvents (JSON) to one URL; `clock` gives the signing time (seconds).

    ``secret`` is the HMAC key: for ``signing="standard"``, decode the configured secret
    with `standard_key` first."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        signing: Signing = "monitord",
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        validate_url(url, "url")
        if len(secret) < MIN_KEY_BYTES:
            raise ValueError("secret must be at least 16 bytes: it is the HMAC key")
        if signing not in ("monitord", "standard"):
            raise ValueError(f"signing must be 'monitord' or 'standard', got {signing!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._url = url
        self._secret, self._signing = secret, signing
        self._headers = dict(headers or {})
        self._target = f"webhook at {redact_url(url)}"
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked
        self._clock = clock

    def deliver(self, payload: bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            raise ReceiverError("webhook payload must be JSON", retriable=False) from None
        timestamp = int(self._clock())
        headers = {**self._headers, "Content-Type": CLOUDEVENTS_JSON}
        if self._signing == "standard":
            message_id = _message_id(event, payload)
            signature = sign_standard(self._secret, message_id, timestamp, payload)
            id_header, timestamp_header, signature_header = STANDARD_HEADERS
            headers[id_header], headers[timestamp_header] = message_id, str(timestamp)
            headers[signature_header] = signature
        else:
            headers[TIMESTAMP_HEADER] = str(timestamp)
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, payload)
        response = post(self._url, payload, headers, self._timeout_s, tls=self._tls)
        error = classify(
            response,
            self._target,
            conflict_is_delivered=True,
            secrets=(*url_secrets(self._url), *self._headers.values()),
        )
        if error is not None:
            raise error


def _message_id(event: object, payload: bytes) -> str:
    """The CloudEvent's id (stable across retries); a payload without one, its digest."""
    if isinstance(event, dict) and isinstance(event.get("id"), str) and event["id"]:
        return str(event["id"])
    return "sha256-" + hashlib.sha256(payload).hexdigest()[:32]


__all__ = [
    "MIN_KEY_BYTES",
    "SIGNATURE_HEADER",
    "STANDARD_HEADERS",
    "STANDARD_PREFIX",
    "TIMESTAMP_HEADER",
    "Signing",
    "WebhookReceiver",
    "sign",
    "sign_standard",
    "standard_key",
    "verify",
]
