"""The ``[registry]`` section: validated at startup with the key at fault named, and checked
by `monitord check` (token variable set, cache directory writable)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitord.config import ConfigError, parse_config
from monitord.preflight import preflight


def registry(**settings: object) -> dict[str, object]:
    return {"registry": {"tracking_uri": "http://127.0.0.1:5000", **settings}}


def test_the_registry_is_off_by_default() -> None:
    assert parse_config({}, environ={}).registry is None


def test_defaults_name_the_profile_artifact_and_bound_every_wait() -> None:
    settings = parse_config(registry(), environ={}).registry
    assert settings is not None
    assert settings.type == "mlflow"
    assert settings.artifact_path == "monitord/profile.npz"
    assert (settings.timeout_s, settings.wait_s, settings.retries) == (5.0, 5.0, 5)
    assert settings.cache_dir is None  # <state_dir>/registry


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tracking_uri": "mlflow:5000"}, "registry.tracking_uri: Value error, 'mlflow:5000' is"),
        ({"tracking_uri": "file:///mlruns"}, "is not an http(s) URL"),
        ({"tracking_uri": "https://u:p@mlflow"}, "registry.tracking_uri: Value error, credentials"),
        ({"tracking_uri": "https://mlflow/?token=t"}, "put a token in token_env"),
        ({"type": "sagemaker"}, "registry.type: Input should be 'mlflow'"),
        ({"artifact_path": "/etc/passwd"}, "registry.artifact_path: Value error, '/etc/passwd'"),
        ({"artifact_path": "a/../b.npz"}, "write a path inside the run's artifacts"),
        ({"timeout_s": 0}, "registry.timeout_s: Input should be greater than 0"),
        ({"retries": -1}, "registry.retries: Input should be greater than or equal to 0"),
        ({"wait": 3}, "registry.wait: unknown key; allowed keys here: artifact_path, cache_dir"),
    ],
)
def test_a_wrong_registry_setting_names_its_key(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(registry(**settings), environ={})
    assert message in str(raised.value)


def test_a_missing_tracking_uri_is_named() -> None:
    with pytest.raises(ConfigError, match=r"registry.tracking_uri: Field required"):
        parse_config({"registry": {}}, environ={})


def test_check_refuses_an_unset_token_variable(tmp_path: Path) -> None:
    config = parse_config(
        {**registry(token_env="MLFLOW_TOKEN"), "state_dir": str(tmp_path)}, environ={}
    )
    with pytest.raises(ConfigError, match=r"registry.token_env: .*MLFLOW_TOKEN is not set"):
        preflight(config, environ={})
    preflight(config, environ={"MLFLOW_TOKEN": "t0ken"})


def test_check_refuses_a_cache_directory_it_cannot_create(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = parse_config(
        {**registry(cache_dir=str(blocker / "cache")), "state_dir": str(tmp_path)}, environ={}
    )
    with pytest.raises(ConfigError, match=r"registry.cache_dir: .* is not a directory"):
        preflight(config, environ={})
