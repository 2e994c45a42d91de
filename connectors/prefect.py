"""Prefect 3 receiver: one flow run of a deployment per retrain request.

The outbox payload is the request's CloudEvent (JSON): its `id` is the idempotency key, its
`data` is passed as the flow parameter named `parameter` (default `trigger`)::

    GET  {api_url}/deployments/name/{flow}/{deployment}      (once, when given by name)
    POST {api_url}/deployments/{id}/create_flow_run
    {"name": "monitord-<key>", "parameters": {parameter: data}, "idempotency_key": key}
    Authorization: Bearer <api_key>                          (Prefect Cloud; optional)

Prefect answers a repeated `idempotency_key` with the run it already created (200 instead of
201): delivered, and still one run. Prefect answers 409 when the parameters fail the
deployment's parameter schema, so here a 409 is an error and is not retried, like 404 (no such
deployment) and 422 (a malformed request). A deployment given by name is looked up again once
if its cached id is gone (deleted and re-created).
"""

from __future__ import annotations

import ssl
import threading
import urllib.parse
import uuid
from collections.abc import Mapping

from connectors.http import (
    HttpResponse,
    ReceiverError,
    classify,
    decode_event,
    get,
    json_answer,
    post_json,
    redact_url,
    validate_url,
)

RUN_NAME_PREFIX = "monitord-"


class PrefectReceiver:
    """Creates flow runs of one deployment on one Prefect API (`api_url` such as
    `http://prefect-server:4200/api`, or a Prefect Cloud workspace URL)."""

    def __init__(
        self,
        api_url: str,
        deployment: str,
        *,
        parameter: str = "trigger",
        api_key: str | None = None,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        validate_url(api_url, "api_url")
        self._name: tuple[str, str] | None = None
        self._id: str | None = None
        try:
            self._id = str(uuid.UUID(deployment))
        except ValueError:
            flow, _, name = deployment.partition("/")
            if not flow.strip() or not name.strip() or "/" in name:
                raise ValueError(
                    "deployment must be 'flow-name/deployment-name' or a deployment id (UUID), "
                    f"got {deployment!r}"
                ) from None
            self._name = (flow, name)
        if not parameter.strip():
            raise ValueError("parameter must not be empty: it names the flow's parameter")
        if api_key is not None and not api_key.strip():
            raise ValueError("api_key must not be empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._api = api_url.rstrip("/")
        self._target = f"Prefect at {redact_url(api_url)}"
        self._parameter = parameter
        self._api_key = api_key
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked
        self._lock = threading.Lock()

    def deliver(self, payload: bytes) -> None:
        event = decode_event(payload, self._target)
        body = {
            "name": RUN_NAME_PREFIX + event.id,
            "parameters": {self._parameter: dict(event.data)},
            "idempotency_key": event.id,
        }
        deployment_id = self._deployment_id()
        response = self._create(deployment_id, body)
        if response.status == 404 and self._name is not None:
            with self._lock:
                self._id = None  # re-created under the same name: look it up again
            if (fresh := self._deployment_id()) != deployment_id:
                response = self._create(fresh, body)
        error = classify(response, self._target, secrets=self._secrets())
        if error is not None:
            raise error

    def _create(self, deployment_id: str, body: Mapping[str, object]) -> HttpResponse:
        path = urllib.parse.quote(deployment_id, safe="")
        url = f"{self._api}/deployments/{path}/create_flow_run"
        return post_json(url, body, self._headers, self._timeout_s, tls=self._tls)

    def _deployment_id(self) -> str:
        with self._lock:
            if self._id is None:
                self._id = self._look_up()
            return self._id

    def _look_up(self) -> str:
        assert self._name is not None
        flow, name = (urllib.parse.quote(part, safe="") for part in self._name)
        url = f"{self._api}/deployments/name/{flow}/{name}"
        target = f"{self._target} (deployment {'/'.join(self._name)!r})"
        response = get(url, self._headers, self._timeout_s, tls=self._tls)
        error = classify(response, target, secrets=self._secrets())
        if error is not None:
            raise error
        answer = json_answer(response, target)
        found = answer.get("id") if isinstance(answer, dict) else None
        if not isinstance(found, str) or not found:
            raise ReceiverError(f"{target} answered without a deployment id", retriable=False)
        return found

    def _secrets(self) -> tuple[str, ...]:
        return (self._api_key,) if self._api_key else ()


__all__ = ["RUN_NAME_PREFIX", "PrefectReceiver"]
