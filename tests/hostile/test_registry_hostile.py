"""A model registry that misbehaves: garbage answers, a huge or trickled artifact, silence
while many new versions appear, a corrupt cache, a profile of another model, and a profile
that arrives while its version's monitor is being rebuilt.

The registry is a fake of MLflow's REST API (the three endpoints `connectors.mlflow` calls,
answering as MLflow does); what is under test is our own client, worker and cache. The real
server's contract is tested in tests/registry.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from connectors.mlflow import MlflowClient, RegistryError
from detectors.profile import ReferenceProfile
from monitord.config import RegistrySettings
from monitord.reference import profile_from_rows
from monitord.registry import ProfileCache, RegistryReferences

ARTIFACT = "monitord/profile.npz"
MODEL = "fraud-scorer"
Answer = tuple[int, bytes]


def profile_of(model: str, version: str, seed: int = 7) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = [
        {"x": float(x), "prediction": float(p)}
        for x, p in zip(rng.normal(0, 1, 400), rng.uniform(0, 1, 400), strict=True)
    ]
    return profile_from_rows(rows, model, version)


@dataclass
class FakeMlflow:
    """What the fake server answers. ``artifacts``: version -> the profile's bytes;
    ``override``: endpoint ("model-versions/get", "runs/get", "artifact") -> an answer in
    place of the right one; ``gate``: every request waits for it (a registry not answering);
    ``trickle_s``: an artifact's bytes are sent one at a time, this far apart."""

    url: str = ""
    artifacts: dict[str, bytes] = field(default_factory=dict)
    override: dict[str, Answer] = field(default_factory=dict)
    gate: threading.Event = field(default_factory=threading.Event)
    trickle_s: float = 0.0
    requests: list[str] = field(default_factory=list)

    def answer(self, path: str, query: dict[str, str]) -> Answer:
        if path.endswith("/model-versions/get"):
            endpoint = "model-versions/get"
            version = query.get("version", "")
            found = {"run_id": f"run-{version}", "source": "s3://m", "status": "READY"}
            right: Answer = (
                (200, json.dumps({"model_version": found}).encode())
                if version in self.artifacts
                else (404, b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such"}')
            )
        elif path.endswith("/runs/get"):
            endpoint = "runs/get"
            root = f"mlflow-artifacts:/0/{query.get('run_id')}/artifacts"
            right = (200, json.dumps({"run": {"info": {"artifact_uri": root}}}).encode())
        else:
            endpoint = "artifact"
            run = path.split("/")[-4]  # .../artifacts/0/<run>/artifacts/monitord/profile.npz
            data = self.artifacts.get(run.removeprefix("run-"))
            right = (200, data) if data is not None else (404, b"{}")
        self.requests.append(endpoint)
        return self.override.get(endpoint, right)


@pytest.fixture
def fake() -> Iterator[FakeMlflow]:
    state = FakeMlflow()
    state.gate.set()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.gate.wait(30)
            parsed = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(parsed.query))
            status, body = state.answer(parsed.path, query)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                if state.trickle_s and status == 200 and parsed.path.endswith(".npz"):
                    for i in range(len(body)):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(state.trickle_s)  # the misbehaviour itself, not a wait
                else:
                    self.wfile.write(body)
            except OSError:
                pass  # the client gave up: what a deadline is for

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.gate.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def registries(fake: FakeMlflow, tmp_path: Path) -> Iterator[Callable[..., RegistryReferences]]:
    made: list[RegistryReferences] = []

    def make(**settings: object) -> RegistryReferences:
        values: dict[str, object] = {
            "tracking_uri": fake.url,
            "timeout_s": 5.0,
            "wait_s": 5.0,
            "retries": 0,
            "retry_backoff_s": 0.01,
            **settings,
        }
        registry = RegistryReferences(RegistrySettings.model_validate(values), tmp_path / "cache")
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.close()


@pytest.mark.parametrize(
    ("endpoint", "answer", "logged"),
    [
        ("model-versions/get", (200, b"<html>sign in</html>"), "other than JSON"),
        ("model-versions/get", (200, b"[1, 2]"), "not a JSON object"),
        ("model-versions/get", (200, b'{"model_version": "7"}'), "without model_version"),
        ("runs/get", (200, b'{"run": {"info": {"artifact_uri": 7}}}'), "artifact_uri"),
        ("runs/get", (200, b'{"run": {"info": {"artifact_uri": "s3://b/x"}}}'), "serve-artifacts"),
        ("artifact", (200, b"PK\x03\x04 not a zip at all"), "not a readable monitord profile"),
        ("artifact", (200, b""), "not a readable monitord profile"),
        ("artifact", (401, b'{"message": "bad token"}'), "HTTP 401: bad token"),
    ],
)
def test_garbage_from_the_registry_means_a_warm_up_and_an_error_line(
    fake: FakeMlflow,
    registries: Callable[..., RegistryReferences],
    caplog: pytest.LogCaptureFixture,
    endpoint: str,
    answer: Answer,
    logged: str,
) -> None:
    fake.artifacts["1"] = profile_of(MODEL, "1").to_bytes()
    fake.override[endpoint] = answer
    registry = registries()
    with caplog.at_level(logging.INFO, logger="monitord.registry"):
        assert registry.load(MODEL, "1") is None
        assert registry.settle(10)
    assert logged in caplog.text
    assert not list((registry_cache(registry)).glob("*.npz"))  # nothing cached


def registry_cache(registry: RegistryReferences) -> Path:
    return registry._cache.directory


def test_a_profile_of_another_model_is_refused(
    fake: FakeMlflow,
    registries: Callable[..., RegistryReferences],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.artifacts["1"] = profile_of("another-model", "1").to_bytes()
    registry = registries()
    assert registry.load(MODEL, "1") is None
    assert registry.settle(10)
    assert "a profile of another-model/1" in caplog.text


def test_a_huge_artifact_is_not_read_past_the_limit(
    fake: FakeMlflow,
    registries: Callable[..., RegistryReferences],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.artifacts["1"] = b"\0" * 4_000_000
    registry = registries(max_profile_bytes=65536)
    assert registry.load(MODEL, "1") is None
    assert registry.settle(10)
    assert "larger than 65536 bytes (registry.max_profile_bytes)" in caplog.text


def test_an_artifact_trickled_a_byte_at_a_time_ends_within_the_request_timeout(
    fake: FakeMlflow,
) -> None:
    # Each byte comes well within timeout_s, the socket's idle limit: without a deadline on
    # the whole request, 2,000 bytes took 40 s and a worker (of two) was held that long.
    fake.artifacts["1"] = b"x" * 2000
    fake.trickle_s = 0.02
    client = MlflowClient(fake.url, timeout_s=0.5, max_bytes=1 << 20)
    with pytest.raises(RegistryError, match=r"within 0\.5 s") as caught:
        client.download("mlflow-artifacts:/0/run-1/artifacts", ARTIFACT)
    assert caught.value.retriable


def test_a_silent_registry_stalls_the_loop_once_not_once_per_new_version(
    fake: FakeMlflow, registries: Callable[..., RegistryReferences]
) -> None:
    for version in "12345":
        fake.artifacts[version] = profile_of(MODEL, version).to_bytes()
    fake.gate.clear()  # the registry accepts connections and says nothing
    registry = registries(wait_s=1.0, timeout_s=20.0)
    assert registry.load(MODEL, "1") is None  # waits wait_s: the registry may be just slow
    began = time.monotonic()
    for version in "2345":
        assert registry.load(MODEL, version) is None
    # Before: each new version waited wait_s again (4 s here; with 2,000 new version names
    # from a producer, over half an hour of a loop not polling).
    assert time.monotonic() - began < 0.5
    fake.gate.set()  # it answers again: every profile arrives, none is lost
    assert registry.settle(20)
    for version in "12345":
        arrived = registry.arrived(MODEL, version)
        assert arrived is not None
        assert arrived.model_version == version
    assert registry.load(MODEL, "6") is None  # not in the registry: answered, not waited for


def test_a_profile_handed_to_a_rebuilt_monitor_does_not_arrive_again(
    fake: FakeMlflow, registries: Callable[..., RegistryReferences]
) -> None:
    # A version warms up (the fetch is late); its partition is revoked and assigned again
    # after the profile came: the new monitor gets the profile from `load`, and its state is
    # restored from the checkpoint. `arrived` must not hand the same profile over once more:
    # adopting it would throw the restored detector state away.
    fake.artifacts["1"] = profile_of(MODEL, "1").to_bytes()
    fake.gate.clear()
    registry = registries(wait_s=0.0)
    assert registry.load(MODEL, "1") is None
    fake.gate.set()
    assert registry.settle(20)
    rebuilt = registry.load(MODEL, "1")  # the monitor made again, on assignment
    assert rebuilt is not None
    assert registry.arrived(MODEL, "1") is None


def test_a_registry_down_at_startup_then_up_hands_over_the_profile(
    fake: FakeMlflow, registries: Callable[..., RegistryReferences]
) -> None:
    fake.artifacts["1"] = profile_of(MODEL, "1").to_bytes()
    fake.override["model-versions/get"] = (503, b"starting")
    registry = registries(retries=50, retry_backoff_s=0.01)
    assert registry.load(MODEL, "1") is None  # a 503 is an answer: no wait
    while fake.requests.count("model-versions/get") < 3:
        time.sleep(0.01)  # polling the fake's record of requests, not waiting for luck
    del fake.override["model-versions/get"]
    assert registry.settle(20)
    arrived = registry.arrived(MODEL, "1")
    assert arrived is not None
    assert arrived.model_version == "1"


@pytest.mark.parametrize("damage", ["bytes", "bytes-and-hash", "meta-not-object", "meta-empty"])
def test_a_corrupt_cache_entry_is_fetched_again(
    fake: FakeMlflow,
    registries: Callable[..., RegistryReferences],
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    good = profile_of(MODEL, "1").to_bytes()
    fake.artifacts["1"] = good
    first = registries()
    assert first.load(MODEL, "1") is not None
    cache = registry_cache(first)
    (data_path,) = cache.glob("*.npz")
    meta_path = data_path.with_suffix(".json")
    garbage = b"PK\x03\x04" + b"\x00" * 100
    if damage.startswith("bytes"):
        data_path.write_bytes(garbage)
    if damage == "bytes-and-hash":  # a cache someone "repaired": the hash matches garbage
        meta = json.loads(meta_path.read_text())
        meta["provenance"]["sha256"] = hashlib.sha256(garbage).hexdigest()
        meta_path.write_text(json.dumps(meta))
    if damage == "meta-not-object":
        meta_path.write_text("[]")
    if damage == "meta-empty":
        meta_path.write_text("")
    assert ProfileCache(cache).read(MODEL, "1") is None
    fake.requests.clear()
    again = registries()
    profile = again.load(MODEL, "1")
    assert profile is not None
    assert profile.model_version == "1"
    assert "model-versions/get" in fake.requests  # from the registry, not the cache
    assert data_path.read_bytes() == good  # and the cache is whole again


def test_a_redirect_to_another_server_does_not_get_the_token() -> None:
    # urllib sends a request's headers on to wherever a redirect points: the bearer token
    # went to 127.0.0.2 when the registry answered 302 there.
    seen: list[str | None] = []

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    elsewhere = http.server.ThreadingHTTPServer(("127.0.0.2", 0), Elsewhere)
    target = f"http://127.0.0.2:{elsewhere.server_address[1]}"

    class Redirecting(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            location = f"{target}{self.path}" if "artifacts" in self.path else self.path + "x"
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    registry = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting)
    servers = [elsewhere, registry]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{registry.server_address[1]}"
        client = MlflowClient(url, timeout_s=5.0, max_bytes=1 << 20, token="s3cr3t")
        with pytest.raises(RegistryError, match="redirects to another server") as caught:
            client.download("mlflow-artifacts:/0/run-1/artifacts", ARTIFACT)
        assert not caught.value.retriable
        assert seen == []
        # A redirect within the server is followed, token and all (urllib stops the loop).
        with pytest.raises(RegistryError, match="HTTP 302"):
            client.model_version(MODEL, "1")
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
