"""What a replay came to, for the summary a person reads at its end.

`ReplayTally` counts windows per model version, and per column and test the first row at
which the test saw drift (the input row completing that window), how many windows drifted,
the alerts fired and resolved, and the retrain requests. It learns the windows from the
policy (`TallyingPolicy`, the daemon's policy that also shows it every evaluation) and the
outputs as a `monitord.outputs.Publisher`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from monitord.alerts import PERFORMANCE_ALERTS, Alert
from monitord.monitor import Evaluation
from monitord.policy import ADWIN, Decisions, Output, Policy
from monitord.results import WindowResult, window_results
from monitord.retrain import RetrainTrigger

Key = tuple[str, str, str, str]
"""(model, version, column, test); the column is "" for a model-level alert."""


@dataclass
class ColumnTally:
    """One column's test over the replay."""

    first_drift: tuple[str, int, int] | None = None  # (topic, first row, row) of that window
    drifted_windows: int = 0
    fired: int = 0
    resolved: int = 0


@dataclass
class ReplayTally:
    """Counts over a replay: windows, drift per column and test, alerts, retrain requests."""

    windows: Counter[tuple[str, str]] = field(default_factory=Counter)
    tests: dict[Key, ColumnTally] = field(default_factory=dict)
    retrains: list[RetrainTrigger] = field(default_factory=list)
    _last_window: dict[tuple[str, str], int] = field(default_factory=dict)
    # For a report (``keep``): every window's results and every output, in order.
    keep: bool = False
    timed: bool = False
    results: list[WindowResult] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)

    def evaluated(self, evaluations: list[Evaluation]) -> None:
        """Fold one batch's evaluations in (the order the policy sees them)."""
        if self.keep:
            self.results += window_results(evaluations, timed=self.timed)
        for evaluation in evaluations:
            result, version = evaluation.result, (evaluation.model, evaluation.version)
            if evaluation.regime:  # against a recent regime: a change, not drift
                continue
            windowed = result.detector != ADWIN and result.detector not in PERFORMANCE_ALERTS
            # One window, many tests: a window is counted at its first evaluation.
            if windowed and self._last_window.get(version) != result.row:
                self._last_window[version] = result.row
                self.windows[version] += 1
            record = evaluation.last_record
            first = min((r.first_offset for r in evaluation.offsets), default=record.offset)
            # Performance alerts are the model's (feature ""): their drift goes with them.
            model_level = result.detector in PERFORMANCE_ALERTS
            for j in np.flatnonzero(result.drifted):
                column = "" if model_level else evaluation.features[int(j)]
                key = (*version, column, result.detector)
                tally = self.tests.setdefault(key, ColumnTally())
                tally.drifted_windows += 1
                if tally.first_drift is None:
                    tally.first_drift = (record.topic, first, record.offset)

    def publish(self, outputs: list[Output]) -> None:
        if self.keep:
            self.outputs += outputs
        for output in outputs:
            if isinstance(output, Alert):
                key = (output.model, output.version, output.feature, output.detector)
                tally = self.tests.setdefault(key, ColumnTally())
                if output.status == "firing":
                    tally.fired += 1
                else:
                    tally.resolved += 1
            else:
                self.retrains.append(output)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def lines(self, data_topic: str) -> list[str]:
        """The summary: windows, then each column and test that drifted or alerted, then
        the retrain requests; "no drift in N windows" when nothing did."""
        windows = _plural(sum(self.windows.values()), "window")
        if len(self.windows) == 1:
            ((model, version),) = self.windows
            windows += f" of {model}/{version}"
        elif self.windows:
            windows += (
                " (" + ", ".join(f"{m}/{v} {n}" for (m, v), n in sorted(self.windows.items())) + ")"
            )
        if not self.tests and not self.retrains:
            return [f"no drift in {windows}"]
        lines = [windows]
        for (model, version, column, test), tally in sorted(self.tests.items()):
            parts = []
            if tally.first_drift is not None:
                topic, first, row = tally.first_drift
                of = "" if topic == data_topic else f" of {topic}"
                window = f" (window rows {first}-{row})" if first < row else ""
                parts.append(
                    f"first drift at row {row}{of}{window}, "
                    f"{_plural(tally.drifted_windows, 'window')} drifted"
                )
            parts.append(f"alerts fired {tally.fired}, resolved {tally.resolved}")
            lines.append(f"{model}/{version} {column or '(model)'} {test}: " + "; ".join(parts))
        lines.append(f"retrain requests: {len(self.retrains)}")
        for trigger in self.retrains:
            features = ", ".join(trigger.drifted_features) or "-"
            share = (
                "" if math.isnan(trigger.feature_share) else f" share {trigger.feature_share:.3g}"
            )
            lines.append(
                f"  {trigger.model}/{trigger.version} at row {trigger.offset.first_offset}: "
                f"{trigger.reason} ({features}{share})"
            )
        return lines


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


class TallyingPolicy(Policy):
    """The daemon's policy, showing each batch's evaluations to a `ReplayTally` first."""

    tally: ReplayTally | None = None

    def decide(self, evaluations: list[Evaluation]) -> Decisions:
        if self.tally is not None:
            self.tally.evaluated(evaluations)
        return super().decide(evaluations)


__all__ = ["ColumnTally", "ReplayTally", "TallyingPolicy"]
