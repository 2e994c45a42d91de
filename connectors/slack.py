"""Slack incoming-webhook receiver.

The webhook URL is the secret (its path is the token): the receiver gets it at construction
and error messages show only `https://hooks.slack.com`. Slack answers 200 `ok`; 429 with
`Retry-After` when rate limited (retried after that delay); 400 `invalid_payload`, 403, 404
and 410 for a broken message or a revoked webhook (not retried).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping

from connectors.http import (
    ReceiverError,
    classify,
    post,
    redact_url,
    url_secrets,
    validate_url,
)

# Slack's limits: 3000 chars per section text, 2000 per field, 10 fields per section.
_MAX_TEXT = 3000
_MAX_FIELD = 2000
_FIELDS_PER_SECTION = 10


def message(text: str, fields: Mapping[str, str] | None = None) -> bytes:
    """The outbox payload: `text` (also the notification fallback) and a section per 10 fields.

    `text` may use Slack mrkdwn; each field renders as a bold name over its value.
    """
    if not text.strip():
        raise ValueError("text must not be empty: Slack shows it in notifications")
    blocks: list[dict[str, object]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:_MAX_TEXT]}}
    ]
    items = [
        {"type": "mrkdwn", "text": f"*{name}*\n{value}"[:_MAX_FIELD]}
        for name, value in (fields or {}).items()
    ]
    for start in range(0, len(items), _FIELDS_PER_SECTION):
        blocks.append({"type": "section", "fields": items[start : start + _FIELDS_PER_SECTION]})
    body = {"text": text[:_MAX_TEXT], "blocks": blocks}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class SlackReceiver:
    """Posts messages to one Slack incoming webhook."""

    def __init__(
        self, webhook_url: str, *, timeout_s: float = 10.0, tls: ssl.SSLContext | None = None
    ) -> None:
        validate_url(webhook_url, "webhook_url")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._url = webhook_url
        self._target = f"Slack webhook at {redact_url(webhook_url)}"
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked

    def deliver(self, payload: bytes) -> None:
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise ReceiverError(
                "Slack payload must be a JSON object with a text (build it with message())",
                retriable=False,
            )
        response = post(
            self._url, payload, {"Content-Type": "application/json"}, self._timeout_s, tls=self._tls
        )
        error = classify(response, self._target, secrets=url_secrets(self._url))
        if error is not None:
            raise error


__all__ = ["SlackReceiver", "message"]
