"""A real MLflow tracking server on 127.0.0.1 (SQLite backend, artifacts served by the server
from a temporary directory), one per test session.

MLflow is installed into its own virtualenv by `tests/orchestrators/install.sh` (`make test`
runs it), beside the orchestrators. The server runs in a process group of its own, killed
whole at teardown. Models, runs and versions are created here with MLflow's REST API
directly, not with monitord's client, so the code under test is not its own oracle.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.broker import free_port
from tests.orchestrators.conftest import (
    Server,
    answers,
    clean_environment,
    executable,
    request_json,
)


@dataclass(frozen=True)
class Mlflow:
    """A running tracking server; `url` is its root (``http://127.0.0.1:PORT``)."""

    url: str
    python: Path  # the MLflow virtualenv's interpreter, for the official client as an oracle

    def api(self, endpoint: str) -> str:
        return f"{self.url}/api/2.0/mlflow/{endpoint}"

    def register(self, name: str) -> None:
        status, answer = request_json("POST", self.api("registered-models/create"), {"name": name})
        assert status == 200, answer

    def new_version(self, name: str) -> tuple[str, str]:
        """A run, and a version of ``name`` registered from it: (version, run id)."""
        status, answer = request_json("POST", self.api("runs/create"), {"experiment_id": "0"})
        assert status == 200, answer
        info = answer["run"]["info"]
        run_id, root = info["run_id"], info["artifact_uri"]
        status, answer = request_json(
            "POST",
            self.api("model-versions/create"),
            {"name": name, "source": f"{root}/model", "run_id": run_id},
        )
        assert status == 200, answer
        return str(answer["model_version"]["version"]), run_id

    def download_with_mlflow(self, run_id: str, path: str, into: Path) -> bytes:
        """The artifact's bytes as MLflow's own client downloads them."""
        script = (
            "import sys, mlflow\n"
            "print(mlflow.artifacts.download_artifacts("
            "artifact_uri=sys.argv[1], dst_path=sys.argv[2], tracking_uri=sys.argv[3]))"
        )
        done = subprocess.run(
            [str(self.python), "-c", script, f"runs:/{run_id}/{path}", str(into), self.url],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_environment("MLFLOW_"),
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return Path(done.stdout.strip().splitlines()[-1]).read_bytes()


@pytest.fixture(scope="session")
def mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mlflow]:
    """``mlflow server`` with a SQLite store; runs' artifacts are ``mlflow-artifacts:/`` URIs
    served by the server itself (``--serve-artifacts``, its default) from a temporary
    directory (``--artifacts-destination``)."""
    binary = executable("mlflow", "mlflow")
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    server = Server.start(
        "mlflow server",
        [
            str(binary),
            "server",
            *("--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}"),
            *("--artifacts-destination", str(home / "artifacts")),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", "1"),
        ],
        clean_environment("MLFLOW_", HOME=str(home)),
        home / "server.log",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_until(lambda: answers(f"{url}/health"))
        yield Mlflow(url, binary.parent / "python")
    finally:
        server.stop()
