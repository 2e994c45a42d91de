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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from connectors.http import Receiver
from connectors.tls import TlsFileError
from detectors.profile import ProfileError
from monitord.config import Config, ConfigError
from monitord.delivery import build_receivers
from monitord.metrics import check_cardinality
from monitord.reference import load_profile
from monitord.service import kafka_security


@dataclass(frozen=True)
class Preflight:
    """What the checks built on the way: the receivers' connectors and the metric series
    the configured profiles need."""

    receivers: Mapping[str, Receiver]
    feature_series: int


def preflight(config: Config, environ: Mapping[str, str] | None = None) -> Preflight:
    """Run every startup check that needs no broker; raise `ConfigError` naming the key."""
    environ = os.environ if environ is None else environ
    try:
        kafka_security(config).ssl_context()
    except TlsFileError as exc:
        key = {"ca_file": "ssl_cafile", "cert_file": "ssl_certfile", "key_file": "ssl_keyfile"}
        raise ConfigError(f"kafka.{key[exc.parameter]}: {exc.reason}") from None
    receivers = build_receivers(config.receivers, environ)  # their TLS files too
    for i, model in enumerate(config.models):
        for version, path in model.profiles.items():
            try:
                load_profile(path)
            except ProfileError as exc:
                raise ConfigError(f"models.{i}.profiles.{version}: {exc}") from None
    try:
        series = check_cardinality(config)  # also loads every profile in profile_dir
    except ProfileError as exc:
        raise ConfigError(f"profile_dir: {exc}") from None
    if config.outputs.jsonl_path is not None:
        _writable_file(config.outputs.jsonl_path, "outputs.jsonl_path")
    _writable_directory(config.state_dir, "state_dir")
    _registry(config, environ)
    return Preflight(receivers, series)


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
