"""`monitord.app.App`, the owner of a process's parts, against the embedded broker: a signal
stops the loop, closing releases the admin port and gives the signal handlers back, and a
part that cannot be built leaves nothing behind."""

from __future__ import annotations

import signal
import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker
from connectors.kafka import ensure_topics
from monitord.app import App
from monitord.config import Config, ConfigError
from tests.monitord.test_kafka_daemon import Topics, daemon_config


@pytest.fixture
def topics(unique_name: Callable[[str], str]) -> Topics:
    return Topics(*(unique_name(name) for name in ("events", "dead-letter", "alerts", "retrain")))


def _config(bootstrap: str, topics: Topics, group: str, **update: object) -> Config:
    config = daemon_config(bootstrap, topics, group)
    admin = config.admin.model_copy(update={"port": 0})
    return config.model_copy(update={"admin": admin, **update})


@pytest.mark.kafka
def test_a_signal_stops_the_loop_and_closing_releases_everything(
    broker: EmbeddedBroker,
    topics: Topics,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    config = _config(broker.bootstrap, topics, unique_name("group"), state_dir=tmp_path / "state")
    before = signal.getsignal(signal.SIGTERM)
    with App() as app:
        daemon = app.build_daemon(config, observed=True)
        admin = app.serve_admin()
        assert admin is not None
        with urllib.request.urlopen(f"{admin.url}/livez", timeout=10) as answer:
            assert answer.status == 200
        app.stop_on_signals(grace_s=60.0)
        assert signal.getsignal(signal.SIGTERM) != before
        signal.raise_signal(signal.SIGTERM)
        assert daemon.stopping.is_set()
        app.run()  # returns at once: the signal asked it to stop
        assert app.received == [signal.SIGTERM]
        port = admin.port
    assert signal.getsignal(signal.SIGTERM) == before
    with socket.create_server(("127.0.0.1", port)):  # the admin port is free again
        pass
    app.close()  # closing twice is harmless


@pytest.mark.kafka
def test_an_admin_port_in_use_fails_with_advice_and_closes_the_daemon(
    broker: EmbeddedBroker,
    topics: Topics,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        config = _config(
            broker.bootstrap, topics, unique_name("group"), state_dir=tmp_path / "state"
        )
        config = config.model_copy(update={"admin": config.admin.model_copy(update={"port": busy})})
        ensure_topics(broker.bootstrap, {topics.events: 1})
        app = App()
        daemon = app.build_daemon(config, observed=True)
        for _ in range(120):  # join the group: the partition is this daemon's
            daemon.step(0.5)
            if daemon.source.assignment():
                break
        assert daemon.source.assignment()
        advice = rf"admin\.port: cannot listen on 127\.0\.0\.1:{busy}"
        with pytest.raises(ConfigError, match=advice), app:
            app.serve_admin()
    assert app.admin is None
    # The daemon was closed on the way out: its consumer left the group.
    assert daemon.source.assignment() == frozenset()


@pytest.mark.kafka
def test_a_part_that_cannot_be_built_fails_naming_its_key(
    broker: EmbeddedBroker,
    topics: Topics,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    """The consumer and producer built before it are closed again (`monitord.service`)."""
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory would be
    config = daemon_config(broker.bootstrap, topics, unique_name("group"))
    outputs = config.outputs.model_copy(update={"jsonl_path": blocked / "out.jsonl"})
    config = config.model_copy(update={"outputs": outputs, "state_dir": tmp_path / "state"})
    with App() as app, pytest.raises(ConfigError, match=r"outputs\.jsonl_path: cannot open"):
        app.build_daemon(config)
    assert app.daemon is None
