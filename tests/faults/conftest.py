"""Fixtures the fault tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker
from tests.faults.harness import Offsets


@pytest.fixture
def offsets(broker: EmbeddedBroker) -> Iterator[Offsets]:
    """Committed offsets of the shared broker's groups, read as the tests go."""
    reader = Offsets(broker.bootstrap)
    yield reader
    reader.close()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test alone: stalling, killing or restarting the shared one would
    break other tests."""
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as running:
        yield running
