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

Feature alerts are ``warning``, except on the model's prediction (``critical``). A
``MonitordModelDrift`` alert per model version is ``critical`` and observes whether at
least ``model_alert_share`` of the monitored columns drifted in a window. ADWIN reports
change points, not windows: a cut is a drifted observation when it happens, and a window
with no new cut is a clean one.

Transitions are the only outputs; every transition has a deterministic id from its label
set, status and window, so a replay or a restart sends the same ids.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from monitord.clock import iso
from monitord.config import AlertSettings
from monitord.events import PREDICTION
from monitord.monitor import Evaluation, OffsetRange

FEATURE_ALERT = "MonitordFeatureDrift"
MODEL_ALERT = "MonitordModelDrift"

Labels = tuple[tuple[str, str], ...]


def stable_id(*parts: object) -> str:
    """A deterministic id: the first 32 hex digits of SHA-256 over the parts."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Alert:
    """One transition of one label set, with the window that decided it as evidence."""

    id: str
    status: Literal["firing", "resolved"]
    severity: Literal["warning", "critical"]
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


@dataclass(frozen=True)
class Observation:
    """A label set's state in one window: drifted or not, with the statistic behind it."""

    feature: str  # "" for the model-level alert
    detector: str
    drifted: bool
    statistic: float
    threshold: float
    evaluation: Evaluation

    @property
    def alertname(self) -> str:
        return MODEL_ALERT if not self.feature else FEATURE_ALERT

    @property
    def severity(self) -> Literal["warning", "critical"]:
        return "critical" if self.feature in ("", PREDICTION) else "warning"


@dataclass
class _LabelState:
    recent: deque[bool]
    firing: bool = False
    clean: int = 0
    cooldown: int = 0


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
            return self._alert("resolved", observation)
        if state.cooldown:
            state.cooldown -= 1
            return None
        state.recent.append(observation.drifted)
        if sum(state.recent) < self.settings.fire_windows:
            return None
        state.firing, state.clean = True, 0
        return self._alert("firing", observation)

    def snapshot(self) -> list[list[object]]:
        """Every label set's lifecycle state, JSON-able."""
        return [
            [feature, detector, [int(d) for d in st.recent], st.firing, st.clean, st.cooldown]
            for (feature, detector), st in self.states.items()
        ]

    def restore(self, rows: list[list[object]]) -> None:
        self.states.clear()
        for feature, detector, recent, firing, clean, cooldown in rows:
            self.states[str(feature), str(detector)] = _LabelState(
                deque((bool(d) for d in recent), maxlen=self.settings.fire_span),  # type: ignore[attr-defined]
                bool(firing),
                int(clean),  # type: ignore[call-overload]
                int(cooldown),  # type: ignore[call-overload]
            )

    def _alert(self, status: Literal["firing", "resolved"], observation: Observation) -> Alert:
        evaluation, result = observation.evaluation, observation.evaluation.result
        labels = dict(self.settings.labels)
        labels.update(
            alertname=observation.alertname,
            model=evaluation.model,
            model_version=evaluation.version,
            detector=observation.detector,
            severity=observation.severity,
        )
        if observation.feature:
            labels["feature"] = observation.feature
        label_set = tuple(sorted(labels.items()))
        record = evaluation.last_record
        return Alert(
            id=stable_id(*label_set, status, evaluation.profile_id, result.first_row, result.row),
            status=status,
            severity=observation.severity,
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
        )

    def _annotations(self, status: str, observation: Observation) -> Labels:
        evaluation, result = observation.evaluation, observation.evaluation.result
        subject = (
            f"{observation.feature} of {evaluation.model}/{evaluation.version}"
            if observation.feature
            else f"{evaluation.model}/{evaluation.version}"
        )
        what = (
            f"{observation.detector} statistic {observation.statistic:.4g} "
            f"(threshold {observation.threshold:.4g})"
            if observation.feature
            else f"{observation.statistic:.0%} of monitored columns drifted "
            f"(threshold {observation.threshold:.0%})"
        )
        annotations = {
            "summary": f"Drift {status} on {subject}: {what}",
            "statistic": f"{observation.statistic:.6g}",
            "threshold": f"{observation.threshold:.6g}",
            "window_rows": f"{result.first_row}-{result.row}",
            "window_start": iso(evaluation.start_time),
            "window_end": iso(evaluation.end_time),
            "reference_id": evaluation.profile_id,
        }
        if self.settings.runbook_url:
            annotations["runbook_url"] = self.settings.runbook_url
        if self.settings.dashboard_url:
            annotations["dashboard_url"] = self.settings.dashboard_url
        return tuple(sorted(annotations.items()))
