"""Fixtures of the daemon tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from monitord.config import Config
from monitord.daemon import Daemon
from monitord.service import build_kafka_daemon


@pytest.fixture
def daemons() -> Iterator[Callable[[Config], Daemon]]:
    """Build Kafka daemons that are closed (leaving their group) when the test ends."""
    built: list[Daemon] = []

    def build(config: Config) -> Daemon:
        built.append(build_kafka_daemon(config))
        return built[-1]

    yield build
    for daemon in built:
        daemon.close()
