"""Shared fixtures: one embedded Kafka broker per test session, unique names per test."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker
from monitord.app import App
from monitord.config import Config
from monitord.daemon import Daemon
from tests.servers import RecordingServer, running_alertmanager


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--hostile-long",
        action="store_true",
        help="hostile-input suite (tests/hostile): 20,000 fuzzed examples per property and "
        "1,000,000 broker records",
    )


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A running Tansu broker on 127.0.0.1 (in-memory storage), shared by the session.

    Tests share it, so they must use `unique_name` for topics and consumer groups.
    """
    log_path = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log_path) as running:
        yield running


KAFKA_CLIENTS = ("kafka-python", "confluent")
"""The values of `kafka.client`: the Kafka and fault tests run against each."""


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request: pytest.FixtureRequest) -> str:
    """The Kafka client a test runs on (`kafka.client`), each in turn."""
    client: str = request.param
    return client


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Make names (topics, groups) unique to this test: `unique_name("events")`."""
    test = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:80]
    run = uuid.uuid4().hex[:8]
    counter = itertools.count()
    return lambda prefix: f"{prefix}.{test}.{run}.{next(counter)}"


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    """A loopback HTTP server standing in for a receiver: records requests, scripted answers."""
    with RecordingServer() as running:
        yield running


@pytest.fixture
def webhook() -> Iterator[RecordingServer]:
    """A loopback HTTP server receiving Alertmanager's notifications."""
    with RecordingServer() as running:
        yield running


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: RecordingServer) -> Iterator[str]:
    """The base URL of a real Alertmanager on 127.0.0.1 that notifies `webhook`."""
    with running_alertmanager(tmp_path, webhook) as base_url:
        yield base_url


@pytest.fixture
def daemons() -> Iterator[Callable[[Config], Daemon]]:
    """Build Kafka daemons (each through its own `App`, as `monitord run` does) that are
    closed, leaving their group, when the test ends."""
    apps: list[App] = []

    def build(config: Config) -> Daemon:
        apps.append(App())
        return apps[-1].build_daemon(config)

    yield build
    for app in apps:  # in the order built
        app.close()
