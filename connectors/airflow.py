"""Apache Airflow receiver: one DAG run per retrain request, through Airflow's stable REST API.

The outbox payload is the request's CloudEvent (JSON): its `id` is the idempotency key, its
`data` becomes the run's `conf`.

API v2 (Airflow 3)::

    POST {base_url}/api/v2/dags/{dag_id}/dagRuns
    {"dag_run_id": run_id(key), "logical_date": null, "conf": data}
    Authorization: Bearer <JWT>

The JWT is either a static `token`, or fetched with `username`/`password` from
`POST {base_url}/auth/token` (`{"username", "password"}` -> `{"access_token"}`), cached, and
fetched again once when Airflow answers 401 (it expired).

API v1 (Airflow 2)::

    POST {base_url}/api/v1/dags/{dag_id}/dagRuns
    {"dag_run_id": run_id(key), "conf": data}
    Authorization: Basic <username:password>   (or Bearer <token>)

Airflow refuses a run id it already has with 409: that run is this request, so it counts as
delivered. 400 (invalid conf or run id), 401/403 (credentials, permissions) and 404 (no such
DAG) are not retried; 5xx and no answer are.
"""

from __future__ import annotations

import base64
import hashlib
import re
import ssl
import threading
import urllib.parse
from typing import Literal

from connectors.http import (
    HttpResponse,
    ReceiverError,
    classify,
    decode_event,
    json_answer,
    post_json,
    redact_url,
    validate_url,
)

RUN_ID_PREFIX = "monitord__"
HASHED_PREFIX = "monitord~"
MAX_RUN_ID = 250
"""Airflow stores run ids in a 250-character column."""

_ALLOWED_RUN_ID = re.compile(r"[A-Za-z0-9_.~:+-]+\Z")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_.~:+-]")
_READABLE_CHARS = 100


def run_id(key: str) -> str:
    """The DAG run id for idempotency key `key`, valid for Airflow.

    Airflow accepts run ids matching its `[scheduler] allowed_run_id_pattern`, by default
    `^[A-Za-z0-9_.~:+-]+$`, of at most 250 characters. A key made of those characters that
    fits becomes `monitord__<key>` (monitord's own keys, 32 hex digits, always do). Any
    other key becomes `monitord~<key, other characters replaced by "-", cut to 100>~<first
    32 hex digits of SHA-256(key)>`: still deterministic, still valid, and two keys never
    share a run id (the two forms differ at their ninth character).
    """
    if not key:
        raise ValueError("key must not be empty")
    if _ALLOWED_RUN_ID.match(key) and len(RUN_ID_PREFIX) + len(key) <= MAX_RUN_ID:
        return RUN_ID_PREFIX + key
    readable = _NOT_ALLOWED.sub("-", key)[:_READABLE_CHARS]
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{HASHED_PREFIX}{readable}~{digest}"


class AirflowReceiver:
    """Triggers runs of one DAG of one Airflow deployment (`base_url` such as
    `http://airflow-apiserver:8080`, without `/api/...`)."""

    def __init__(
        self,
        base_url: str,
        dag_id: str,
        *,
        api_version: Literal["v2", "v1"] = "v2",
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        validate_url(base_url, "base_url")
        if not dag_id.strip():
            raise ValueError("dag_id must not be empty")
        if api_version not in ("v2", "v1"):
            raise ValueError(
                f"api_version must be 'v2' (Airflow 3) or 'v1' (Airflow 2), got {api_version!r}"
            )
        if (username is None) != (password is None):
            raise ValueError("username and password go together: give both or neither")
        if token is not None and username is not None:
            raise ValueError("give either token or username and password, not both")
        if token is not None and not token.strip():
            raise ValueError("token must not be empty")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        base = base_url.rstrip("/")
        self._url = f"{base}/api/{api_version}/dags/{urllib.parse.quote(dag_id, safe='')}/dagRuns"
        self._token_url = f"{base}/auth/token"
        self._target = f"Airflow at {redact_url(base_url)}"
        self._api_version = api_version
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked
        self._token = token
        self._credentials = (username, password) if username is not None else None
        # Airflow 3 exchanges credentials for a JWT; Airflow 2 takes them on every request.
        self._exchanges = api_version == "v2" and self._credentials is not None
        self._jwt: str | None = None
        self._lock = threading.Lock()

    def deliver(self, payload: bytes) -> None:
        event = decode_event(payload, self._target)
        body: dict[str, object] = {"dag_run_id": run_id(event.id)}
        if self._api_version == "v2":
            body["logical_date"] = None  # run "now", and no clash on logical dates
        body["conf"] = dict(event.data)
        response = self._post(body, renew=False)
        if response.status == 401 and self._exchanges:
            response = self._post(body, renew=True)
        error = classify(
            response, self._target, conflict_is_delivered=True, secrets=self._secrets()
        )
        if error is not None:
            raise error

    def _post(self, body: dict[str, object], *, renew: bool) -> HttpResponse:
        return post_json(
            self._url, body, self._authorization(renew), self._timeout_s, tls=self._tls
        )

    def _authorization(self, renew: bool) -> dict[str, str]:
        if self._token is not None:
            return {"Authorization": f"Bearer {self._token}"}
        if self._credentials is None:
            return {}
        if not self._exchanges:
            user, password = self._credentials
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        with self._lock:
            if renew or self._jwt is None:
                self._jwt = self._fetch_jwt()
            return {"Authorization": f"Bearer {self._jwt}"}

    def _fetch_jwt(self) -> str:
        assert self._credentials is not None
        user, password = self._credentials
        target = f"Airflow token endpoint at {redact_url(self._token_url)}"
        response = post_json(
            self._token_url,
            {"username": user, "password": password},
            {},
            self._timeout_s,
            tls=self._tls,
        )
        error = classify(response, target, secrets=self._secrets())
        if error is not None:
            raise error
        answer = json_answer(response, target)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise ReceiverError(f"{target} answered without an access_token", retriable=False)
        return token

    def _secrets(self) -> tuple[str, ...]:
        password = self._credentials[1] if self._credentials else None
        return tuple(s for s in (self._token, password, self._jwt) if s)


__all__ = ["HASHED_PREFIX", "MAX_RUN_ID", "RUN_ID_PREFIX", "AirflowReceiver", "run_id"]
