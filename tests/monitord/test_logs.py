from __future__ import annotations

import io
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pytest

from monitord.config import ConfigError, LoggingSettings, parse_config
from monitord.logs import (
    PACKAGES,
    configure_logging,
    redact,
    register_config_secrets,
    register_secret,
)

# Distinctive values: the registry of secrets is process-wide.
SECRET = "s3cr3t-logs-test-5e1f"
TOKEN = "xoxb-logs-test-token-77"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in (*PACKAGES, "kafka")}
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_context_and_exception() -> None:
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    log = logging.getLogger("monitord.daemon")
    before = math.floor(time.time() * 1000) / 1000
    log.info("batch of %d records", 500, extra={"model": "fraud", "partition": 3, "offset": 41})
    try:
        raise ValueError("multi\nline")
    except ValueError:
        logging.getLogger("connectors.kafka").exception(
            "poll failed", extra={"offset": np.int64(7), "lag": float("nan")}
        )
    after = time.time()
    first, second = lines(stream)
    assert set(first) == {"time", "level", "logger", "message", "model", "partition", "offset"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(first["time"]))
    assert before <= datetime.fromisoformat(str(first["time"])).timestamp() <= after
    del first["time"]
    assert first == {
        "level": "info",
        "logger": "monitord.daemon",
        "message": "batch of 500 records",
        "model": "fraud",
        "partition": 3,
        "offset": 41,
    }
    traceback = second.pop("exc_info")
    assert isinstance(traceback, str)
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert traceback.endswith("ValueError: multi\nline")
    del second["time"]
    assert second == {
        "level": "error",
        "logger": "connectors.kafka",
        "message": "poll failed",
        "offset": 7,
        "lag": "nan",
    }


def test_levels_per_package_and_libraries_at_warning() -> None:
    stream = io.StringIO()
    configure_logging("json", "debug", stream)
    logging.getLogger("detectors.adwin").debug("ours at debug")
    logging.getLogger("kafka.conn").info("library chatter")
    logging.getLogger("kafka.conn").warning("library warning")
    assert [(line["logger"], line["message"]) for line in lines(stream)] == [
        ("detectors.adwin", "ours at debug"),
        ("kafka.conn", "library warning"),
    ]
    configure_logging("json", "warning", stream)  # replaces the handler: no line twice
    logging.getLogger("monitord.x").info("dropped")
    logging.getLogger("monitord.x").warning("kept")
    assert [line["message"] for line in lines(stream)][2:] == ["kept"]


def test_text_format_for_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging("text", "info", stream)
    logging.getLogger("monitord.daemon").warning(
        "slow batch", extra={"model": "fraud", "partition": 0}
    )
    text = stream.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING monitord\.daemon: slow batch "
        r"\[model=fraud partition=0\]\n",
        text,
    )


def test_registered_secrets_and_url_credentials_never_reach_the_stream() -> None:
    register_secret(SECRET)
    register_secret("")  # ignored, not a pattern that matches everywhere
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    log = logging.getLogger("connectors.webhook")
    log.info("password is %s", SECRET)
    log.info(f"inline {SECRET}!", extra={"model": f"m-{SECRET}", "detail": {"k": [SECRET]}})
    log.warning("posting to https://user:%s@hooks.example.com:8443/services/T0/B0/abc?x=1", SECRET)
    try:
        raise ConnectionError(f"refused by http://alertmanager:9093/api/v2/alerts?token={SECRET}")
    except ConnectionError:
        log.exception("delivery failed")
    output = stream.getvalue()
    assert SECRET not in output
    assert "services/T0" not in output
    messages = [(line["message"], line.get("model"), line.get("detail")) for line in lines(stream)]
    assert messages == [
        ("password is ***", None, None),
        ("inline ***!", "m-***", {"k": ["***"]}),
        ("posting to https://***@hooks.example.com:8443/***", None, None),
        ("delivery failed", None, None),
    ]
    traceback = str(lines(stream)[3]["exc_info"])
    assert traceback.startswith("Traceback (most recent call last):\n")
    # The source line shown in the traceback is masked like the message.
    assert 'raise ConnectionError(f"refused by http://alertmanager:9093/***")' in traceback
    assert traceback.endswith("ConnectionError: refused by http://alertmanager:9093/***")


def test_text_format_is_redacted_too() -> None:
    register_secret(SECRET)
    stream = io.StringIO()
    configure_logging("text", "info", stream)
    logging.getLogger("monitord.x").info("a", extra={"secrets": (SECRET,)})
    assert stream.getvalue().endswith("monitord.x: a [secrets=('***',)]\n")


def test_redact_urls() -> None:
    assert redact("see http://127.0.0.1:9093/ and SASL_SSL://broker:9093") == (
        "see http://127.0.0.1:9093/ and SASL_SSL://broker:9093"
    )
    assert redact("https://u:p@ss@host/path, then") == "https://***@host/*** then"
    assert redact("https://hooks.slack.com/services/T/B/X.") == "https://hooks.slack.com/***"


def test_config_secrets_are_registered() -> None:
    config = parse_config(
        {
            "receivers": [
                {"name": "slack", "type": "slack", "secret_env": "SLACK_URL"},
                {"name": "pd", "type": "pagerduty", "secret_env": "PD_KEY"},
            ]
        },
        environ={"MONITORD_KAFKA_SASL_PASSWORD": SECRET},
    )
    register_config_secrets(
        config, {"SLACK_URL": "https://hooks.slack.com/services/T/B/X", "PD_KEY": TOKEN}
    )
    stream = io.StringIO()
    configure_logging("json", "info", stream)
    logging.getLogger("monitord.delivery").info("keys %s %s", TOKEN, SECRET)
    assert lines(stream)[0]["message"] == "keys *** ***"


def test_wrong_arguments_name_the_parameter() -> None:
    with pytest.raises(ValueError, match="level must be one of debug, info, warning, error"):
        configure_logging("json", "loud")
    with pytest.raises(ValueError, match="format must be 'json' or 'text'"):
        configure_logging("yaml", "info")  # type: ignore[arg-type]


def test_logging_section_of_the_config() -> None:
    assert parse_config({}).logging == LoggingSettings(format="json", level="info")
    with pytest.raises(ConfigError, match=r"logging\.format: Input should be 'json' or 'text'"):
        parse_config({"logging": {"format": "yaml"}})
