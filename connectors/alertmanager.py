"""Prometheus Alertmanager API v2 receiver: `POST /api/v2/alerts` with postable alerts.

The outbox payload is the JSON list itself (built with `postable_alert` and `encode_alerts`);
Alertmanager deduplicates by label set, so re-sending a delivered alert is harmless.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from connectors.http import ReceiverError, classify, post, redact_url, validate_url

PostableAlert = dict[str, object]

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def rfc3339(timestamp: float) -> str:
    """UTC RFC 3339 with milliseconds, as Alertmanager prints it: `2024-05-01T12:00:00.000Z`."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def postable_alert(
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    starts_at: float,
    ends_at: float | None,
    generator_url: str = "",
) -> PostableAlert:
    """One alert of the v2 API; times in seconds since the epoch.

    `ends_at` in the future keeps the alert firing until then (re-post to extend it); in the
    past it resolves the alert; None lets Alertmanager apply its `resolve_timeout`.
    """
    if not labels:
        raise ValueError("labels must not be empty: Alertmanager identifies alerts by them")
    bad = sorted(name for name in labels if not _LABEL_NAME.match(name))
    if bad:
        raise ValueError(f"labels: invalid names {bad}; use letters, digits and underscores")
    if ends_at is not None and ends_at < starts_at:
        raise ValueError(f"ends_at ({ends_at}) must not be before starts_at ({starts_at})")
    alert: PostableAlert = {
        "labels": dict(labels),
        "annotations": dict(annotations),
        "startsAt": rfc3339(starts_at),
    }
    if ends_at is not None:
        alert["endsAt"] = rfc3339(ends_at)
    if generator_url:
        alert["generatorURL"] = generator_url
    return alert


def encode_alerts(alerts: Sequence[PostableAlert]) -> bytes:
    """The outbox payload for `AlertmanagerReceiver`: the alerts as a JSON list."""
    return json.dumps(list(alerts), separators=(",", ":"), ensure_ascii=False).encode()


class AlertmanagerReceiver:
    """Posts alert lists to one Alertmanager (`base_url` such as `http://alertmanager:9093`)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        validate_url(base_url, "base_url")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._url = base_url.rstrip("/") + "/api/v2/alerts"
        self._target = f"Alertmanager at {redact_url(base_url)}"
        # e.g. an Authorization header for an Alertmanager behind a proxy; a secret.
        self._headers = {**(headers or {}), "Content-Type": "application/json"}
        self._secrets = tuple(self._headers.values())
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked

    def deliver(self, payload: bytes) -> None:
        try:
            alerts = json.loads(payload)
        except ValueError:
            alerts = None
        if not isinstance(alerts, list) or not alerts:
            raise ReceiverError(
                "Alertmanager payload must be a non-empty JSON list of alerts "
                "(build it with encode_alerts)",
                retriable=False,
            )
        response = post(self._url, payload, self._headers, self._timeout_s, tls=self._tls)
        error = classify(response, self._target, secrets=self._secrets)
        if error is not None:
            raise error


__all__ = ["AlertmanagerReceiver", "PostableAlert", "encode_alerts", "postable_alert", "rfc3339"]
