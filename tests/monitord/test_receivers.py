"""One contract over every receiver type: minimal settings validate and build a connector,
a missing key is named with its type, keys of other types and unknown keys are refused."""

from __future__ import annotations

import pytest

from monitord.config import Config, ConfigError, parse_config
from monitord.delivery import build_receivers
from monitord.receivers.settings import TYPES

# The smallest valid settings of each type: a new type needs one here.
EXAMPLES: dict[str, dict[str, object]] = {
    "alertmanager": {"url": "http://am:9093"},
    "pagerduty": {"secret_env": "SECRET"},
    "slack": {"secret_env": "SECRET"},
    "webhook": {"url": "http://hook", "secret_env": "SECRET"},
    "airflow": {"url": "http://airflow:8080", "dag_id": "retrain"},
    "prefect": {"url": "http://prefect:4200/api", "deployment": "retrain/production"},
    "argo": {"url": "https://argo:2746", "namespace": "ml", "template": "retrain"},
    "kubeflow": {"url": "http://ml-pipeline:8888", "pipeline_id": "p-1"},
}
# A Slack webhook URL, a PagerDuty routing key and a signing key (16 bytes or more) at once.
ENVIRON = {"SECRET": "https://hooks.slack.com/services/T0/B0/0123456789abcdef"}
KINDS = [t.kind() for t in TYPES]


def _config(kind: str, **keys: object) -> Config:
    return parse_config({"receivers": [{"name": "r", "type": kind, **EXAMPLES[kind], **keys}]})


def _error(kind: str, **keys: object) -> str:
    with pytest.raises(ConfigError) as caught:
        _config(kind, **keys)
    return str(caught.value)


def test_every_type_has_an_example() -> None:
    assert sorted(EXAMPLES) == sorted(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_minimal_settings_build_a_connector_taking_the_default_events(kind: str) -> None:
    (receiver,) = _config(kind).receivers
    assert receiver.type == kind
    assert receiver.events == receiver.takes[:1]
    assert list(build_receivers([receiver], ENVIRON)) == ["r"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_key_is_named_with_its_type(kind: str) -> None:
    for key in EXAMPLES[kind]:
        settings = {k: v for k, v in EXAMPLES[kind].items() if k != key}
        with pytest.raises(ConfigError) as caught:
            parse_config({"receivers": [{"name": "r", "type": kind, **settings}]})
        message = str(caught.value)
        assert message.startswith("  receivers.0: Value error, ")
        assert f"{kind} receiver" in message
        assert f"need{'s' if key in ('url', 'secret_env') else ''} {key}" in message


def test_a_key_only_other_types_read_names_them() -> None:
    assert (
        "receivers.0: Value error, url is only read by alertmanager, pagerduty, webhook, "
        "airflow, prefect, argo, kubeflow receivers, not slack"
    ) in _error("slack", url="http://x")
    assert "secret_env is only read by pagerduty, slack" in _error("alertmanager", secret_env="S")
    assert "resend_interval_s is only read by alertmanager receivers, not webhook" in _error(
        "webhook", resend_interval_s=30
    )


def test_an_unknown_key_lists_the_keys_of_its_type() -> None:
    assert _error("kubeflow", token="t") == (
        "  receivers.0.token: unknown key; allowed keys here: ca_file, cert_file, events, "
        "experiment_id, key_file, match, name, pipeline_id, pipeline_version_id, secret_env, "
        "type, url, verify_hostname"
    )


def test_errors_inside_a_receiver_name_the_key_as_written() -> None:
    # Pydantic locates them under the type (receivers.0.alertmanager.match.a).
    assert "  receivers.0.match.a: Input should be a valid list" in _error(
        "alertmanager", match={"a": "b"}
    )
    assert "  receivers.0.resend_interval_s: Input should be greater than 0" in _error(
        "alertmanager", resend_interval_s=0
    )


def test_an_unknown_or_missing_type_lists_the_types() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"receivers": [{"name": "r", "type": "fax"}]})
    assert str(caught.value) == (
        "  receivers.0.type: Input should be 'alertmanager', 'pagerduty', 'slack', 'webhook', "
        "'airflow', 'prefect', 'argo' or 'kubeflow' (got 'fax')"
    )
    with pytest.raises(ConfigError, match=r"receivers\.0\.type: Field required"):
        parse_config({"receivers": [{"name": "r"}]})


def test_a_named_variable_must_be_set() -> None:
    receivers = _config("airflow", secret_env="AF_TOKEN").receivers
    with pytest.raises(ConfigError, match=r"receivers\.0\.secret_env: .* AF_TOKEN is not set"):
        build_receivers(receivers, {})
    assert list(build_receivers(receivers, {"AF_TOKEN": "t"})) == ["r"]
