"""Kubeflow Pipelines receiver: one run of a pipeline per retrain request (API v2beta1).

The outbox payload is the request's CloudEvent (JSON): its `id` is the idempotency key, its
`data` the lineage. KFP has no idempotency key, so the key travels in the run's display name
and is looked up before creating::

    GET  {base_url}/apis/v2beta1/runs?filter=<JSON>&page_size=10[&experiment_id=...]
         filter = {"predicates": [{"key": "display_name", "operation": "EQUALS",
                                   "string_value": "monitord-<key>"}]}
    GET  {base_url}/apis/v2beta1/pipelines/{pipeline_id}/versions
         ?page_size=1&sort_by=created_at desc                (only without pipeline_version_id)
    POST {base_url}/apis/v2beta1/runs
    {"display_name": "monitord-<key>", "description": ...,
     "pipeline_version_reference": {"pipeline_id": ..., "pipeline_version_id": ...},
     "runtime_config": {"parameters": {"trigger": data, "model": ..., "model_version": ...,
                                       "reason": ...}},
     "experiment_id": ...}                                    (when configured)
    Authorization: Bearer <token>                             (optional)

A run of this pipeline already carrying the display name is this request: delivered, whatever
its state. The pipeline declares `trigger: dict` and three `str` inputs. Without a
`pipeline_version_id`, each request runs the pipeline's newest version at delivery time.
Lookup and create are two calls: two monitord replicas delivering the same key at the same
instant could both create; one replica delivers its outbox from one thread, so it cannot.
"""

from __future__ import annotations

import json
import ssl
import urllib.parse

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

DISPLAY_NAME_PREFIX = "monitord-"
_LOOKUP_PAGE = 10


def display_name(key: str) -> str:
    """The run's display name for idempotency key `key`."""
    return DISPLAY_NAME_PREFIX + key


def name_filter(name: str) -> str:
    """The v2beta1 list filter (JSON of `Filter`) matching runs whose display name is `name`."""
    predicate = {"key": "display_name", "operation": "EQUALS", "string_value": name}
    return json.dumps({"predicates": [predicate]}, separators=(",", ":"))


class KubeflowReceiver:
    """Creates runs of one pipeline on one KFP API server (`base_url` such as
    `http://ml-pipeline.kubeflow:8888`, or the `.../pipeline` path of a Kubeflow ingress)."""

    def __init__(
        self,
        base_url: str,
        pipeline_id: str,
        *,
        pipeline_version_id: str | None = None,
        experiment_id: str | None = None,
        token: str | None = None,
        timeout_s: float = 10.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        validate_url(base_url, "base_url")
        if not pipeline_id.strip():
            raise ValueError("pipeline_id must not be empty")
        for name, value in (
            ("pipeline_version_id", pipeline_version_id),
            ("experiment_id", experiment_id),
            ("token", token),
        ):
            if value is not None and not value.strip():
                raise ValueError(f"{name} must not be empty: leave it out instead")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self._api = f"{base_url.rstrip('/')}/apis/v2beta1"
        self._target = f"Kubeflow Pipelines at {redact_url(base_url)}"
        self._pipeline_id = pipeline_id
        self._version_id = pipeline_version_id
        self._experiment_id = experiment_id
        self._token = token
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout_s = timeout_s
        self._tls = tls  # None: the system's CAs, host names checked

    def deliver(self, payload: bytes) -> None:
        event = decode_event(payload, self._target)
        name = display_name(event.id)
        if self._exists(name):
            return
        data = event.data
        body: dict[str, object] = {
            "display_name": name,
            "description": (
                f"Retrain of {data.get('model', '')} version {data.get('version', '')} "
                f"requested by monitord ({data.get('reason', '')}); idempotency key {event.id}"
            ),
            "pipeline_version_reference": {
                "pipeline_id": self._pipeline_id,
                "pipeline_version_id": self._version_id or self._newest_version(),
            },
            "runtime_config": {
                "parameters": {
                    "trigger": dict(data),
                    "model": str(data.get("model", "")),
                    "model_version": str(data.get("version", "")),
                    "reason": str(data.get("reason", "")),
                }
            },
        }
        if self._experiment_id is not None:
            body["experiment_id"] = self._experiment_id
        response = post_json(
            f"{self._api}/runs", body, self._headers, self._timeout_s, tls=self._tls
        )
        self._raise_for(response, self._target)

    def _exists(self, name: str) -> bool:
        query = {"filter": name_filter(name), "page_size": str(_LOOKUP_PAGE)}
        if self._experiment_id is not None:
            query["experiment_id"] = self._experiment_id
        target = f"{self._target} (run lookup)"
        answer = self._get(f"{self._api}/runs?{urllib.parse.urlencode(query)}", target)
        runs = answer.get("runs", []) if isinstance(answer, dict) else None
        if not isinstance(runs, list):
            raise ReceiverError(f"{target} answered without a list of runs", retriable=False)
        return any(self._is_ours(run, name) for run in runs)

    def _is_ours(self, run: object, name: str) -> bool:
        # The server filtered already; checking again guards against a proxy or version
        # that ignores the filter, and a run of another pipeline is not this request.
        if not isinstance(run, dict) or run.get("display_name") != name:
            return False
        reference = run.get("pipeline_version_reference")
        pipeline = reference.get("pipeline_id") if isinstance(reference, dict) else None
        return pipeline in (None, "", self._pipeline_id)

    def _newest_version(self) -> str:
        pipeline = urllib.parse.quote(self._pipeline_id, safe="")
        query = urllib.parse.urlencode({"page_size": "1", "sort_by": "created_at desc"})
        target = f"{self._target} (versions of pipeline {self._pipeline_id})"
        answer = self._get(f"{self._api}/pipelines/{pipeline}/versions?{query}", target)
        versions = answer.get("pipeline_versions") if isinstance(answer, dict) else None
        newest = versions[0] if isinstance(versions, list) and versions else None
        found = newest.get("pipeline_version_id") if isinstance(newest, dict) else None
        if not isinstance(found, str) or not found:
            raise ReceiverError(
                f"{target}: the pipeline has no version to run; upload one or configure "
                "pipeline_version_id",
                retriable=False,
            )
        return found

    def _get(self, url: str, target: str) -> object:
        response = get(url, self._headers, self._timeout_s, tls=self._tls)
        self._raise_for(response, target)
        return json_answer(response, target)

    def _raise_for(self, response: HttpResponse, target: str) -> None:
        error = classify(response, target, secrets=(self._token,) if self._token else ())
        if error is not None:
            raise error


__all__ = ["DISPLAY_NAME_PREFIX", "KubeflowReceiver", "display_name", "name_filter"]
