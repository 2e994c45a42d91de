"""What the daemon loop tells the admin endpoint (`monitord.admin.Health`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class HealthReport(Protocol):
    """Liveness (a heartbeat per cycle) and the named conditions readiness is made of."""

    def heartbeat(self) -> None: ...

    def set_condition(self, name: str, ok: bool, reason: str = "") -> None: ...

    def watch(self, name: str, problem: Callable[[], str | None]) -> None: ...


class Unobserved:
    """A `HealthReport` nobody reads: a daemon without an admin endpoint."""

    def heartbeat(self) -> None:
        pass

    def set_condition(self, name: str, ok: bool, reason: str = "") -> None:
        pass

    def watch(self, name: str, problem: Callable[[], str | None]) -> None:
        pass


__all__ = ["HealthReport", "Unobserved"]
