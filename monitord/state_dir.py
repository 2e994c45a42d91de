"""What fails in ``state_dir`` (checkpoints, the audit log, the outbox) and why.

The loop retries what failed and reports not ready, saying why, until it works again.
"""

from __future__ import annotations

import logging

from connectors.sqlite import StorageUnavailable
from monitord.readiness import HealthReport

log = logging.getLogger(__name__)


class StateDirFaults:
    """The ``state_dir`` readiness condition: one reason per failing use of the directory."""

    def __init__(self, health: HealthReport) -> None:
        self._faults: dict[str, str] = {}  # what fails, and why
        self._health = health

    def __contains__(self, what: str) -> bool:
        return what in self._faults

    def failed(self, what: str, exc: StorageUnavailable) -> None:
        """``what`` failed in state_dir: not ready, saying why, until it works again."""
        if what not in self._faults:
            log.error("state_dir: %s failed (%s); retrying, not ready meanwhile", what, exc)
        self._faults[what] = str(exc)
        self._report()

    def works(self, what: str) -> None:
        """``what`` worked in state_dir: the fault it had, if any, is over."""
        if self._faults.pop(what, None) is not None:
            log.info("state_dir: %s works again", what)
            self._report()

    def _report(self) -> None:
        reason = "; ".join(f"{what}: {why}" for what, why in self._faults.items())
        self._health.set_condition("state_dir", not self._faults, reason)


__all__ = ["StateDirFaults"]
