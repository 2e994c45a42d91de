"""The hostile-input suite's two lengths: a short default that `make test` runs, and a long
mode (``--hostile-long``, declared in tests/conftest.py) with many more fuzzed examples and a
million broker records."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

# Derandomized: CI runs the same examples every time (a fixed seed, in Hypothesis's terms).
settings.register_profile(
    "hostile-ci",
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "hostile-long",
    max_examples=20_000,
    derandomize=False,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("hostile-long" if config.getoption("--hostile-long") else "hostile-ci")


@pytest.fixture
def hostile_long(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--hostile-long"))
