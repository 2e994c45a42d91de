"""PagerDuty Events API v2 receiver.

The outbox payload is an event without its routing key (`trigger(...)` or `resolve(...)`);
the receiver adds the key, which it gets at construction, so no secret is ever stored.
PagerDuty answers 202 when it queued the event, 400 for an invalid one (not retried), 429
when rate limited and 5xx when unavailable (both retried). Events with the same `dedup_key`
update one incident, so a re-sent event is harmless.
"""

from __future__ import annotations

import hashlib
import json
import ssl
from collections.abc import Mapping

from connectors.http import ReceiverError, classify, post_json, redact_url, validate_url

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = frozenset({"critical", "error", "warning", "info"})
ACTIONS = frozenset({"trigger", "resolve"})
_MAX_SUMMARY = 1024  # PagerDuty truncates longer summaries anyway


def dedup_key(labels: Mapping[str, str]) -> str:
    """A stable key for a label set: 32 hex chars of the SHA-256 of its sorted items."""
    # JSON, not "k=v,k=v": a value containing "," or "=" cannot collide with another set.
    canonical = json.dumps(sorted(labels.items()), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def trigger(
    key: str,
    summary: str,
    source: str,
    severity: str,
    custom_details: Mapping[str, object] | None = None,
) -> bytes:
    """The outbox payload opening (or updating) the incident `key`."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {sorted(SEVERITIES)}, got {severity!r}")
    if not summary or not source:
        raise ValueError("summary and source must not be empty")
    event = {
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": summary[:_MAX_SUMMARY],
            "source": source,
            "severity": severity,
            "custom_details": dict(custom_details or {}),
        },
    }
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def resolve(key: str) -> bytes:
    """The outbox payload resolving the incident `key`."""
    return json.dumps({"event_action": "resolve", "dedup_key": key}).encode()


class PagerDutyReceiver:
    """Sends events to one PagerDuty service (its integration `routing_key`)."""

    def __init__(
        self,
        routing_key: str,
        *,
        url: str = EVENTS_URL,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if not routing_key.strip():
            raise ValueError("routing_key must not be empty (the service's integration key)")
        validate_url(url, "url")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._routing_key = routing_key
        self._url = url
        self._target = f"PagerDuty at {redact_url(url)}"
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked

    def deliver(self, payload: bytes) -> None:
        event = _decode(payload)
        response = post_json(
            self._url,
            {"routing_key": self._routing_key, **event},
            {},
            self._timeout_s,
            tls=self._tls,
        )
        error = classify(response, self._target, secrets=(self._routing_key,))
        if error is not None:
            raise error


def _decode(payload: bytes) -> dict[str, object]:
    try:
        event = json.loads(payload)
    except ValueError:
        event = None
    if (
        not isinstance(event, dict)
        or event.get("event_action") not in ACTIONS
        or not event.get("dedup_key")
        or "routing_key" in event
        or (event["event_action"] == "trigger") != isinstance(event.get("payload"), dict)
    ):
        raise ReceiverError(
            "PagerDuty payload must be an event built by trigger() or resolve() "
            "(event_action, dedup_key, payload only for trigger, no routing_key)",
            retriable=False,
        )
    return event


__all__ = [
    "ACTIONS",
    "EVENTS_URL",
    "SEVERITIES",
    "PagerDutyReceiver",
    "dedup_key",
    "resolve",
    "trigger",
]
