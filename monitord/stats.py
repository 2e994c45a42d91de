"""The daemon's running counts, for the status line, `/status` and the closing log line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from monitord.alerts import Alert
from monitord.events import BadRecord
from monitord.policy import Output


@dataclass
class Stats:
    """Counters a status line or the metrics endpoint reads."""

    events: int = 0
    bad_records: Counter[str] = field(default_factory=Counter)
    alerts_firing: int = 0
    alerts_resolved: int = 0
    triggers: int = 0
    per_model: Counter[str] = field(default_factory=Counter)
    checkpoints: int = 0
    last_checkpoint: float = 0.0  # wall clock of the last stored checkpoint

    def count(self, n_records: int, bad: list[BadRecord], outputs: list[Output]) -> None:
        """Count a delivered batch."""
        self.events += n_records
        self.bad_records.update(b.reason for b in bad)
        for output in outputs:
            if isinstance(output, Alert):
                if output.status == "firing":
                    self.alerts_firing += 1
                else:
                    self.alerts_resolved += 1
            else:
                self.triggers += 1


__all__ = ["Stats"]
