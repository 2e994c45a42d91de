"""Retrain requests decided by drift: material and persistent, once per episode.

A drift *episode* of a model version opens when at least ``retrain_feature_share`` of its
monitored columns drifted (in any window test) for ``retrain_consecutive_windows`` windows
in a row, and sends one request; it closes after as many clean windows in a row. No new
episode opens for ``retrain_cooldown_windows`` windows after a request. The request's id is
its idempotency key, derived from model, version, reference and the episode's windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from monitord.alerts import stable_id
from monitord.config import PolicySettings
from monitord.monitor import Evaluation, OffsetRange

Drifted = dict[str, tuple[str, float, float]]
"""Drifted column -> (detector, statistic, threshold) of the first test that flagged it."""


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


@dataclass
class RetrainEpisodes:
    """Episode state of one model version."""

    settings: PolicySettings
    config_hash: str
    drifting_windows: int = 0
    clean_windows: int = 0
    in_episode: bool = False
    cooldown: int = 0
    episode_first_row: int = -1

    _STATE = ("drifting_windows", "clean_windows", "in_episode", "cooldown", "episode_first_row")

    def snapshot(self) -> dict[str, int | bool]:
        return {name: getattr(self, name) for name in self._STATE}

    def restore(self, state: dict[str, int | bool]) -> None:
        for name in self._STATE:
            setattr(self, name, type(getattr(self, name))(state[name]))

    def observe(
        self, window: list[Evaluation], drifted: Drifted, share: float
    ) -> RetrainTrigger | None:
        """Fold one window (all its tests) in; return a request when an episode opens."""
        if self.cooldown > 0:
            self.cooldown -= 1
        needed = self.settings.retrain_consecutive_windows
        if share < self.settings.retrain_feature_share:
            self.drifting_windows = 0
            self.clean_windows += 1
            if self.in_episode and self.clean_windows >= needed:
                self.in_episode = False
            return None
        self.clean_windows = 0
        if self.drifting_windows == 0:
            self.episode_first_row = min(e.result.first_row for e in window)
        self.drifting_windows += 1
        if self.in_episode or self.drifting_windows < needed or self.cooldown:
            return None
        self.in_episode = True
        self.cooldown = self.settings.retrain_cooldown_windows
        first = window[0]
        record = first.last_record
        widest = max(window, key=lambda e: e.end_time - e.start_time)
        return RetrainTrigger(
            id=stable_id(
                first.model,
                first.version,
                "retrain",
                first.profile_id,
                self.episode_first_row,
                first.result.row,
            ),
            reason="drift",
            model=first.model,
            version=first.version,
            drifted_features=tuple(sorted(drifted)),
            statistics=tuple((f, *drifted[f]) for f in sorted(drifted)),
            feature_share=share,
            windows=self.drifting_windows,
            profile_id=first.profile_id,
            first_row=self.episode_first_row,
            row=first.result.row,
            offset=OffsetRange(record.topic, record.partition, record.offset, record.offset),
            offsets=widest.offsets,
            start_time=min(e.start_time for e in window),
            end_time=max(e.end_time for e in window),
            config_hash=self.config_hash,
        )
