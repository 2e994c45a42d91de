from __future__ import annotations

from pathlib import Path

import pytest

from monitord.config import ConfigError, load_config, masked, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO / "config.toml")
    assert config.kafka.input_topics == ("inference-events",)
    assert config.detection.false_alarm_budget_events == 1_000_000


def test_wrong_value_names_key_and_allowed_values() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"kafka": {"auto_offset_reset": "middle"}})
    assert "kafka.auto_offset_reset" in str(caught.value)
    assert "'earliest' or 'latest'" in str(caught.value)


def test_unknown_key_lists_allowed_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"detection": {"window_sise": 100}})
    message = str(caught.value)
    assert "detection.window_sise: unknown key" in message
    assert "window_size" in message


def test_nested_model_key_path() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": [{"name": "m", "detection": {"detectors": ["ks", "t-test"]}}]})
    assert "models.0.detection.detectors.1" in str(caught.value)


def test_window_step_above_size_is_rejected() -> None:
    with pytest.raises(ConfigError, match="window_step"):
        parse_config({"detection": {"window_size": 100, "window_step": 200}})


def test_secret_in_file_is_refused_and_env_is_masked() -> None:
    with pytest.raises(ConfigError, match="MONITORD_KAFKA_SASL_PASSWORD"):
        parse_config({"kafka": {"sasl_password": "hunter2"}})
    config = parse_config({}, environ={"MONITORD_KAFKA_SASL_PASSWORD": "hunter2"})
    assert config.kafka.sasl_password is not None
    assert config.kafka.sasl_password.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(config)
    assert masked(config)["kafka"]["sasl_password"] == "********"


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)


def test_config_hash_is_stable_and_sensitive() -> None:
    assert parse_config({}).config_hash == parse_config({}).config_hash
    assert (
        parse_config({}).config_hash
        != parse_config({"policy": {"retrain_feature_share": 0.5}}).config_hash
    )
    assert (
        parse_config({}).config_hash
        != parse_config({"detection": {"window_size": 2000}}).config_hash
    )


def test_config_hash_ignores_where_the_daemon_runs() -> None:
    # Two replicas, or a daemon and its replay, decide alike: their lineage must agree.
    elsewhere = parse_config(
        {
            "kafka": {"group_id": "other", "alert_topic": "a2"},
            "state_dir": "/var/lib/elsewhere",
            "checkpoint": {"store": "none"},
        }
    )
    assert elsewhere.config_hash == parse_config({}).config_hash
