"""What `monitord check` and `monitord run` refuse before touching the network.

Both run the same checks (`monitord.preflight`), so a config `check` accepts does not fail
`run` at startup for a reason it could have known, and each refusal names the key at fault.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.broker import free_port
from monitord.cli import main


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
