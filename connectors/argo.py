"""Argo Workflows receiver: one workflow per retrain request, submitted from a template.

The outbox payload is the request's CloudEvent (JSON): its `id` is the idempotency key, its
`data` the lineage. Argo Server's submit API (`WorkflowSubmitRequest`, `SubmitOpts`)::

    POST {base_url}/api/v1/workflows/{namespace}/submit
    {"namespace": namespace,
     "resourceKind": "WorkflowTemplate" | "ClusterWorkflowTemplate",
     "resourceName": template,
     "submitOptions": {
         "name": workflow_name(template, key),
         "parameters": ["trigger=<data as JSON>", "model=<model>",
                        "model_version=<version>", "reason=<reason>"],
         "labels": "monitord.io/idempotency-key=<label_value(key)>"}}
    Authorization: Bearer <token>                      (optional)

The template declares the four parameters (`spec.arguments.parameters`). The workflow's name
is derived from the template and the key, so a second submit of the same request is refused
with 409 AlreadyExists: delivered, and still one workflow. 400, 401, 403 and 404 are not
retried; 5xx and no answer are.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl

from connectors.http import classify, decode_event, post_json, redact_url, validate_url

LABEL = "monitord.io/idempotency-key"
MAX_NAME = 63
"""Argo refuses workflow names longer than a Kubernetes label value (63 characters)."""

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_KEY_CHARS = 40
_DIGEST_CHARS = 32


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:_DIGEST_CHARS]


def workflow_name(template: str, key: str) -> str:
    """`<template>-<key>`: a valid Kubernetes name of at most 63 characters.

    The key is used as is when it is a lower-case DNS label of at most 40 characters
    (monitord's keys, 32 hex digits, always are), else replaced by the first 32 hex digits
    of its SHA-256. The template's name is cut to fit, so the same key sent to two templates
    of one namespace makes two workflows, not one refused as a duplicate.
    """
    if not key:
        raise ValueError("key must not be empty")
    suffix = key if len(key) <= _KEY_CHARS and _DNS_LABEL.match(key) else _digest(key)
    prefix = re.sub(r"[^a-z0-9-]+", "-", template.lower())[: MAX_NAME - 1 - len(suffix)]
    prefix = prefix.strip("-") or "monitord"
    return f"{prefix}-{suffix}"


def label_value(key: str) -> str:
    """The key as a Kubernetes label value, or its SHA-256 prefix when it is not a valid one
    (longer than 63 characters, or other characters than letters, digits, `-`, `_`, `.`)."""
    if len(key) <= MAX_NAME and _LABEL_VALUE.match(key):
        return key
    return _digest(key)


class ArgoReceiver:
    """Submits workflows from one (cluster) workflow template through one Argo Server
    (`base_url` such as `https://argo-server.argo:2746`)."""

    def __init__(
        self,
        base_url: str,
        namespace: str,
        template: str,
        *,
        token: str | None = None,
        cluster_template: bool = False,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        validate_url(base_url, "base_url")
        if not _DNS_LABEL.match(namespace):
            raise ValueError(
                f"namespace must be a Kubernetes namespace name (lower-case letters, digits "
                f"and '-'), got {namespace!r}"
            )
        if not template.strip():
            raise ValueError("template must not be empty: it names the WorkflowTemplate")
        if token is not None and not token.strip():
            raise ValueError("token must not be empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._url = f"{base_url.rstrip('/')}/api/v1/workflows/{namespace}/submit"
        self._target = f"Argo Server at {redact_url(base_url)}"
        self._namespace = namespace
        self._template = template
        self._kind = "ClusterWorkflowTemplate" if cluster_template else "WorkflowTemplate"
        self._token = token
        # Argo Server wants the whole header value, scheme included.
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked

    def deliver(self, payload: bytes) -> None:
        event = decode_event(payload, self._target)
        data = event.data
        trigger = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        body = {
            "namespace": self._namespace,
            "resourceKind": self._kind,
            "resourceName": self._template,
            "submitOptions": {
                "name": workflow_name(self._template, event.id),
                "parameters": [
                    f"trigger={trigger}",
                    f"model={data.get('model', '')}",
                    f"model_version={data.get('version', '')}",
                    f"reason={data.get('reason', '')}",
                ],
                "labels": f"{LABEL}={label_value(event.id)}",
            },
        }
        response = post_json(self._url, body, self._headers, self._timeout_s, tls=self._tls)
        error = classify(
            response,
            self._target,
            conflict_is_delivered=True,
            secrets=(self._token,) if self._token else (),
        )
        if error is not None:
            raise error


__all__ = ["LABEL", "MAX_NAME", "ArgoReceiver", "label_value", "workflow_name"]
