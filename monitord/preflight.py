"""Every check `monitord run` makes before it touches the network; `monitord check` makes
the same ones, so a config that passes `check` does not fail `run` for a knowable reason.

Beyond what the config's own validation sees (keys, types, ranges, topics), these read the
environment and the disk: receiver secrets set and accepted by their connectors (URLs,
HMAC key length), TLS CA, certificate and key files readable and usable (Kafka's and each
receiver's), reference profiles present and loadable, the metric series they need within
the cap, the JSON-lines output and `state_dir` writable. Each refusal is a
`ConfigError` naming the key at fault.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from connectors.http import Receiver
from connectors.tls import TlsFileError
from detectors.profile import ProfileError, ReferenceProfile
from monitord.config import Config, ConfigError
from monitord.delivery import build_receivers
from monitord.metrics import check_cardinality
from monitord.reference import load_profile, profile_for
from monitord.service import kafka_security


@dataclass(frozen=True)
class Preflight:
    """What the checks built on the way: the receivers' connectors and the metric series
    the configured profiles need."""

    receivers: Mapping[str, Receiver]
    feature_series: int


def preflight(config: Config, environ: Mapping[str, str] | None = None) -> Preflight:
    """Run every startup check that needs no broker; one `ConfigError` listing every
    problem found, each naming its key, so one round of fixes is enough."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []

    def check(step: Callable[[], object]) -> None:
        try:
            step()
        except ConfigError as exc:
            problems.extend(line.strip() for line in str(exc).splitlines())

    check(lambda: _kafka_tls(config))
    receivers: dict[str, Receiver] = {}
    check(lambda: receivers.update(build_receivers(config.receivers, environ)))  # TLS too
    profiles_loaded = _load_profiles(config, problems)
    series = 0
    if profiles_loaded:  # the series count loads them again; a broken one is said above

        def count() -> None:
            nonlocal series
            series = check_cardinality(config)

        check(count)
    if config.outputs.jsonl_path is not None:
        path = config.outputs.jsonl_path
        check(lambda: _writable_file(path, "outputs.jsonl_path"))
    check(lambda: _writable_directory(config.state_dir, "state_dir"))
    check(lambda: _registry(config, environ))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise ConfigError(f"{len(problems)} problems, each stops `monitord run`:\n{listed}")
    return Preflight(receivers, series)


def _kafka_tls(config: Config) -> None:
    try:
        kafka_security(config).ssl_context()
    except TlsFileError as exc:
        key = {"ca_file": "ssl_cafile", "cert_file": "ssl_certfile", "key_file": "ssl_keyfile"}
        raise ConfigError(f"kafka.{key[exc.parameter]}: {exc.reason}") from None


def _load_profiles(config: Config, problems: list[str]) -> bool:
    """Load every configured profile (each model's, every file in profile_dir); False
    (and the problems added) when one cannot be used."""
    before = len(problems)
    for i, model in enumerate(config.models):
        for version, path in model.profiles.items():
            try:
                profile_for(path, model.name, version)
            except ProfileError as exc:
                problems.append(f"models.{i}.profiles.{version}: {exc}")
    profile_dir = config.profile_dir
    if profile_dir is not None and not profile_dir.is_dir():
        problems.append(f"profile_dir: {profile_dir} is not a directory")
    elif profile_dir is not None:
        for path in sorted(profile_dir.glob("*@*.npz")):
            try:
                profile = load_profile(path)
                # Found by its name: it must be the profile of the version it is named for.
                profile_for(path, *_named(path, profile))
            except ProfileError as exc:
                problems.append(f"profile_dir: {exc}")
    return len(problems) == before


def _named(path: Path, profile: ReferenceProfile) -> tuple[str, str]:
    """The model and version a profile_dir file is named for (``model@version.npz``), read
    as the profile's own where its name is theirs (a name may hold an @)."""
    if path.name == f"{profile.model}@{profile.model_version}.npz":
        return profile.model, profile.model_version
    model, _, version = path.name.removesuffix(".npz").rpartition("@")
    return model, version


def _registry(config: Config, environ: Mapping[str, str]) -> None:
    registry = config.registry
    if registry is None:
        return
    if registry.token_env is not None and not environ.get(registry.token_env):
        raise ConfigError(
            f"registry.token_env: the environment variable {registry.token_env} is not set "
            "(it holds the tracking server's bearer token)"
        )
    cache = registry.cache_dir or config.state_dir / "registry"
    _writable_directory(cache, "registry.cache_dir")


def _writable_file(path: Path, key: str) -> None:
    if path.is_dir():
        raise ConfigError(f"{key}: {path} is a directory; name a file to append to")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ConfigError(f"{key}: {path} is not writable by this user")
        return
    _writable_directory(path.parent, key)


def _writable_directory(path: Path, key: str) -> None:
    """``path`` is a writable directory, or can be created as one (nothing is created)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}: {existing} is not a directory, so {path} cannot be one")
    if not os.access(existing, os.W_OK | os.X_OK):
        action = "write to" if existing == path else f"create {path} in"
        raise ConfigError(f"{key}: cannot {action} {existing} (permission denied)")


__all__ = ["Preflight", "preflight"]
