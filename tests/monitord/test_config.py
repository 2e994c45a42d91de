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


def test_environment_overrides_every_key_nested_with_two_underscores() -> None:
    file = {
        "kafka": {"group_id": "from-file"},
        "models": [{"name": "m", "retrain_schedule": "@daily"}, {"name": "n"}],
    }
    config = parse_config(
        file,
        environ={
            "MONITORD_KAFKA__BOOTSTRAP_SERVERS": "kafka-0:9092,kafka-1:9092",
            "MONITORD_KAFKA__GROUP_ID": "123",  # a text key takes the value verbatim
            "MONITORD_KAFKA__INPUT_TOPICS": '["a", "b"]',  # others read it as TOML
            "MONITORD_KAFKA__CONSUMER__MAX_POLL_RECORDS": "5000",
            "MONITORD_DETECTION__CHANGE_DETECTION": "false",
            "MONITORD_DETECTION__FALSE_ALARM_BUDGET_EVENTS": "2e6",
            "MONITORD_ALERTS__LABELS": '{ team = "ml" }',
            "MONITORD_STATE_DIR": "/var/lib/monitord",
            "MONITORD_MODELS__1__RETRAIN_SCHEDULE": "0 3 * * 1-5",
            "MONITORD_MODELS__1__DETECTION__WINDOW_SIZE": "2000",
            "MONITORD_CONFIG": "/etc/monitord/config.toml",  # the file, not a key
        },
    )
    assert config.kafka.bootstrap_servers == "kafka-0:9092,kafka-1:9092"
    assert config.kafka.group_id == "123"
    assert config.kafka.input_topics == ("a", "b")
    assert config.kafka.consumer.max_poll_records == 5000
    assert config.detection.change_detection is False
    assert config.detection.false_alarm_budget_events == 2e6
    assert config.alerts.labels == {"team": "ml"}
    assert config.state_dir == Path("/var/lib/monitord")
    assert [m.retrain_schedule for m in config.models] == ["@daily", "0 3 * * 1-5"]
    assert config.detection_for("n").window_size == 2000
    assert config.detection_for("n").change_detection is False  # merged over [detection]
    assert config.from_environment["kafka.consumer.max_poll_records"] == (
        "MONITORD_KAFKA__CONSUMER__MAX_POLL_RECORDS"
    )
    assert "config" not in config.from_environment


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"MONITORD_KAFKA__BOOTSTRAP_SERVER": "k:9092"},
            "kafka.bootstrap_server: unknown key; allowed keys here: alert_topic, "
            "auto_offset_reset, bootstrap_servers",
            id="unknown-key",
        ),
        pytest.param(
            {"MONITORD_KAFAK__GROUP_ID": "g"}, "kafak: unknown key; allowed keys", id="section"
        ),
        pytest.param(
            {"MONITORD_KAFKA_GROUP_ID": "g"}, "kafka_group_id: unknown key", id="one-underscore"
        ),
        pytest.param(
            {"MONITORD_DETECTION__WINDOW_SIZE": "many"},
            "detection.window_size: Input should be a valid integer",
            id="value",
        ),
        pytest.param(
            {"MONITORD_MODELS__2__RETRAIN_SCHEDULE": "@daily"},
            "models has 1 entry in the config file, so '2' names none",
            id="no-such-entry",
        ),
        pytest.param(
            {"MONITORD_KAFKA__SASL_PASSWORD": "hunter2"},
            "kafka.sasl_password is a secret; set it in MONITORD_KAFKA_SASL_PASSWORD instead",
            id="secret",
        ),
        pytest.param(
            {"MONITORD_KAFKA___GROUP_ID": "g"}, "an empty key; separate nested keys", id="empty"
        ),
    ],
)
def test_a_wrong_variable_fails_naming_it(environ: dict[str, str], expected: str) -> None:
    (variable,) = environ
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": [{"name": "m"}]}, environ=environ)
    message = str(caught.value)
    assert expected in message
    assert variable in message
    assert "hunter2" not in message


def test_variables_a_config_names_as_secrets_are_not_keys() -> None:
    receiver = {
        "name": "hook",
        "type": "webhook",
        "url": "https://hooks.example/x",
        "secret_env": "MONITORD_WEBHOOK_KEY",
    }
    environ = {"MONITORD_WEBHOOK_KEY": "k" * 32, "MONITORD_KAFKA_SASL_PASSWORD": "pw"}
    parse_config({"receivers": [receiver]}, environ=environ)
    with pytest.raises(ConfigError, match="MONITORD_WEBHOOK_KEY"):
        parse_config({}, environ=environ)  # no receiver names it: a typo of a key?
    # A receiver given by the environment names its secret too.
    inline = "[{ " + ", ".join(f'{k} = "{v}"' for k, v in receiver.items()) + " }]"
    config = parse_config({}, environ={**environ, "MONITORD_RECEIVERS": inline})
    assert config.receivers[0].secret_variable == "MONITORD_WEBHOOK_KEY"


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"detection": {"window_size": 1}, "kafka": {"group_idd": "g"}},
            environ={"MONITORD_NOPE": "1", "MONITORD_ADMIN__PORT": "-1"},
        )
    lines = str(caught.value).splitlines()
    assert len(lines) == 4, lines
    for key in ("MONITORD_NOPE", "detection.window_size", "kafka.group_idd", "admin.port"):
        assert any(key in line for line in lines), (key, lines)


def test_model_sections_are_merged_over_the_global_ones_key_by_key() -> None:
    config = parse_config(
        {
            "detection": {"window_size": 1000, "psi_bins": 20, "window_seconds": 600.0},
            "policy": {"retrain_daily_cap": 3, "retrain_min_events": 500},
            "models": [
                {
                    "name": "m",
                    "detection": {"window_size": 2000},
                    "policy": {"retrain_min_events": 0},
                },
                {"name": "n"},
            ],
        }
    )
    detection, policy = config.detection_for("m"), config.policy_for("m")
    assert (detection.window_size, detection.psi_bins, detection.window_seconds) == (
        2000,
        20,
        600.0,
    )
    assert (policy.retrain_daily_cap, policy.retrain_min_events) == (3, 0)
    assert config.detection_for("n") == config.detection
    assert config.policy_for("n") == config.policy
    # Checks across keys see the merged section: a model's step beyond the global size.
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "detection": {"window_size": 100},
                "models": [{"name": "m", "detection": {"window_step": 200}}],
            }
        )
    assert (
        "models.0.detection: Value error, window_step (200) must not exceed window_size (100)"
        in str(caught.value)
    )
    # A wrong global key is said once, not again for every model that inherits it.
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "detection": {"psi_bins": 1},
                "models": [
                    {"name": "m", "detection": {"psi_bins": 5}},
                    {"name": "n", "detection": {}},
                ],
            }
        )
    assert str(caught.value).count("psi_bins") == 1, str(caught.value)


def test_relative_paths_are_the_config_files_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "config.toml").write_text(
        'state_dir = "state"\nprofile_dir = "profiles"\n'
        '[outputs]\njsonl_path = "out/outputs.jsonl"\n'
        '[[models]]\nname = "m"\nprofiles = { "7" = "profiles/m@7.npz", "8" = "/abs/m@8.npz" }\n'
        '[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "https://h.example/x"\n'
        'secret_env = "HOOK_KEY"\nca_file = "pki/ca.pem"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path("../etc/config.toml"), environ={})
    assert config.state_dir == etc / "state"
    assert config.profile_dir == etc / "profiles"
    assert config.outputs.jsonl_path == etc / "out" / "outputs.jsonl"
    assert config.models[0].profiles == {
        "7": etc / "profiles" / "m@7.npz",
        "8": Path("/abs/m@8.npz"),
    }
    assert config.receivers[0].ca_file == etc / "pki" / "ca.pem"
    # The default state_dir too: beside the file, not in the working directory.
    (etc / "defaults.toml").write_text("")
    assert load_config(etc / "defaults.toml", environ={}).state_dir == etc / ".monitord"
    # A path from the environment is the shell's: relative to the working directory.
    from_env = load_config(etc / "config.toml", environ={"MONITORD_STATE_DIR": "here"})
    assert from_env.state_dir == elsewhere / "here"
    # Where the file lies decides nothing: the lineage's config hash is the same.
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "config.toml").write_text((etc / "config.toml").read_text())
    assert load_config(moved / "config.toml", environ={}).config_hash == config.config_hash
