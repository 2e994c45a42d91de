"""The configuration as a hostile user or an unlucky operator writes it: environment values
that look like TOML and are not, huge ones, keys spelled in another case, files that cannot
be read. Each must end in a `ConfigError` naming the key or variable, never a traceback, and
never a value silently dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pytest
from pydantic import BaseModel

from monitord.config import Config, ConfigError, load_config, parse_config

HUGE_INTEGER = "9" * 5000  # past int()'s 4,300 digits: a ValueError of its own, not TOML's


def test_a_huge_integer_in_a_variable_is_a_config_error_of_bounded_length() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({}, environ={"MONITORD_DETECTION__WINDOW_SIZE": HUGE_INTEGER})
    message = str(caught.value)
    assert "detection.window_size" in message
    assert "MONITORD_DETECTION__WINDOW_SIZE" in message
    assert len(message) < 1000  # the value is not repeated whole


def test_a_huge_integer_in_the_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[detection]\nwindow_size = {HUGE_INTEGER}\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})


def test_a_file_not_in_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'state_dir = "caf\xe9"\n')  # Latin-1
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})


def test_a_config_file_that_cannot_be_read_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.symlink_to(path)  # a loop: reading fails with ELOOP, for root too
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("variable", "text"),
    [
        ("MONITORD_DETECTION__WINDOW_SIZE", "1000\nwindow_step = 5"),
        ("MONITORD_DETECTION", "{}\n[kafka]\ngroup_id = 'stolen'"),
        ("MONITORD_KAFKA__INPUT_TOPICS", '["a"]\nbootstrap_servers = "evil:9092"'),
    ],
)
def test_a_variable_holding_more_than_one_toml_value_is_refused(variable: str, text: str) -> None:
    # Read as "value = <text>", these parse as a document of two keys; the second was dropped.
    with pytest.raises(ConfigError) as caught:
        parse_config({}, environ={variable: text})
    assert variable in str(caught.value)


def test_a_multiline_toml_array_in_a_variable_is_one_value() -> None:
    config = parse_config({}, environ={"MONITORD_KAFKA__INPUT_TOPICS": '[\n  "a",\n  "b",\n]'})
    assert config.kafka.input_topics == ("a", "b")


def test_a_variable_replaces_a_mixed_case_key_of_the_file(tmp_path: Path) -> None:
    # Model versions are the producers' names, in any case; the variable's name is not.
    data = {"models": [{"name": "m", "profiles": {"V7": "old.npz"}}]}
    config = parse_config(
        data, environ={"MONITORD_MODELS__0__PROFILES__V7": str(tmp_path / "new.npz")}
    )
    assert config.models[0].profiles == {"V7": tmp_path / "new.npz"}


def test_an_entry_past_the_end_of_an_array_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {"models": [{"name": "m"}]},
            environ={"MONITORD_MODELS__99__RETRAIN_SCHEDULE": "@daily"},
        )
    message = str(caught.value)
    assert "MONITORD_MODELS__99__RETRAIN_SCHEDULE" in message
    assert "models has 1 entry" in message


def test_a_secret_cannot_be_set_through_a_key_path() -> None:
    with pytest.raises(ConfigError, match="MONITORD_KAFKA_SASL_PASSWORD instead"):
        parse_config({}, environ={"MONITORD_KAFKA__SASL_PASSWORD": "hunter2"})


def test_a_time_zone_that_is_a_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="not an IANA time zone"):
        parse_config(
            {"models": [{"name": "m", "retrain_schedule": "@daily"}]},
            environ={"MONITORD_MODELS__0__RETRAIN_SCHEDULE_TIMEZONE": "../../etc/passwd"},
        )


@pytest.mark.parametrize("name", ["localtime", "posixrules"])
def test_a_time_zone_that_is_the_machines_own_is_refused(name: str) -> None:
    # Files in the zoneinfo directory, not IANA names: the schedule would follow the host.
    with pytest.raises(ConfigError, match="not an IANA time zone"):
        parse_config(
            {"models": [{"name": "m", "retrain_schedule": "@daily"}]},
            environ={"MONITORD_MODELS__0__RETRAIN_SCHEDULE_TIMEZONE": name},
        )


def test_a_symlinked_config_resolves_paths_beside_the_link(tmp_path: Path) -> None:
    # A Kubernetes ConfigMap: the file is a link into a dated directory that is replaced.
    dated = tmp_path / "..2026_12_05"
    dated.mkdir()
    (dated / "config.toml").write_text('state_dir = "state"\n')
    mounted = tmp_path / "etc"
    mounted.mkdir()
    (mounted / "config.toml").symlink_to(dated / "config.toml")
    config = load_config(mounted / "config.toml", environ={})
    assert config.state_dir == mounted / "state"


def test_a_relative_path_of_the_environment_is_the_working_directorys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "config.toml"
    path.write_text('state_dir = "state"\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(path, environ={"MONITORD_STATE_DIR": "elsewhere"})
    assert config.state_dir == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("data", "environ", "key"),
    [
        ({"state_dir": "st\x00ate"}, {}, "state_dir"),  # TOML can write "\u0000"
        ({}, {"MONITORD_KAFKA__GROUP_ID": "g\x1b[31mred"}, "kafka.group_id"),
        ({}, {"MONITORD_KAFKA__INPUT_TOPICS": '["a\\u0007"]'}, "kafka.input_topics.0"),
        ({"models": [{"name": "m", "profiles": {"v\x01": "p.npz"}}]}, {}, "models.0.profiles"),
    ],
)
def test_a_control_character_in_a_setting_is_refused(
    data: dict[str, object], environ: dict[str, str], key: str
) -> None:
    # A NUL in state_dir passed `monitord check` (Path.exists says False to it) and crashed
    # `run`; an escape sequence would be written into every log line naming the group.
    with pytest.raises(ConfigError, match="control character") as caught:
        parse_config(data, environ=environ)
    assert f"  {key}: " in str(caught.value)


def test_tabs_and_line_breaks_are_text() -> None:
    config = parse_config({}, environ={"MONITORD_KAFKA__GROUP_ID": "a\tb"})
    assert config.kafka.group_id == "a\tb"


def test_a_profile_file_of_another_model_is_refused_by_check(tmp_path: Path) -> None:
    from monitord.preflight import preflight  # noqa: PLC0415
    from monitord.reference import (  # noqa: PLC0415
        profile_from_rows,
        profile_loader,
        save_profile,
    )

    rows: list[dict[str, object]] = [{"x": float(i % 17)} for i in range(300)]
    save_profile(profile_from_rows(rows, "other", "v2"), tmp_path / "other.npz")
    config = parse_config(
        {
            "state_dir": str(tmp_path / "state"),
            "models": [{"name": "fraud", "profiles": {"v1": str(tmp_path / "other.npz")}}],
        },
        environ={},
    )
    with pytest.raises(ConfigError, match="other/v2"):
        preflight(config, environ={})
    # A profile_dir file named for another version than it holds: refused too.
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (tmp_path / "other.npz").rename(profiles / "fraud@v1.npz")
    config = parse_config(
        {"state_dir": str(tmp_path / "state"), "profile_dir": str(profiles)}, environ={}
    )
    with pytest.raises(ConfigError, match=r"profile_dir: .* holds the profile of other/v2"):
        preflight(config, environ={})
    # Put there while the daemon runs: that version warms up, said in the log.
    assert profile_loader(config)("fraud", "v1") is None
    assert profile_loader(config)("other", "v2") is None  # no such file


def float_settings(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[str]:
    """The key paths of every float setting (outside [[models]] and receivers' unions)."""
    for name, field in model.model_fields.items():
        for member in get_args(field.annotation) or (field.annotation,):
            if isinstance(member, type) and issubclass(member, BaseModel):
                yield from float_settings(member, (*prefix, name))
            elif member is float:
                yield ".".join((*prefix, name))


@pytest.mark.parametrize(
    "key", sorted({key for key in float_settings(Config) if not key.startswith("models.")})
)
@pytest.mark.parametrize("text", ["inf", "-inf", "nan"])
def test_an_infinite_setting_is_refused(key: str, text: str) -> None:
    # "inf" is a TOML float: it passed gt=0 and then overflowed threading.Timer at shutdown
    # (shutdown.grace_s); no setting means "never" by infinity (None is "off").
    variable = "MONITORD_" + key.upper().replace(".", "__")
    data = {"registry": {"tracking_uri": "http://127.0.0.1:5000"}}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, environ={variable: text})
    assert f"{key}: " in str(caught.value)
    assert variable in str(caught.value)


def test_a_secret_variable_that_is_a_settings_variable_is_refused() -> None:
    # Before: state_dir silently stayed the default, and the webhook's key was a path.
    receiver = {"type": "webhook", "name": "w", "url": "https://example.com/h"}
    data = {"receivers": [{**receiver, "secret_env": "MONITORD_STATE_DIR"}]}
    with pytest.raises(ConfigError, match="MONITORD_STATE_DIR is named by a \\*_env key"):
        parse_config(data, environ={"MONITORD_STATE_DIR": "/srv/monitord"})


def test_check_lists_validation_and_preflight_problems_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitord.cli import main  # noqa: PLC0415

    monkeypatch.delenv("I17_UNSET_SECRET", raising=False)
    path = tmp_path / "config.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        "[[models]]\n"
        'name = "m"\n'
        'retrain_schedule = "*/0 * * * *"\n'
        'profiles = { v1 = "missing.npz" }\n'
        "[[receivers]]\n"
        'type = "webhook"\n'
        'name = "w"\n'
        'url = "https://example.com/hook"\n'
        'secret_env = "I17_UNSET_SECRET"\n'
    )
    assert main(["check", "--config", str(path)]) != 0
    said = capsys.readouterr().err
    assert "models.0.retrain_schedule" in said
    assert "I17_UNSET_SECRET" in said
    assert "models.0.profiles.v1" in said
