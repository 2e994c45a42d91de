"""What `monitord check` and `monitord run` refuse before touching the network.

Both run the same checks (`monitord.preflight`), so a config `check` accepts does not fail
`run` at startup for a reason it could have known, and each refusal names the key at fault.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.broker import free_port
from monitord.audit import AuditLog
from monitord.cli import main
from monitord.clock import iso


def run_and_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str
) -> dict[str, tuple[int, str]]:
    """Exit code and stderr of `check` and of `run` on the config ``toml``."""
    path = tmp_path / "monitord.toml"
    path.write_text(toml)
    answers = {}
    for command in ("check", "run"):
        code = main([command, "--config", str(path)])
        answers[command] = (code, capsys.readouterr().err)
    return answers


def unreachable() -> str:
    # Were a check left to `run`, it would fail here, on the network, instead.
    return f'bootstrap_servers = "127.0.0.1:{free_port()}"\nconnect_timeout_s = 0.5\n'


@pytest.mark.parametrize(
    ("kafka", "keys"),
    [
        pytest.param(
            'input_topics = ["events"]\ndead_letter_topic = "events"\n',
            ["kafka.dead_letter_topic"],
            id="dead-letter",
        ),
        pytest.param(
            'input_topics = ["a", "events"]\nalert_topic = "events"\ntrigger_topic = "a"\n',
            ["kafka.alert_topic", "kafka.trigger_topic"],
            id="alerts-and-triggers",
        ),
        pytest.param("input_topics = []\n", ["kafka.input_topics"], id="no-input"),
        pytest.param('input_topics = ["in put"]\n', ["kafka.input_topics.0"], id="topic-name"),
    ],
)
def test_output_topics_that_are_inputs_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kafka: str, keys: list[str]
) -> None:
    answers = run_and_check(tmp_path, capsys, f"[kafka]\n{kafka}{unreachable()}")
    for command, (code, err) in answers.items():
        assert code == 2, command
        for key in keys:
            assert key in err, (command, err)
        assert "Traceback" not in err


@pytest.mark.parametrize(
    "bootstrap", ["", "kafka-0:abc", "kafka-0:9092/path", "kafka-0:99999", "kafka-0:9092,,:1"]
)
def test_a_malformed_bootstrap_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bootstrap: str
) -> None:
    answers = run_and_check(tmp_path, capsys, f'[kafka]\nbootstrap_servers = "{bootstrap}"\n')
    for command, (code, err) in answers.items():
        assert code == 2, command
        assert "kafka.bootstrap_servers" in err, (command, err)
        assert "Traceback" not in err


WEBHOOK = '[[receivers]]\nname = "hook"\ntype = "webhook"\nurl = "http://127.0.0.1:9/x"\n'


@pytest.mark.parametrize(
    ("toml", "environ", "key"),
    [
        pytest.param(
            WEBHOOK + 'secret_env = "TEST_PREFLIGHT_KEY"\n', {}, "receivers.0.secret_env", id="env"
        ),
        pytest.param(
            WEBHOOK + 'secret_env = "TEST_PREFLIGHT_KEY"\n',
            {"TEST_PREFLIGHT_KEY": "short"},
            "receivers.0",
            id="hmac-key",
        ),
        pytest.param(
            '[[models]]\nname = "m"\nprofiles = { "7" = "{tmp}/missing.npz" }\n',
            {},
            "models.0.profiles.7",
            id="missing-profile",
        ),
        pytest.param(
            '[[models]]\nname = "m"\nprofiles = { "7" = "{tmp}/not-a-profile.npz" }\n',
            {},
            "models.0.profiles.7",
            id="broken-profile",
        ),
        pytest.param('profile_dir = "{tmp}/profiles"\n', {}, "profile_dir", id="profile-dir"),
        pytest.param(
            '[outputs]\njsonl_path = "{tmp}/a-file/out.jsonl"\n',
            {},
            "outputs.jsonl_path",
            id="jsonl-path",
        ),
        pytest.param('state_dir = "{tmp}/a-file/state"\n', {}, "state_dir", id="state-dir"),
    ],
)
def test_check_refuses_what_run_would(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    toml: str,
    environ: dict[str, str],
    key: str,
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "not-a-profile.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "m@7.npz").write_bytes(b"garbage")
    monkeypatch.delenv("TEST_PREFLIGHT_KEY", raising=False)
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    body = toml.replace("{tmp}", str(tmp_path))
    # [kafka] comes last: a table header would capture the top-level keys after it.
    answers = run_and_check(tmp_path, capsys, f"{body}\n[kafka]\n{unreachable()}")
    for command, (code, err) in answers.items():
        assert code == 2, (command, err)
        assert key in err, (command, err)
        assert "Traceback" not in err
        assert "short" not in err  # the secret itself is never repeated


def test_check_lists_every_problem_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_PREFLIGHT_UNSET", raising=False)
    monkeypatch.setenv("TEST_PREFLIGHT_KEY", "short")  # below the HMAC key's 32 bytes
    (tmp_path / "broken.npz").write_bytes(b"garbage")
    toml = (
        'profile_dir = "no-such-dir"\n'
        '[[models]]\nname = "m"\nprofiles = { "7" = "missing.npz", "8" = "broken.npz" }\n'
        + WEBHOOK
        + 'secret_env = "TEST_PREFLIGHT_KEY"\n'
        + '[[receivers]]\nname = "page"\ntype = "pagerduty"\nsecret_env = "TEST_PREFLIGHT_UNSET"\n'
        + f"[kafka]\n{unreachable()}"
    )
    answers = run_and_check(tmp_path, capsys, toml)
    for command, (code, err) in answers.items():
        assert code == 2, (command, err)
        assert "5 problems" in err, (command, err)
        for key in (
            "profile_dir: ",
            "models.0.profiles.7: ",
            "models.0.profiles.8: ",
            "receivers.0 ('hook'): ",
            "receivers.1.secret_env: the environment variable TEST_PREFLIGHT_UNSET is not set",
        ):
            assert f"\n  {key}" in err, (command, key, err)
        assert "short" not in err


def test_alerts_finds_the_audit_log_from_any_directory_and_through_monitord_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    (etc / "state").mkdir(parents=True)
    (etc / "config.toml").write_text(
        'state_dir = "state"\n[[models]]\nname = "m"\nretrain_schedule = "@yearly"\n'
        'retrain_schedule_timezone = "Asia/Tokyo"\n'
    )
    AuditLog(etc / "state" / "audit.sqlite").close()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MONITORD_CONFIG", raising=False)
    assert main(["alerts", "--config", str(etc / "config.toml")]) == 0
    assert capsys.readouterr().out.startswith("0 active alert(s)")
    monkeypatch.setenv("MONITORD_CONFIG", "../etc/config.toml")
    assert main(["alerts"]) == 0
    assert capsys.readouterr().out.startswith("0 active alert(s)")
    monkeypatch.setenv("MONITORD_KAFKA__GROUP_ID", "replicas")
    assert main(["check"]) == 0
    checked = capsys.readouterr()
    assert json.loads(checked.out)["kafka"]["group_id"] == "replicas"
    assert json.loads(checked.out)["state_dir"] == str(etc / "state")
    assert "kafka.group_id is set by MONITORD_KAFKA__GROUP_ID" in checked.err
    assert "../etc/config.toml is valid" in checked.err
    # New Year in Tokyo is 15:00 UTC on 31 December.
    today = datetime.now(UTC)
    new_year = datetime(today.year, 12, 31, 15, tzinfo=UTC)
    if new_year <= today:
        new_year = new_year.replace(year=today.year + 1)
    schedule = "models.0.retrain_schedule of m is '@yearly' (Asia/Tokyo)"
    assert f"{schedule}: next slot {iso(new_year.timestamp())}" in checked.err
    monkeypatch.setenv("MONITORD_CONFIG", "../etc/missing.toml")
    assert main(["check"]) == 2
    assert "../etc/missing.toml: no such config file" in capsys.readouterr().err
