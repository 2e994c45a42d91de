"""Alerts: identity by label set, and the lifecycle pending -> firing -> resolved.

A label set is ``alertname``, ``model``, ``model_version``, ``feature`` (feature alerts),
``detector`` and ``severity``, plus the static labels of the config. Each window a label
set is *observed* drifted or clean:

- it fires when at least ``fire_windows`` of its last ``fire_span`` observations drifted
  (k of n; in between it is *pending*, which sends nothing);
- a firing label set resolves after ``resolve_windows`` clean observations in a row, where
  clean means a statistic below ``resolve_below`` times its threshold (a Schmitt trigger: a
  statistic hovering at the threshold during a persistent drift does not flap);
- after resolving it may not fire again for ``cooldown_windows`` observations.

One change that moves many columns is one *incident*: the ``MonitordModelDrift`` alert of
a model version observes whether any monitored column drifted in a window, and carries the
drifted columns (test, statistic, threshold) as its evidence; it is ``critical`` when at
least ``model_alert_share`` of the columns or the prediction drifted as it fires, else
``warning``, and keeps that severity until it resolves (a label set never changes labels
mid-episode). Feature alerts (one label set per column and test) are the detail under it:
``warning``, ``critical`` on the prediction, each naming its incident; paging receivers take
the incident only unless configured otherwise (`monitord.delivery`). ADWIN reports change
points, not windows: a cut is a drifted observation when it happens, and a window with no
new cut is a clean one.

``MonitordModelChange`` is the other question: did something *new* happen while drift
persists? It is an event, a ``warning`` (the incident is what pages): it fires when a
window tested against the recent regime (`monitord.regime`) alarms, with the columns that
moved and both references as evidence, and resolves once the next regime is established
(its first window) or the traffic is back at the reference (a clean reference window),
whichever comes first.

Transitions are the only outputs; every transition has a deterministic id from its label
set, status and window, so a replay or a restart sends the same ids.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from pydantic import NonNegativeInt

from monitord.clock import iso
from monitord.config import AlertSettings
from monitord.events import PREDICTION
from monitord.monitor import Evaluation, OffsetRange
from monitord.provenance import Provenance

FEATURE_ALERT = "MonitordFeatureDrift"
MODEL_ALERT = "MonitordModelDrift"
CHANGE_ALERT = "MonitordModelChange"
MODEL_DETECTOR = "any"
"""The detector label of the incident: any test may count."""
CHANGE_DETECTOR = "change"
"""The detector label of a change against the recent regime."""
PERFORMANCE_DETECTOR = "performance"
"""A window of labelled rows tested for degradation (`monitord.performance`)."""
ERROR_CHANGE_DETECTOR = "error_change"
"""A change point of the error stream (ADWIN over the per-row misses)."""
COVERAGE_DETECTOR = "label_coverage"
"""Too few predictions labelled within the expected delay."""
LATENCY_DETECTOR = "latency_slo"
"""A window's p99 inference latency above the SLO."""
LATENCY_DEGRADED_DETECTOR = "latency"
"""A window's latency tail beyond what the reference's allows."""
LABEL_DRIFT_DETECTOR = "label_drift"
"""The labels' distribution against the reference's (the share of a class, or above the
reference's median)."""
QUIET_DETECTOR = "volume_quiet"
"""A model without events for volume.quiet_after_s."""
FLOOD_DETECTOR = "volume_flood"
"""A model's events above volume.max_events_per_s."""
VOLUME_DETECTORS = frozenset({QUIET_DETECTOR, FLOOD_DETECTOR})
PERFORMANCE_ALERTS = {
    PERFORMANCE_DETECTOR: "MonitordPerformanceDegraded",
    ERROR_CHANGE_DETECTOR: "MonitordErrorRateChange",
    COVERAGE_DETECTOR: "MonitordLabelCoverage",
    LATENCY_DETECTOR: "MonitordLatencySLO",
    LATENCY_DEGRADED_DETECTOR: "MonitordLatencyDegraded",
    QUIET_DETECTOR: "MonitordModelQuiet",
    FLOOD_DETECTOR: "MonitordModelFlood",
    LABEL_DRIFT_DETECTOR: "MonitordLabelDrift",
}
"""Model-level alerts about how the model serves rather than what it is sent."""
MAX_EVIDENCE_COLUMNS = 20
"""Columns an incident's annotations name (its data carries every one)."""

Severity = Literal["warning", "critical"]
Column = tuple[str, str, float, float]
"""(column, test, statistic, threshold) of a drifted column."""

Labels = tuple[tuple[str, str], ...]


def stable_id(*parts: object) -> str:
    """A deterministic id: the first 32 hex digits of SHA-256 over the parts."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Alert:
    """One transition of one label set, with the window that decided it as evidence."""

    id: str
    status: Literal["firing", "resolved"]
    severity: Severity
    model: str
    version: str
    feature: str  # "" for the model-level alert
    detector: str
    statistic: float
    threshold: float
    profile_id: str
    first_row: int  # window rows in the model version's stream
    row: int
    offset: OffsetRange  # the record whose arrival decided it (first_offset == last_offset)
    offsets: tuple[OffsetRange, ...]  # the data range of the window
    start_time: float
    end_time: float
    labels: Labels
    annotations: Labels
    columns: tuple[Column, ...] = ()  # incident and change: every column that moved
    regime_profile_id: str | None = None  # change: the recent regime's reference
    # Performance: the window's metrics, the reference's (reference_*) and the label delay.
    evidence: tuple[tuple[str, float], ...] = ()
    registry: Provenance | None = None  # the reference's model registry version and artifact


@dataclass(frozen=True)
class Observation:
    """A label set's state in one window: drifted or not, with the statistic behind it."""

    feature: str  # "" for the model-level alerts
    detector: str
    drifted: bool
    statistic: float
    threshold: float
    evaluation: Evaluation
    columns: tuple[Column, ...] = ()  # incident and change evidence
    critical: bool | None = None  # model-level: critical or warning (None: critical)

    @property
    def alertname(self) -> str:
        if self.feature:
            return FEATURE_ALERT
        if self.detector in PERFORMANCE_ALERTS:
            return PERFORMANCE_ALERTS[self.detector]
        return CHANGE_ALERT if self.detector == CHANGE_DETECTOR else MODEL_ALERT

    @property
    def severity(self) -> Severity:
        if self.detector in PERFORMANCE_ALERTS:
            return "critical" if self.detector == PERFORMANCE_DETECTOR else "warning"
        if self.feature:
            return "critical" if self.feature == PREDICTION else "warning"
        return "critical" if self.critical in (None, True) else "warning"


class AlertRow(NamedTuple):
    """One label set's lifecycle state: stored as the JSON list of its fields, ``severity``
    only while firing (`stored`); `monitord.policy.PolicyState` validates it on load."""

    feature: str
    detector: str
    recent: tuple[bool, ...]  # the last observations, drifted or not (stored as 1 and 0)
    firing: bool
    clean: NonNegativeInt
    cooldown: NonNegativeInt
    severity: Severity | None = None

    def stored(self) -> list[object]:
        """The row as stored: a list, compact for the row per column and test of a version."""
        row: list[object] = [
            self.feature,
            self.detector,
            [int(d) for d in self.recent],
            self.firing,
            self.clean,
            self.cooldown,
        ]
        return [*row, self.severity] if self.firing and self.severity else row


@dataclass
class _LabelState:
    recent: deque[bool]
    firing: bool = False
    clean: int = 0
    cooldown: int = 0
    severity: Severity | None = None  # fixed while firing: the labels of the episode


@dataclass
class AlertBook:
    """Lifecycle state of every label set of one model version."""

    settings: AlertSettings
    states: dict[tuple[str, str], _LabelState] = field(default_factory=dict)

    def features(self, detector: str) -> list[str]:
        """Features with a label set of ``detector`` (observed at least once)."""
        return [feature for feature, d in self.states if d == detector]

    def firing(self) -> list[tuple[str, str]]:
        """``(feature, detector)`` of the label sets currently firing."""
        return [key for key, state in self.states.items() if state.firing]

    def observe_clean(self, feature: str, detector: str) -> bool:
        """Fold in a clean observation where it can change nothing but the label set's
        history (not firing, and no drifted majority pending): most observations, done
        without building an `Observation`. False, folding nothing, where `observe` must
        decide."""
        key = (feature, detector)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = _LabelState(deque(maxlen=self.settings.fire_span))
        if state.firing:
            return False
        if state.cooldown:
            state.cooldown -= 1
            return True
        if sum(state.recent) >= self.settings.fire_windows:
            return False
        state.recent.append(False)  # `observe` would do the same, and send nothing
        return True

    def observe(self, observation: Observation) -> Alert | None:
        """Fold one observation in; return the transition it causes, if any."""
        key = (observation.feature, observation.detector)
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = _LabelState(deque(maxlen=self.settings.fire_span))
        if state.firing:
            threshold = observation.threshold
            clean = not observation.drifted and (
                math.isnan(threshold)
                or observation.statistic < self.settings.resolve_below * threshold
            )
            state.clean = state.clean + 1 if clean else 0
            if state.clean < self.settings.resolve_windows:
                return None
            state.firing, state.clean = False, 0
            state.cooldown = self.settings.cooldown_windows
            state.recent.clear()
            return self._alert("resolved", observation, state.severity)
        if state.cooldown:
            state.cooldown -= 1
            return None
        state.recent.append(observation.drifted)
        if sum(state.recent) < self.settings.fire_windows:
            return None
        state.firing, state.clean = True, 0
        state.severity = observation.severity
        return self._alert("firing", observation, state.severity)

    def event(self, observation: Observation) -> Alert | None:
        """Fire the observation's label set now unless it is firing: an event, which no
        k-of-n history or cooldown holds back (each one is news)."""
        state = self.states.get((observation.feature, observation.detector))
        if state is None:
            state = self.states[observation.feature, observation.detector] = _LabelState(
                deque(maxlen=self.settings.fire_span)
            )
        if state.firing:
            return None
        state.firing, state.clean, state.cooldown = True, 0, 0
        state.severity = observation.severity
        return self._alert("firing", observation, state.severity)

    def end(self, observation: Observation) -> Alert | None:
        """Resolve the observation's label set now if it is firing (an event-like alert
        whose episode is over); its cooldown starts."""
        state = self.states.get((observation.feature, observation.detector))
        if state is None or not state.firing:
            return None
        state.firing, state.clean = False, 0
        state.cooldown = self.settings.cooldown_windows
        state.recent.clear()
        return self._alert("resolved", observation, state.severity)

    def snapshot(self) -> list[list[object]]:
        """Every label set's lifecycle state, as stored (`AlertRow.stored`)."""
        return [
            AlertRow(
                feature, detector, tuple(st.recent), st.firing, st.clean, st.cooldown, st.severity
            ).stored()
            for (feature, detector), st in self.states.items()
        ]

    def restore(self, rows: Iterable[AlertRow]) -> None:
        """Load rows (a `PolicyState` validated them)."""
        self.states.clear()
        for row in rows:
            self.states[row.feature, row.detector] = _LabelState(
                deque(row.recent, maxlen=self.settings.fire_span),
                row.firing,
                row.clean,
                row.cooldown,
                row.severity,
            )

    def _alert(
        self,
        status: Literal["firing", "resolved"],
        observation: Observation,
        severity: Severity | None,
    ) -> Alert:
        evaluation, result = observation.evaluation, observation.evaluation.result
        severity = severity or observation.severity
        labels = dict(self.settings.labels)
        labels.update(
            alertname=observation.alertname,
            model=evaluation.model,
            model_version=evaluation.version,
            detector=observation.detector,
            severity=severity,
        )
        if observation.feature:
            labels["feature"] = observation.feature
        label_set = tuple(sorted(labels.items()))
        record = evaluation.last_record
        return Alert(
            id=stable_id(*label_set, status, evaluation.profile_id, result.first_row, result.row),
            status=status,
            severity=severity,
            model=evaluation.model,
            version=evaluation.version,
            feature=observation.feature,
            detector=observation.detector,
            statistic=observation.statistic,
            threshold=observation.threshold,
            profile_id=evaluation.profile_id,
            first_row=result.first_row,
            row=result.row,
            offset=OffsetRange(record.topic, record.partition, record.offset, record.offset),
            offsets=evaluation.offsets,
            start_time=evaluation.start_time,
            end_time=evaluation.end_time,
            labels=label_set,
            annotations=self._annotations(status, observation),
            columns=observation.columns,
            regime_profile_id=evaluation.regime_profile_id,
            evidence=evaluation.evidence,
            registry=evaluation.registry,
        )

    def _annotations(self, status: str, observation: Observation) -> Labels:
        evaluation, result = observation.evaluation, observation.evaluation.result
        version = f"{evaluation.model}/{evaluation.version}"
        if observation.feature and math.isnan(observation.threshold):  # ADWIN: no threshold
            summary = (
                f"Drift {status} on {observation.feature} of {version}: {observation.detector} "
                f"change point (means {observation.statistic:.4g} apart)"
            )
        elif observation.feature:
            summary = (
                f"Drift {status} on {observation.feature} of {version}: {observation.detector} "
                f"statistic {observation.statistic:.4g} (threshold {observation.threshold:.4g})"
            )
        elif observation.detector in PERFORMANCE_ALERTS:
            summary = _performance_summary(status, version, observation)
        elif observation.detector == CHANGE_DETECTOR:
            summary = f"Change {status} on {version}" + (
                f": {_count(observation)} moved against the recent regime"
                if observation.columns
                else ": the new regime is established"
            )
        else:
            summary = f"Drift {status} on {version}" + (
                f": {_count(observation)} drifted"
                if observation.columns
                else ": no monitored column drifted"
            )
        named = _named(observation.columns)
        if named:
            summary += f": {named}"
        annotations = {
            "summary": summary,
            "window_rows": f"{result.first_row}-{result.row}",
            "window_start": iso(evaluation.start_time),
            "window_end": iso(evaluation.end_time),
            "reference_id": evaluation.profile_id,
        }
        if observation.feature or observation.detector in PERFORMANCE_ALERTS:
            annotations["statistic"] = f"{observation.statistic:.6g}"
            if not math.isnan(observation.threshold):
                annotations["threshold"] = f"{observation.threshold:.6g}"
        if observation.feature:
            annotations["incident"] = f"{MODEL_ALERT} {version}"
        elif observation.detector in PERFORMANCE_ALERTS:
            annotations["labelled_rows"] = annotations.pop("window_rows")
            annotations.update((k, f"{v:.6g}") for k, v in evaluation.evidence if math.isfinite(v))
        else:
            annotations["columns"] = named
        if evaluation.regime_profile_id:
            annotations["regime_reference_id"] = evaluation.regime_profile_id
        if evaluation.registry is not None:
            annotations["reference_uri"] = evaluation.registry.model_uri
            annotations["reference_registry"] = evaluation.registry.tracking_uri
        if self.settings.runbook_url:
            annotations["runbook_url"] = self.settings.runbook_url
        if self.settings.dashboard_url:
            annotations["dashboard_url"] = self.settings.dashboard_url
        return tuple(sorted(annotations.items()))


def _performance_summary(status: str, version: str, observation: Observation) -> str:
    what = {
        PERFORMANCE_DETECTOR: "Performance degraded",
        ERROR_CHANGE_DETECTOR: "Error rate changed",
        COVERAGE_DETECTOR: "Label coverage low",
        LATENCY_DETECTOR: "Latency above SLO",
        LATENCY_DEGRADED_DETECTOR: "Latency degraded",
        QUIET_DETECTOR: "Model quiet",
        LABEL_DRIFT_DETECTOR: "Label drift",
        FLOOD_DETECTOR: "Model flooding",
    }[observation.detector]
    evaluation = observation.evaluation
    metric = evaluation.features[0] if evaluation.features else ""
    if observation.detector == ERROR_CHANGE_DETECTOR:
        detail = f"error rate change point (means {observation.statistic:.4g} apart)"
    else:
        detail = f"{metric} {observation.statistic:.4g} (threshold {observation.threshold:.4g})"
    evidence = dict(evaluation.evidence)
    reference = evidence.get("reference_miss_rate")
    if reference is not None and observation.detector == PERFORMANCE_DETECTOR:
        detail += f", reference {reference:.4g}"
    shown = [
        f"{name} {value:.4g}"
        for name, value in evaluation.evidence
        if not name.startswith("reference_") and math.isfinite(value)
    ]
    summary = f"{what} {status} on {version}: {detail}"
    return summary + (f"; {', '.join(shown)}" if shown else "")


def _count(observation: Observation) -> str:
    """``2 of 8 monitored columns``: the columns over their share of the monitored ones."""
    moved = len({column[0] for column in observation.columns})
    share = observation.statistic
    total = round(moved / share) if share > 0 else moved
    return f"{moved} of {total} monitored columns"


def _named(columns: tuple[Column, ...]) -> str:
    """The columns that moved, strongest first (statistic over threshold), as a person reads
    them: ``x (ks 0.31 > 0.12), ...``."""

    def strength(column: Column) -> float:
        _, _, statistic, threshold = column
        return statistic / threshold if threshold > 0 and math.isfinite(threshold) else math.inf

    ranked = sorted(columns, key=strength, reverse=True)
    shown = [
        f"{name} ({test} {statistic:.3g} > {threshold:.3g})"
        if math.isfinite(threshold)
        else f"{name} ({test})"
        for name, test, statistic, threshold in ranked[:MAX_EVIDENCE_COLUMNS]
    ]
    more = len(ranked) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


__all__ = [
    "CHANGE_ALERT",
    "CHANGE_DETECTOR",
    "COVERAGE_DETECTOR",
    "ERROR_CHANGE_DETECTOR",
    "FEATURE_ALERT",
    "FLOOD_DETECTOR",
    "LABEL_DRIFT_DETECTOR",
    "LATENCY_DEGRADED_DETECTOR",
    "LATENCY_DETECTOR",
    "MAX_EVIDENCE_COLUMNS",
    "MODEL_ALERT",
    "MODEL_DETECTOR",
    "PERFORMANCE_ALERTS",
    "PERFORMANCE_DETECTOR",
    "QUIET_DETECTOR",
    "VOLUME_DETECTORS",
    "Alert",
    "AlertBook",
    "AlertRow",
    "Column",
    "Labels",
    "Observation",
    "Severity",
    "stable_id",
]
