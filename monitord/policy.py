"""Policy: turns evaluations into alert transitions and retrain requests.

Statistics never decide policy; this module does (DESIGN.md section 4), through
`monitord.alerts` (the lifecycle of each alert label set), and for retraining
`monitord.retrain` (the drift and degraded-performance rules of each version) and
`monitord.retrain_policy` (schedules, manual requests, the guards).
Evaluations are folded in row order per model version; a *window* is every window test
that completed at the same row.

Besides `decide`, the daemon calls `due(now)` once per loop iteration for the scheduled and
manual requests that are due; the admin endpoint calls `request_retrain` from its thread,
which only queues the request for `due` (`monitord.retrain_policy`).

The policy does no I/O: `decide` and `due` return `Decisions`, the alerts and retrain
requests to publish and the requests held back; the caller records and delivers them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field, NonNegativeInt, field_serializer

from monitord.alerts import (
    CHANGE_DETECTOR,
    ERROR_CHANGE_DETECTOR,
    MODEL_DETECTOR,
    PERFORMANCE_ALERTS,
    PERFORMANCE_DETECTOR,
    VOLUME_DETECTORS,
    Alert,
    AlertBook,
    AlertRow,
    Column,
    Observation,
)
from monitord.clock import now as wall_clock
from monitord.config import AlertSettings, Config, ModelSettings, PolicySettings
from monitord.events import PREDICTION
from monitord.monitor import Evaluation
from monitord.retrain import (
    Drifted,
    RetrainEpisodes,
    RetrainTrigger,
    Suppressed,
)
from monitord.retrain_policy import Retraining, RetrainState
from monitord.state import Document

ADWIN = "adwin"

Output = Alert | RetrainTrigger


@dataclass(frozen=True)
class Decisions:
    """What one call of `Policy.decide` or `Policy.due` decided: ``outputs`` to publish
    (alert transitions and retrain requests, in order) and retrain requests ``held`` back by
    a guard, to log and record (`monitord.audit.record_held`)."""

    outputs: list[Output]
    held: list[Suppressed] = field(default_factory=list)


def _unset(value: object) -> bool:
    return not value


class PolicyState(Document):
    """A model version's policy state in a checkpoint: alert lifecycles and retrain state."""

    alerts: tuple[AlertRow, ...]
    retrain: RetrainState
    adwin_cut: tuple[str, ...]  # features ADWIN cut since the last window
    changed_regime: NonNegativeInt = 0  # absent before change alerts
    # Absent before performance monitoring: degraded windows in a row, whether the
    # degradation under way has asked for its request, an error change since the last window.
    degraded_windows: NonNegativeInt = Field(0, exclude_if=_unset)
    degradation_requested: bool = Field(False, exclude_if=_unset)
    error_changed: bool = Field(False, exclude_if=_unset)

    @field_serializer("alerts")
    def _rows(self, alerts: tuple[AlertRow, ...]) -> list[list[object]]:
        return [row.stored() for row in alerts]


@dataclass
class _VersionPolicy:
    alerts: AlertBook
    retrain: RetrainEpisodes
    adwin_cut: set[str] = field(default_factory=set)  # features ADWIN cut since the last window
    changed_regime: int = 0  # the regime whose window fired the change alert (0: none)
    error_changed: bool = False  # an error-stream change point since the last window


class Policy:
    """Stateful decisions over the evaluations of every model version."""

    def __init__(
        self,
        alerts: AlertSettings,
        policy: PolicySettings,
        config_hash: str,
        *,
        models: Sequence[ModelSettings] = (),
        retrain_on_degradation: bool = True,
    ) -> None:
        self.alert_settings, self.settings, self.config_hash = alerts, policy, config_hash
        self._versions: dict[tuple[str, str], _VersionPolicy] = {}
        self.retraining = Retraining(
            policy, config_hash, models, retrain_on_degradation=retrain_on_degradation
        )

    @classmethod
    def from_config(cls, config: Config) -> Policy:
        """The policy of ``config``, per-model settings and schedules included."""
        return cls(
            config.alerts,
            config.policy,
            config.config_hash,
            models=config.models,
            retrain_on_degradation=config.performance.retrain_on_degradation,
        )

    def due(self, now: float) -> Decisions:
        """Manual requests queued since the last call and scheduled ones due at ``now``
        (wall-clock seconds), and the scheduled ones held back."""
        due: list[Output] = list(self.retraining.due(now))
        return Decisions(due, self.retraining.take_held())

    def request_retrain(self, model: str, version: str | None, reason: str) -> str:
        """Queue a manual request now (`Retraining.request_manual`): the admin endpoint's
        callback, safe on its thread; returns the request id."""
        return self.retraining.request_manual(model, reason, wall_clock(), version).id

    def decide(self, evaluations: list[Evaluation]) -> Decisions:
        """What a batch of evaluations (in row order per model version) decides."""
        outputs = self._outputs(evaluations)
        if evaluations:
            self.retraining.publish()  # the versions and windows a manual request may name
        return Decisions(outputs, self.retraining.take_held())

    def _outputs(self, evaluations: list[Evaluation]) -> list[Output]:
        outputs: list[Output] = []
        serving = [e for e in evaluations if e.result.detector in PERFORMANCE_ALERTS]
        if serving:
            evaluations = [e for e in evaluations if e.result.detector not in PERFORMANCE_ALERTS]

        def window_of(e: Evaluation) -> tuple[str, str, int, int, bool]:
            return e.model, e.version, e.regime, e.result.row, e.result.detector == ADWIN

        # Reference results come first per batch, regime results after (monitord.monitor).
        for (model, version, regime, _, adwin), group in itertools.groupby(evaluations, window_of):
            state = self._state(model, version)
            if regime:
                outputs += self._change(state, list(group))
            elif adwin:
                for evaluation in group:
                    outputs += self._cuts(state, evaluation)
            else:
                outputs += self._window(state, list(group))
        for evaluation in serving:
            outputs += self._serving(self._state(evaluation.model, evaluation.version), evaluation)
        return outputs

    def _state(self, model: str, version: str) -> _VersionPolicy:
        key = (model, version)
        if key not in self._versions:
            self._versions[key] = _VersionPolicy(
                AlertBook(self.alert_settings), self.retraining.episodes(model, version)
            )
        return self._versions[key]

    def snapshot(self, key: tuple[str, str]) -> PolicyState | None:
        """A model version's alert and episode state (None if never decided)."""
        state = self._versions.get(key)
        if state is None:
            return None
        return PolicyState(
            alerts=state.alerts.snapshot(),
            retrain=self.retraining.snapshot(key),
            adwin_cut=tuple(sorted(state.adwin_cut)),
            changed_regime=state.changed_regime,
            degraded_windows=state.retrain.degraded_windows,
            degradation_requested=state.retrain.degradation_requested,
            error_changed=state.error_changed,
        )

    def restore(self, key: tuple[str, str], snapshot: PolicyState) -> None:
        state = self._state(*key)
        state.alerts.restore(snapshot.alerts)
        self.retraining.restore(key, snapshot.retrain)
        state.adwin_cut = set(snapshot.adwin_cut)
        state.changed_regime = snapshot.changed_regime
        state.retrain.degraded_windows = snapshot.degraded_windows
        state.retrain.degradation_requested = snapshot.degradation_requested
        state.error_changed = snapshot.error_changed

    def drop(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            self._versions.pop(key, None)
        self.retraining.drop(keys)

    def firing(self) -> list[tuple[str, str, str, str]]:
        """``(model, version, feature, detector)`` of every label set firing now."""
        return [
            (model, version, feature, detector)
            for (model, version), state in list(self._versions.items())
            for feature, detector in state.alerts.firing()
        ]

    def _cuts(self, state: _VersionPolicy, evaluation: Evaluation) -> list[Output]:
        result, outputs = evaluation.result, []
        for j in np.flatnonzero(result.drifted):
            feature = evaluation.features[j]
            state.adwin_cut.add(feature)
            observation = Observation(
                feature, ADWIN, True, float(result.statistic[j]), math.nan, evaluation
            )
            outputs.append(state.alerts.observe(observation))
        return [o for o in outputs if o is not None]

    def _window(self, state: _VersionPolicy, window: list[Evaluation]) -> list[Output]:
        outputs: list[Alert | RetrainTrigger | None] = []
        drifted: Drifted = {}
        clean = state.alerts.observe_clean
        for evaluation in window:
            result = evaluation.result
            detector = result.detector
            flags = result.drifted.tolist()
            for j, feature in enumerate(evaluation.features):
                if not flags[j] and clean(feature, detector):
                    continue
                statistic, threshold = float(result.statistic[j]), float(result.threshold[j])
                if result.drifted[j]:
                    drifted.setdefault(feature, (result.detector, statistic, threshold))
                observation = Observation(
                    feature,
                    result.detector,
                    bool(result.drifted[j]),
                    statistic,
                    threshold,
                    evaluation,
                )
                outputs.append(state.alerts.observe(observation))
        first = window[0]
        for feature in state.alerts.features(ADWIN):
            if feature not in state.adwin_cut:
                outputs.append(
                    state.alerts.observe(Observation(feature, ADWIN, False, 0.0, math.nan, first))
                )
        state.adwin_cut.clear()
        monitored = {feature for evaluation in window for feature in evaluation.features}
        share = len(drifted) / max(len(monitored), 1)
        columns = tuple((f, *drifted[f]) for f in sorted(drifted))
        critical = share >= self.alert_settings.model_alert_share or PREDICTION in drifted
        incident = Observation(
            "", MODEL_DETECTOR, bool(drifted), share, math.nan, first, columns, critical
        )
        outputs.append(state.alerts.observe(incident))
        if not incident.drifted:  # traffic is back at the reference: a change is over
            outputs.append(self._end_change(state, first))
        outputs.append(self.retraining.observe(window, drifted, share))
        return [o for o in outputs if o is not None]

    def _change(self, state: _VersionPolicy, window: list[Evaluation]) -> list[Output]:
        """A window tested against the recent regime (or an ADWIN cut there): its columns
        that moved make one change observation."""
        moved: list[Column] = []
        for evaluation in window:
            result = evaluation.result
            for j in np.flatnonzero(result.drifted):
                moved.append(
                    (
                        evaluation.features[j],
                        result.detector,
                        float(result.statistic[j]),
                        float(result.threshold[j]),
                    )
                )
        first = window[0]
        outputs: list[Output | None] = []
        if first.regime > state.changed_regime > 0:  # the next regime is established
            outputs.append(self._end_change(state, first))
        if moved:
            monitored = {feature for evaluation in window for feature in evaluation.features}
            share = len({column[0] for column in moved}) / max(len(monitored), 1)
            observation = Observation(
                "", CHANGE_DETECTOR, True, share, math.nan, first, tuple(moved), critical=False
            )
            fired = state.alerts.event(observation)
            if fired is not None:
                state.changed_regime = first.regime
            outputs.append(fired)
        return [o for o in outputs if o is not None]

    def _serving(self, state: _VersionPolicy, evaluation: Evaluation) -> list[Output]:
        """A performance window, an error-stream change point, a coverage or a latency
        check: alert lifecycles; degraded performance is also a retrain reason."""
        result = evaluation.result
        detector = result.detector
        statistic, threshold = float(result.statistic[0]), float(result.threshold[0])
        drifted = bool(result.drifted[0])
        outputs: list[Output | None] = []
        if detector in VOLUME_DETECTORS:  # transitions, each one news
            observation = Observation("", detector, drifted, statistic, threshold, evaluation)
            book = state.alerts
            change = book.event(observation) if drifted else book.end(observation)
            return [] if change is None else [change]
        if detector == ERROR_CHANGE_DETECTOR:
            state.error_changed = True
            return [
                o
                for o in [
                    state.alerts.observe(
                        Observation("", detector, True, statistic, math.nan, evaluation)
                    )
                ]
                if o is not None
            ]
        outputs.append(
            state.alerts.observe(
                Observation("", detector, drifted, statistic, threshold, evaluation)
            )
        )
        if detector == PERFORMANCE_DETECTOR:
            if not state.error_changed and ERROR_CHANGE_DETECTOR in {
                d for _, d in state.alerts.states
            }:
                quiet = Observation("", ERROR_CHANGE_DETECTOR, False, 0.0, math.nan, evaluation)
                outputs.append(state.alerts.observe(quiet))
            state.error_changed = False
            outputs.append(self.retraining.degraded(evaluation, drifted))
        return [o for o in outputs if o is not None]

    @staticmethod
    def _end_change(state: _VersionPolicy, evaluation: Evaluation) -> Alert | None:
        state.changed_regime = 0
        return state.alerts.end(Observation("", CHANGE_DETECTOR, False, 0.0, math.nan, evaluation))


__all__ = ["ADWIN", "Decisions", "Output", "Policy", "PolicyState"]
