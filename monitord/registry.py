"""Reference profiles from a model registry (MLflow), cached on disk, fetched off the loop.

When a model version is first seen and has no profile file, `RegistryReferences.load` looks
for its profile: first in the cache (``registry.cache_dir``: the artifact's bytes and its
SHA-256, so a restart needs no registry), else in the registered version's run artifacts
(``models:/NAME/VERSION`` -> its run -> ``registry.artifact_path``). The fetch runs on a
worker thread; the loop waits for it at most ``registry.wait_s``, and not at all while an
earlier fetch is still unanswered past that wait (a silent registry stalls the loop once,
not once per new version). A version whose fetch is late, or whose registry is down,
warms up on live traffic meanwhile, and the worker retries (``registry.retries``, backoff
doubling): a profile that arrives later replaces the warm-up
(`arrived`, asked by the monitor). A cached profile is checked against the registry once
per process in the background: a changed artifact is logged and replaces the cached one.

The registry's word on a version is final for this process when it says the version or the
artifact does not exist (HTTP 404): the version warms up, with an info line saying so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

from connectors.mlflow import MlflowClient, RegistryError
from detectors.profile import ProfileError, ReferenceProfile
from monitord.config import Config, RegistrySettings
from monitord.monitor import ProfileLoader
from monitord.provenance import Provenance
from monitord.reference import profile_loader, replace_atomically, supported

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 300.0
WORKERS = 2  # fetches at once; more versions wait their turn on the worker queue


@dataclass
class _Fetch:
    """One version's fetch, shared by the loop (which may wait for it) and a worker."""

    first_answer: threading.Event = field(default_factory=threading.Event)
    profile: ReferenceProfile | None = None
    handed_over: bool = False  # `load` returned: a later profile goes to `arrived`


class RegistryReferences:
    """A model registry's reference profiles for the monitor (module docstring)."""

    def __init__(
        self, settings: RegistrySettings, cache_dir: Path, client: MlflowClient | None = None
    ) -> None:
        self.settings = settings
        token = os.environ.get(settings.token_env) if settings.token_env else None
        self._client = client or MlflowClient(
            settings.tracking_uri,
            timeout_s=settings.timeout_s,
            max_bytes=settings.max_profile_bytes,
            token=token,
        )
        self._cache = ProfileCache(cache_dir)
        self._lock = threading.Lock()
        self._fetches: dict[tuple[str, str], _Fetch] = {}
        self._arrived: dict[tuple[str, str], ReferenceProfile] = {}
        self._provenance: dict[str, Provenance] = {}
        self._stop = threading.Event()
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="monitord-registry")
        self._running: list[Future[None]] = []
        self._unanswered: list[_Fetch] = []  # fetches `load` stopped waiting for (loop only)

    def load(self, model: str, version: str) -> ReferenceProfile | None:
        """The version's profile from the cache or the registry, or None (warm-up) if the
        registry has none or has not answered within ``wait_s``. Asked again, the answer
        is the one known by then, without waiting."""
        key = (model, version)
        with self._lock:
            known = self._fetches.get(key)
            if known is not None:
                # The version's monitor is made again (its partition assigned again): the
                # profile it gets now is the latest; one pending in `arrived` is that same
                # profile, and adopting it would drop the state restored from a checkpoint.
                self._arrived.pop(key, None)
                return known.profile
        fetch = _Fetch()
        cached = self._cache.read(model, version)
        if cached is not None:
            found, provenance = cached
            fetch.profile, fetch.handed_over = found, True
            fetch.first_answer.set()
            self._remember(found, provenance)
            with self._lock:
                self._fetches[key] = fetch
            log.info(
                "%s/%s: reference %s from the registry cache (%s at %s)",
                model,
                version,
                found.profile_id,
                provenance.model_uri,
                provenance.tracking_uri,
            )
            self._submit(key, fetch, provenance.sha256)  # is it still the registry's?
            return found
        with self._lock:
            self._fetches[key] = fetch
        self._submit(key, fetch, None)
        # While an earlier fetch is still unanswered past wait_s, the registry is silent:
        # waiting again for each new version would stall the loop wait_s per version.
        self._unanswered = [f for f in self._unanswered if not f.first_answer.is_set()]
        silent = bool(self._unanswered)
        fetch.first_answer.wait(0.0 if silent else self.settings.wait_s)
        with self._lock:
            fetch.handed_over = True
            profile = fetch.profile
        if profile is None and not fetch.first_answer.is_set():
            self._unanswered.append(fetch)
            log.warning(
                "%s/%s: the registry at %s has not answered %s: warming up on live traffic "
                "meanwhile; its profile replaces the warm-up when it arrives",
                model,
                version,
                self.settings.tracking_uri,
                "an earlier fetch yet, so not waited for"
                if silent
                else f"within {self.settings.wait_s:g} s (registry.wait_s)",
            )
        return profile

    def arrived(self, model: str, version: str) -> ReferenceProfile | None:
        """A profile that came after `load` answered (late fetch, changed artifact), once."""
        if (model, version) not in self._arrived:  # the loop's common case: no lock
            return None
        with self._lock:
            return self._arrived.pop((model, version), None)

    def provenance(self, profile_id: str) -> Provenance | None:
        """Where a profile this registry gave came from (None: not one of its profiles)."""
        return self._provenance.get(profile_id)

    def settle(self, timeout_s: float) -> bool:
        """Wait for the fetches and checks begun so far; True when all have ended."""
        return not wait(list(self._running), timeout=timeout_s).not_done

    def close(self) -> None:
        """Stop retrying; a request in flight ends within ``timeout_s``. Idempotent."""
        self._stop.set()
        self._workers.shutdown(wait=False, cancel_futures=True)

    def _submit(self, key: tuple[str, str], fetch: _Fetch, cached_sha: str | None) -> None:
        if not self._stop.is_set():
            self._running = [f for f in self._running if not f.done()]
            self._running.append(self._workers.submit(self._fetch_safely, key, fetch, cached_sha))

    def _fetch_safely(self, key: tuple[str, str], fetch: _Fetch, cached_sha: str | None) -> None:
        # A worker's failure is logged, never raised: the version keeps what it has.
        try:
            self._fetch_with_retries(key, fetch, cached_sha)
        except Exception:
            log.exception("%s/%s: fetching its profile from the registry failed", *key)
        finally:
            fetch.first_answer.set()

    def _remember(self, profile: ReferenceProfile, provenance: Provenance) -> None:
        self._provenance[profile.profile_id] = provenance

    def _fetch_with_retries(
        self, key: tuple[str, str], fetch: _Fetch, cached_sha: str | None
    ) -> None:
        model, version = key
        model_uri = f"models:/{model}/{version}"
        for attempt in range(self.settings.retries + 1):
            if self._stop.is_set():
                return
            try:
                data, provenance = self._fetch(model, version)
                profile = self._profile(data, provenance, model, version)
            except RegistryError as exc:
                fetch.first_answer.set()
                if exc.missing:
                    if cached_sha is None:
                        log.info(
                            "%s/%s has no reference profile in the registry (%s) nor a "
                            "profile file: it warms up on live traffic",
                            model,
                            version,
                            exc,
                        )
                    else:
                        log.warning(
                            "%s/%s: the registry no longer has its profile (%s); keeping the "
                            "cached one",
                            model,
                            version,
                            exc,
                        )
                    return
                if not exc.retriable:
                    log.error("%s/%s: cannot fetch its profile from %s: %s", *key, model_uri, exc)
                    return
                pause = min(self.settings.retry_backoff_s * 2**attempt, MAX_BACKOFF_S)
                left = self.settings.retries - attempt
                log.warning(
                    "%s/%s: registry unreachable (%s); %s",
                    model,
                    version,
                    exc,
                    f"retrying in {pause:g} s ({left} attempts left)"
                    if left
                    else "giving up: it stays on "
                    + ("its cached profile" if cached_sha else "its warm-up reference"),
                )
                if left:
                    self._stop.wait(pause)
                continue
            except ProfileError as exc:
                fetch.first_answer.set()
                log.error("%s/%s: the registry's profile is unusable: %s", model, version, exc)
                return
            self._cache.write(model, version, data, provenance)
            self._remember(profile, provenance)
            self._hand_over(key, fetch, profile, provenance, cached_sha)
            return

    def _fetch(self, model: str, version: str) -> tuple[bytes, Provenance]:
        client, path = self._client, self.settings.artifact_path
        found = client.model_version(model, version)
        model_uri = f"models:/{model}/{version}"
        if not found.run_id:
            raise RegistryError(
                f"{model_uri} was registered without a run, so it has no run artifacts to hold "
                f"{path}",
                retriable=False,
                status=404,
            )
        root = client.run_artifact_uri(found.run_id)
        data = client.download(root, path)
        provenance = Provenance(
            registry="mlflow",
            tracking_uri=self.settings.tracking_uri,
            model_uri=model_uri,
            run_id=found.run_id,
            artifact_uri=f"{root.rstrip('/')}/{path}",
            sha256=hashlib.sha256(data).hexdigest(),
        )
        return data, provenance

    def _profile(
        self, data: bytes, provenance: Provenance, model: str, version: str
    ) -> ReferenceProfile:
        source = provenance.artifact_uri
        profile = supported(ReferenceProfile.from_bytes(data, source=source), source)
        if (profile.model, profile.model_version) != (model, version):
            raise ProfileError(
                f"{source}: a profile of {profile.model}/{profile.model_version}, logged to "
                f"{provenance.model_uri}: build it with --model {model} --version {version}"
            )
        return profile

    def _hand_over(
        self,
        key: tuple[str, str],
        fetch: _Fetch,
        profile: ReferenceProfile,
        provenance: Provenance,
        cached_sha: str | None,
    ) -> None:
        model, version = key
        if cached_sha == provenance.sha256:
            log.debug("%s/%s: cached profile is still the registry's", model, version)
            return
        with self._lock:
            late = fetch.handed_over
            fetch.profile = profile
            if late:
                self._arrived[key] = profile
        fetch.first_answer.set()
        if cached_sha is not None:
            log.warning(
                "%s/%s: the registry's profile changed (artifact sha256 %s, was %s): monitored "
                "against reference %s from now on",
                model,
                version,
                provenance.sha256[:16],
                cached_sha[:16],
                profile.profile_id,
            )
            return
        log.info(
            "%s/%s: reference %s from %s at %s (%s)%s",
            model,
            version,
            profile.profile_id,
            provenance.model_uri,
            provenance.tracking_uri,
            provenance.artifact_uri,
            "; it replaces the warm-up" if late else "",
        )


class ProfileCache:
    """Fetched profiles on disk: ``<key>.npz`` (the artifact's bytes) beside ``<key>.json``
    (where they came from and their SHA-256, checked on every read)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _paths(self, model: str, version: str) -> tuple[Path, Path]:
        # Names of models and versions are the producers' text: never a path of their own.
        key = hashlib.sha256(f"{model}\x1f{version}".encode()).hexdigest()[:32]
        return self.directory / f"{key}.npz", self.directory / f"{key}.json"

    def read(self, model: str, version: str) -> tuple[ReferenceProfile, Provenance] | None:
        data_path, meta_path = self._paths(model, version)
        try:
            meta = json.loads(meta_path.read_text())
            data = data_path.read_bytes()
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: unreadable registry cache entry (%s): fetching again", meta_path, exc)
            return None
        try:
            provenance = Provenance(**meta["provenance"])
            if (meta["model"], meta["version"]) != (model, version):
                raise ValueError(f"it holds {meta['model']}/{meta['version']}")
            if hashlib.sha256(data).hexdigest() != provenance.sha256:
                raise ValueError("its bytes do not match their sha256")
            profile = supported(ReferenceProfile.from_bytes(data, str(data_path)), str(data_path))
        except (KeyError, TypeError, ValueError, ProfileError) as exc:
            log.warning("%s: registry cache entry not used (%s): fetching again", meta_path, exc)
            return None
        return profile, provenance

    def write(self, model: str, version: str, data: bytes, provenance: Provenance) -> None:
        """Atomically, bytes first: a reader finds a whole entry or none. A cache that
        cannot be written is logged, never fatal: the profile is used all the same."""
        data_path, meta_path = self._paths(model, version)
        meta = {"model": model, "version": version, "provenance": asdict(provenance)}
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            replace_atomically(data_path, data)
            replace_atomically(meta_path, json.dumps(meta, indent=1).encode())
        except OSError as exc:
            log.warning(
                "%s: cannot cache %s/%s's profile (%s)", self.directory, model, version, exc
            )


def log_profile(client: MlflowClient, profile: ReferenceProfile, artifact_path: str) -> Provenance:
    """Store ``profile`` as artifact ``artifact_path`` of its registered version's run (the
    model version ``models:/<profile.model>/<profile.model_version>``)."""
    model, version = profile.model, profile.model_version
    found = client.model_version(model, version)
    if not found.run_id:
        raise RegistryError(
            f"models:/{model}/{version} was registered without a run: there is no run to log "
            "its profile to",
            retriable=False,
        )
    root = client.run_artifact_uri(found.run_id)
    data = profile.to_bytes()
    client.upload(root, artifact_path, data)
    return Provenance(
        registry="mlflow",
        tracking_uri=client.tracking_uri,
        model_uri=f"models:/{model}/{version}",
        run_id=found.run_id,
        artifact_uri=f"{root.rstrip('/')}/{artifact_path}",
        sha256=hashlib.sha256(data).hexdigest(),
    )


def registry_references(config: Config) -> RegistryReferences | None:
    """The configured registry (``[registry]``), or None."""
    settings = config.registry
    if settings is None:
        return None
    return RegistryReferences(settings, settings.cache_dir or config.state_dir / "registry")


def references_loader(config: Config, registry: RegistryReferences | None) -> ProfileLoader:
    """A version's profile file if it has one (explicit files win), else the registry's."""
    files = profile_loader(config)
    if registry is None:
        return files

    def load(model: str, version: str) -> ReferenceProfile | None:
        profile = files(model, version)
        return profile if profile is not None else registry.load(model, version)

    return load


__all__ = [
    "ProfileCache",
    "RegistryReferences",
    "log_profile",
    "references_loader",
    "registry_references",
]
