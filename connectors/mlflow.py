"""An MLflow tracking server's model registry and run artifacts, over its REST API.

Standard library only (no `mlflow` package): the calls monitord needs are four, and the
daemon must not pull MLflow's dependencies into its own environment.

- `model_version(name, version)`: ``GET /api/2.0/mlflow/model-versions/get``
- `run_artifact_uri(run_id)`: ``GET /api/2.0/mlflow/runs/get``
- `download(artifact_uri, path)` and `upload(artifact_uri, path, data)`: the server's
  artifact proxy, ``/api/2.0/mlflow-artifacts/artifacts/<path>`` (``mlflow server
  --serve-artifacts``, the default since MLflow 2). A run's artifacts are reachable here
  when its ``artifact_uri`` is ``mlflow-artifacts:/...``.

Every failure is a `RegistryError` that says whether retrying can help: no answer, 429 and
5xx can; a missing model version or artifact (404), bad credentials or a request the server
refuses cannot.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO

from connectors.http import redact_url
from connectors.stream import ConnectorError

PROXY_SCHEME = "mlflow-artifacts:"
_ERROR_BODY_CHARS = 300
_CHUNK_BYTES = 1 << 16


class RegistryError(ConnectorError):
    """The registry did not answer as asked. `status` is the HTTP status (None: no answer);
    `missing` is True when what was asked for does not exist (HTTP 404)."""

    def __init__(self, message: str, *, retriable: bool, status: int | None = None) -> None:
        super().__init__(message, retriable=retriable)
        self.status = status

    @property
    def missing(self) -> bool:
        return self.status == 404


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version, as the registry describes it."""

    name: str
    version: str
    run_id: str  # the run that produced it ("" if it was registered without one)
    source: str  # where its model files are
    status: str  # READY once registered


class _SameServerRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects within the tracking server only: urllib sends a request's headers, the
    bearer token among them, on to wherever a redirect points."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if _origin(urllib.parse.urljoin(req.full_url, newurl)) != _origin(req.full_url):
            raise RegistryError(
                f"{redact_url(req.full_url)}: HTTP {code} redirects to another server "
                f"({redact_url(newurl)}); monitord sends its token to the tracking server "
                "only: set registry.tracking_uri to the server that answers",
                retriable=False,
                status=code,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or ""), parts.port or default


class MlflowClient:
    """Calls to one tracking server, each bounded by ``timeout_s`` (the answer's body as a
    whole; connecting and each read of the headers by the socket's timeout).

    ``token`` is sent as a bearer token (``MLFLOW_TRACKING_TOKEN`` in MLflow's own client);
    ``max_bytes`` bounds what a download may hold. ``tls`` verifies an https server."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        timeout_s: float,
        max_bytes: int,
        token: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri.rstrip("/")
        self._timeout_s, self._max_bytes = timeout_s, max_bytes
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        handlers: list[urllib.request.BaseHandler] = [_SameServerRedirects()]
        if tls is not None:
            handlers.append(urllib.request.HTTPSHandler(context=tls))
        self._opener = urllib.request.build_opener(*handlers)
        self._target = redact_url(self.tracking_uri)

    def model_version(self, name: str, version: str) -> ModelVersion:
        found = self._json("model-versions/get", {"name": name, "version": version})
        entry = found.get("model_version")
        if not isinstance(entry, dict):
            raise RegistryError(
                f"{self._target}: model version {name}/{version}: answer without model_version",
                retriable=False,
            )
        return ModelVersion(
            name=name,
            version=version,
            run_id=str(entry.get("run_id") or ""),
            source=str(entry.get("source") or ""),
            status=str(entry.get("status") or ""),
        )

    def run_artifact_uri(self, run_id: str) -> str:
        run = self._json("runs/get", {"run_id": run_id}).get("run")
        info = run.get("info") if isinstance(run, dict) else None
        uri = info.get("artifact_uri") if isinstance(info, dict) else None
        if not isinstance(uri, str) or not uri:
            raise RegistryError(
                f"{self._target}: run {run_id}: answer without run.info.artifact_uri",
                retriable=False,
            )
        return uri

    def download(self, artifact_uri: str, path: str) -> bytes:
        """The bytes of artifact ``path`` under ``artifact_uri`` (a run's artifact root)."""
        url = self._proxy_url(artifact_uri, path)
        status, body = self._send("GET", url, None, {})
        if status != 200:
            raise self._error(status, body, f"artifact {path}")
        return body

    def upload(self, artifact_uri: str, path: str, data: bytes) -> None:
        """Store ``data`` as artifact ``path`` under ``artifact_uri`` (replacing one there)."""
        url = self._proxy_url(artifact_uri, path)
        headers = {"Content-Type": "application/octet-stream"}
        status, body = self._send("PUT", url, data, headers)
        if not 200 <= status < 300:
            raise self._error(status, body, f"upload of artifact {path}")

    def _proxy_url(self, artifact_uri: str, path: str) -> str:
        if not artifact_uri.startswith(PROXY_SCHEME):
            raise RegistryError(
                f"{self._target}: artifacts at {artifact_uri!r} are not served by the tracking "
                f"server; run it with --serve-artifacts (the default) so runs' artifacts are "
                f"{PROXY_SCHEME}/ URIs",
                retriable=False,
            )
        root = artifact_uri[len(PROXY_SCHEME) :].strip("/")
        quoted = urllib.parse.quote(f"{root}/{path.strip('/')}")
        return f"{self.tracking_uri}/api/2.0/mlflow-artifacts/artifacts/{quoted}"

    def _json(self, endpoint: str, query: Mapping[str, str]) -> dict[str, object]:
        url = f"{self.tracking_uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        status, body = self._send("GET", url, None, {"Accept": "application/json"})
        if status != 200:
            raise self._error(status, body, endpoint)
        try:
            found = json.loads(body)
        except ValueError:
            raise RegistryError(
                f"{self._target}: {endpoint} answered with something other than JSON",
                retriable=False,
            ) from None
        if not isinstance(found, dict):
            raise RegistryError(f"{self._target}: {endpoint}: not a JSON object", retriable=False)
        return found

    def _send(
        self, method: str, url: str, data: bytes | None, headers: Mapping[str, str]
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(
            url, data=data, headers={**self._headers, **headers}, method=method
        )
        deadline = time.monotonic() + self._timeout_s
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                return response.status, self._read(response, deadline)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read(_ERROR_BODY_CHARS * 4)
        except urllib.error.URLError as error:
            raise RegistryError(
                f"no answer from {self._target}: {error.reason}", retriable=True
            ) from None
        except (OSError, http.client.HTTPException) as error:
            raise RegistryError(f"no answer from {self._target}: {error}", retriable=True) from None
        except ValueError:
            raise RegistryError(f"invalid URL for {self._target}", retriable=False) from None

    def _read(self, response: http.client.HTTPResponse, deadline: float) -> bytes:
        """The body, at most ``max_bytes``, by ``deadline``. The socket's timeout bounds each
        read only: a server sending a byte at a time would hold a worker for ever."""
        chunks: list[bytes] = []
        size = 0
        while size <= self._max_bytes:
            chunk = response.read1(min(_CHUNK_BYTES, self._max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if time.monotonic() > deadline:
                raise RegistryError(
                    f"{self._target}: answer not complete within {self._timeout_s:g} s "
                    f"(registry.timeout_s; {size} bytes so far)",
                    retriable=True,
                )
        body = b"".join(chunks)
        if len(body) > self._max_bytes:
            raise RegistryError(
                f"{self._target}: answer larger than {self._max_bytes} bytes "
                "(registry.max_profile_bytes)",
                retriable=False,
            )
        return body

    def _error(self, status: int, body: bytes, what: str) -> RegistryError:
        detail = body.decode("utf-8", "replace")
        try:
            found = json.loads(detail)
            if isinstance(found, dict) and "message" in found:
                detail = str(found["message"])
        except ValueError:
            pass
        retriable = status in (408, 429) or status >= 500
        return RegistryError(
            f"{self._target}: {what}: HTTP {status}: {detail[:_ERROR_BODY_CHARS].strip()}",
            retriable=retriable,
            status=status,
        )


__all__ = ["PROXY_SCHEME", "MlflowClient", "ModelVersion", "RegistryError"]
