"""TLS for receivers and Kafka, for real: a throwaway CA (openssl), an https receiver, the
embedded broker's plaintext port.

A receiver configured with the CA delivers; without it, the delivery fails with a logged
certificate error and stays in the outbox. Files that cannot be used are refused at startup
naming the key. Kafka over SSL against a plaintext listener gives up after
``connect_timeout_s`` with an error naming the address and the protocol, instead of hanging.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker
from connectors.outbox import Dispatcher, Outbox
from monitord.config import Config, ConfigError, parse_config
from monitord.delivery import build_receivers
from monitord.preflight import preflight
from tests.pki import Pki, make_pki
from tests.servers import RecordingServer

T0 = 1_700_000_000.0
KEY = {"HOOK_KEY": "hook-signing-key-0123456789"}
EVENT = json.dumps({"id": "tls-1", "data": {"model": "m"}}).encode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def https(pki: Pki) -> Iterator[RecordingServer]:
    with RecordingServer(tls=pki.server_context()) as running:
        yield running


def webhook(url: str, **tls: object) -> Config:
    receiver = {"name": "hook", "type": "webhook", "url": url, "secret_env": "HOOK_KEY"}
    return parse_config({"receivers": [{**receiver, **tls}]})


def deliver_once(config: Config, directory: Path) -> Outbox:
    """One delivery attempt of one message, through an outbox in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(directory / "outbox.sqlite")
    outbox.enqueue("tls-1", "hook", EVENT, now=T0)
    Dispatcher(outbox, build_receivers(config.receivers, KEY)).run_due(T0)
    return outbox


def test_an_https_receiver_with_a_private_ca_is_delivered_to(
    tmp_path: Path, pki: Pki, https: RecordingServer
) -> None:
    outbox = deliver_once(webhook(https.url + "/hook", ca_file=str(pki.ca)), tmp_path)

    assert (outbox.get("tls-1", "hook") or pytest.fail("not stored")).state == "delivered"
    assert [r.path for r in https.requests] == ["/hook"]


def test_without_the_ca_the_delivery_fails_logged_and_stays_in_the_outbox(
    tmp_path: Path, https: RecordingServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="connectors.outbox"):
        outbox = deliver_once(webhook(https.url + "/hook"), tmp_path)

    item = outbox.get("tls-1", "hook") or pytest.fail("not stored")
    assert (item.state, item.attempts) == ("pending", 1)  # retried later, never dropped
    assert "CERTIFICATE_VERIFY_FAILED" in (item.last_error or "")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "receiver 'hook'" in line
    assert "no answer" in line
    assert "certificate verify failed" in line.lower()
    assert https.requests == []


def test_a_client_certificate_is_presented_when_the_server_asks(tmp_path: Path, pki: Pki) -> None:
    server_context = pki.server_context(require_client_cert=True)
    with RecordingServer(tls=server_context) as server:
        with_cert = webhook(
            server.url + "/hook",
            ca_file=str(pki.ca),
            cert_file=str(pki.client_cert),
            key_file=str(pki.client_key),
        )
        delivered = deliver_once(with_cert, tmp_path / "with")
        refused = deliver_once(
            webhook(server.url + "/hook", ca_file=str(pki.ca)), tmp_path / "without"
        )

    assert (delivered.get("tls-1", "hook") or pytest.fail("not stored")).state == "delivered"
    assert (refused.get("tls-1", "hook") or pytest.fail("not stored")).state == "pending"
    assert len(server.requests) == 1


def test_verify_hostname_false_accepts_a_certificate_for_another_name(
    tmp_path: Path, pki: Pki
) -> None:
    with RecordingServer(tls=pki.server_context(wrong_name=True)) as server:
        url = server.url + "/hook"  # 127.0.0.1; the certificate names elsewhere.invalid
        checked = deliver_once(webhook(url, ca_file=str(pki.ca)), tmp_path / "checked")
        unchecked = deliver_once(
            webhook(url, ca_file=str(pki.ca), verify_hostname=False), tmp_path / "unchecked"
        )

    checked_item = checked.get("tls-1", "hook") or pytest.fail("not stored")
    assert checked_item.state == "pending"
    assert "127.0.0.1" in (checked_item.last_error or "")  # "IP address mismatch"
    assert (unchecked.get("tls-1", "hook") or pytest.fail("not stored")).state == "delivered"
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        pytest.param(
            {"receivers": [{"ca_file": "{tmp}/missing.pem"}]}, "receivers.0.ca_file", id="ca"
        ),
        pytest.param(
            {"receivers": [{"ca_file": "{tmp}/not-pem.pem"}]}, "receivers.0.ca_file", id="not-pem"
        ),
        pytest.param(
            {"receivers": [{"cert_file": "{pki}/client.pem", "key_file": "{pki}/server.key"}]},
            "receivers.0.key_file",
            id="key-mismatch",
        ),
        pytest.param(
            {"kafka": {"ssl_cafile": "{tmp}/missing.pem"}}, "kafka.ssl_cafile", id="kafka-ca"
        ),
        pytest.param(
            {"kafka": {"ssl_certfile": "{tmp}", "ssl_keyfile": "{pki}/client.key"}},
            "kafka.ssl_certfile",
            id="kafka-cert-dir",
        ),
    ],
)
def test_unusable_tls_files_are_refused_at_startup_naming_the_key(
    tmp_path: Path, pki: Pki, settings: dict[str, list[dict[str, str]] | dict[str, str]], key: str
) -> None:
    (tmp_path / "not-pem.pem").write_text("not a certificate\n")

    def place(value: str) -> str:
        return value.replace("{tmp}", str(tmp_path)).replace("{pki}", str(pki.ca.parent))

    data: dict[str, object] = {}
    for receiver in settings.get("receivers", []):
        assert isinstance(receiver, dict)
        hook = {
            "name": "hook",
            "type": "webhook",
            "url": "https://127.0.0.1:1/",
            "secret_env": "HOOK_KEY",
        }
        data["receivers"] = [{**hook, **{k: place(v) for k, v in receiver.items()}}]
    kafka = settings.get("kafka", {})
    if kafka:
        assert isinstance(kafka, dict)
        data["kafka"] = {"security_protocol": "SSL", **{k: place(v) for k, v in kafka.items()}}
    data["state_dir"] = str(tmp_path / "state")

    with pytest.raises(ConfigError) as refused:
        preflight(parse_config(data), KEY)
    assert str(refused.value).startswith(key), str(refused.value)


@pytest.mark.kafka
def test_ssl_against_a_plaintext_listener_times_out_with_a_clear_error(
    tmp_path: Path, broker: EmbeddedBroker
) -> None:
    path = tmp_path / "monitord.toml"
    path.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        f"[kafka]\n"
        f'bootstrap_servers = "{broker.bootstrap}"\n'
        f'security_protocol = "SSL"\n'
        f"connect_timeout_s = 2.0\n"
        f"[admin]\nport = 0\n"
    )
    started = time.monotonic()
    # A subprocess: the bug this guards against is a hang, which must fail, not stall, a run.
    try:
        done = subprocess.run(
            [sys.executable, "-m", "monitord.cli", "run", "--config", str(path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("monitord run hung at startup against a plaintext listener with SSL")
    elapsed = time.monotonic() - started

    assert done.returncode == 3, done.stderr
    assert broker.bootstrap in done.stderr
    assert "security_protocol SSL" in done.stderr
    assert "no TLS handshake within 2s" in done.stderr
    assert "Traceback" not in done.stderr
    assert elapsed < 2.0 + 10.0, "gave up long after connect_timeout_s"


def test_tls_settings_on_a_plain_http_receiver_are_refused() -> None:
    hook = {"name": "hook", "type": "webhook", "url": "http://hooks.example/", "secret_env": "K"}
    with pytest.raises(ConfigError) as refused:
        parse_config({"receivers": [{**hook, "verify_hostname": False}]})
    assert "receivers.0" in str(refused.value)
    assert "verify_hostname: TLS settings need an https:// url" in str(refused.value)
