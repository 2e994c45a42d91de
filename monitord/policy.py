"""Policy: turns evaluations into alerts and retraining requests.

Statistics never decide policy; this module does (DESIGN.md section 4). The rules here:

- **Alerts**, one label set per (model, version, feature, detector): *firing* when the feature
  drifts while not firing, *resolved* at the first later window evaluation where it is clean.
  ADWIN reports change points only, so its label set resolves at the first window
  evaluation with no new change point for that feature.
- **Retrain requests**, per model version: a drift *episode* opens when at least
  ``retrain_feature_share`` of the monitored columns drifted (in any window test) for
  ``retrain_consecutive_windows`` windows in a row, and sends one request; it closes after
  as many clean windows in a row. No new episode opens for ``retrain_cooldown_windows``
  windows after a request.

Every output gets a deterministic id from model, version, rule and window, so replays and
restarts produce the same ids and consumers can deduplicate.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from monitord.config import PolicySettings
from monitord.events import PREDICTION
from monitord.monitor import Evaluation, OffsetRange

ADWIN = "adwin"


def stable_id(*parts: object) -> str:
    """A deterministic id: the first 32 hex digits of SHA-256 over the parts."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Alert:
    id: str
    status: Literal["firing", "resolved"]
    severity: Literal["warning", "critical"]
    model: str
    version: str
    feature: str
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


@dataclass(frozen=True)
class RetrainTrigger:
    id: str  # also the idempotency key
    reason: Literal["drift", "schedule", "manual"]
    model: str
    version: str
    drifted_features: tuple[str, ...]
    statistics: tuple[tuple[str, str, float, float], ...]  # (feature, detector, value, threshold)
    feature_share: float
    windows: int  # consecutive windows with material drift
    profile_id: str
    first_row: int
    row: int
    offset: OffsetRange
    offsets: tuple[OffsetRange, ...]
    start_time: float
    end_time: float
    config_hash: str


Output = Alert | RetrainTrigger


@dataclass
class _VersionState:
    firing: dict[tuple[str, str], Alert] = field(default_factory=dict)  # (feature, detector)
    adwin_since_window: set[str] = field(default_factory=set)  # features cut since last window
    drifting_windows: int = 0
    clean_windows: int = 0
    in_episode: bool = False
    cooldown: int = 0
    episode_first_row: int = -1


class Policy:
    """Stateful decisions over the evaluations of every model version."""

    def __init__(self, settings: PolicySettings, config_hash: str) -> None:
        self.settings = settings
        self.config_hash = config_hash
        self._state: dict[tuple[str, str], _VersionState] = defaultdict(_VersionState)

    def decide(self, evaluations: list[Evaluation]) -> list[Output]:
        """Outputs for a batch of evaluations (given in row order per model version)."""
        outputs: list[Output] = []
        window_groups: dict[tuple[str, str, int], list[Evaluation]] = {}
        for evaluation in evaluations:
            key = (evaluation.model, evaluation.version, evaluation.result.row)
            if evaluation.result.detector == ADWIN:
                outputs += self._adwin(evaluation)
            else:
                window_groups.setdefault(key, []).append(evaluation)
        for group in window_groups.values():
            outputs += self._window(group)
        return outputs

    def _adwin(self, evaluation: Evaluation) -> list[Output]:
        state = self._state[(evaluation.model, evaluation.version)]
        outputs: list[Output] = []
        for j in np.flatnonzero(evaluation.result.drifted):
            feature = evaluation.features[j]
            state.adwin_since_window.add(feature)
            if (feature, ADWIN) not in state.firing:
                alert = _feature_alert("firing", evaluation, int(j))
                state.firing[(feature, ADWIN)] = alert
                outputs.append(alert)
        return outputs

    def _window(self, group: list[Evaluation]) -> list[Output]:
        first = group[0]
        state = self._state[(first.model, first.version)]
        outputs: list[Output] = []
        drifted: dict[str, tuple[str, float, float]] = {}
        for evaluation in group:
            result = evaluation.result
            for j, feature in enumerate(evaluation.features):
                label = (feature, result.detector)
                if result.drifted[j]:
                    drifted.setdefault(
                        feature,
                        (result.detector, float(result.statistic[j]), float(result.threshold[j])),
                    )
                    if label not in state.firing:
                        state.firing[label] = _feature_alert("firing", evaluation, j)
                        outputs.append(state.firing[label])
                elif label in state.firing:
                    del state.firing[label]
                    outputs.append(_feature_alert("resolved", evaluation, j))
        for feature, detector in [k for k in state.firing if k[1] == ADWIN]:
            if feature not in state.adwin_since_window:
                firing = state.firing.pop((feature, detector))
                outputs.append(_alert("resolved", first, feature, detector, 0.0, firing.threshold))
        state.adwin_since_window.clear()
        outputs += self._retrain(state, group, drifted)
        return outputs

    def _retrain(
        self,
        state: _VersionState,
        group: list[Evaluation],
        drifted: dict[str, tuple[str, float, float]],
    ) -> list[Output]:
        first = group[0]
        monitored = {f for e in group for f in e.features}
        share = len(drifted) / max(len(monitored), 1)
        if state.cooldown > 0:
            state.cooldown -= 1
        needed = self.settings.retrain_consecutive_windows
        if share < self.settings.retrain_feature_share:
            state.drifting_windows = 0
            state.clean_windows += 1
            if state.in_episode and state.clean_windows >= needed:
                state.in_episode = False
            return []
        state.clean_windows = 0
        if state.drifting_windows == 0:
            state.episode_first_row = min(e.result.first_row for e in group)
        state.drifting_windows += 1
        if state.in_episode or state.drifting_windows < needed or state.cooldown:
            return []
        state.in_episode = True
        state.cooldown = self.settings.retrain_cooldown_windows
        widest = max(group, key=lambda e: e.end_time - e.start_time)
        trigger = RetrainTrigger(
            id=stable_id(
                first.model,
                first.version,
                "retrain",
                first.profile_id,
                state.episode_first_row,
                first.result.row,
            ),
            reason="drift",
            model=first.model,
            version=first.version,
            drifted_features=tuple(sorted(drifted)),
            statistics=tuple((f, *drifted[f]) for f in sorted(drifted)),
            feature_share=share,
            windows=state.drifting_windows,
            profile_id=first.profile_id,
            first_row=state.episode_first_row,
            row=first.result.row,
            offset=_point(first),
            offsets=widest.offsets,
            start_time=min(e.start_time for e in group),
            end_time=max(e.end_time for e in group),
            config_hash=self.config_hash,
        )
        return [trigger]


def _point(evaluation: Evaluation) -> OffsetRange:
    record = evaluation.last_record
    return OffsetRange(record.topic, record.partition, record.offset, record.offset)


def _alert(
    status: Literal["firing", "resolved"],
    evaluation: Evaluation,
    feature: str,
    detector: str,
    statistic: float,
    threshold: float,
) -> Alert:
    """The alert of one label set decided by ``evaluation`` (its window is the evidence)."""
    result = evaluation.result
    return Alert(
        id=stable_id(
            evaluation.model,
            evaluation.version,
            detector,
            feature,
            status,
            evaluation.profile_id,
            result.first_row,
            result.row,
        ),
        status=status,
        severity="critical" if feature == PREDICTION else "warning",
        model=evaluation.model,
        version=evaluation.version,
        feature=feature,
        detector=detector,
        statistic=statistic,
        threshold=threshold,
        profile_id=evaluation.profile_id,
        first_row=result.first_row,
        row=result.row,
        offset=_point(evaluation),
        offsets=evaluation.offsets,
        start_time=evaluation.start_time,
        end_time=evaluation.end_time,
    )


def _feature_alert(status: Literal["firing", "resolved"], evaluation: Evaluation, j: int) -> Alert:
    result = evaluation.result
    return _alert(
        status,
        evaluation,
        evaluation.features[j],
        result.detector,
        float(result.statistic[j]),
        float(result.threshold[j]),
    )
