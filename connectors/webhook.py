"""Generic signed webhook receiver, and `verify` for whoever receives it.

Signature scheme (the receiving side must check both headers):

    X-Monitord-Timestamp: <unix seconds, integer>
    X-Monitord-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>

`body` is the exact request body bytes (JSON). Signing the timestamp with the body lets a
receiver reject a captured request replayed later: `verify` accepts only timestamps within
`tolerance_s` (default 300 s) of its own clock and compares in constant time. Deliveries are
at-least-once: deduplicate on the id inside the body; answering 409 for an id already seen
counts as delivered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Callable, Mapping

from connectors.http import (
    ReceiverError,
    classify,
    post,
    redact_url,
    url_secrets,
    validate_url,
)

TIMESTAMP_HEADER = "X-Monitord-Timestamp"
SIGNATURE_HEADER = "X-Monitord-Signature"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-Monitord-Signature` value for `body` sent at `timestamp`."""
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


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
    """Posts signed JSON payloads to one URL; `clock` gives the signing time (seconds)."""

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        validate_url(url, "url")
        if len(secret) < 16:
            raise ValueError("secret must be at least 16 bytes: it is the HMAC key")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._url = url
        self._secret = secret
        self._headers = dict(headers or {})
        self._target = f"webhook at {redact_url(url)}"
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked
        self._clock = clock

    def deliver(self, payload: bytes) -> None:
        try:
            json.loads(payload)
        except ValueError:
            raise ReceiverError("webhook payload must be JSON", retriable=False) from None
        timestamp = int(self._clock())
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, payload),
        }
        response = post(self._url, payload, headers, self._timeout_s, tls=self._tls)
        error = classify(
            response,
            self._target,
            conflict_is_delivered=True,
            secrets=(*url_secrets(self._url), *self._headers.values()),
        )
        if error is not None:
            raise error


__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookReceiver", "sign", "verify"]
