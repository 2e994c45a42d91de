"""Retrain requests and drift episodes.

`RetrainTrigger` is a request with its lineage: model, version, reason (drift, performance,
schedule or manual), the statistics and features that fired, the reference profile id, the
data range (offsets and event-time range) of the deciding window, and the config hash. Its
id is the idempotency key. `Suppressed` is a request the policy held back, with the guard that did.

A window of a model version is *material* when at least ``retrain_feature_share`` of its
monitored columns drifted (in any window test) or, with ``retrain_on_prediction``, when its
prediction did. A drift *episode* (`RetrainEpisodes`, one per version) opens after
``retrain_consecutive_windows`` material windows in a row and asks for one request, whose
id derives from model, version, reference and the episode's windows; it closes after as
many clean windows in a row. A version whose performance window is degraded for
``retrain_consecutive_windows`` windows in a row asks for one request per degradation
(`RetrainEpisodes.degraded`). Whether a request goes out (cooldown, minimum events, daily
cap), and schedules and manual requests, are `monitord.retrain_policy`'s.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

from pydantic import Field, NonNegativeInt

from monitord.alerts import PERFORMANCE_DETECTOR, stable_id
from monitord.config import PolicySettings
from monitord.events import PREDICTION
from monitord.monitor import Evaluation, OffsetRange
from monitord.provenance import Provenance
from monitord.state import StateModel

Drifted = dict[str, tuple[str, float, float]]
"""Drifted column -> (detector, statistic, threshold) of the first test that flagged it."""

Reason = Literal["drift", "schedule", "manual", "performance"]
Guard = Literal["cooldown", "min_events", "daily_cap"]
Statistics = tuple[tuple[str, str, float, float], ...]  # (feature, detector, value, threshold)

NO_OFFSET = OffsetRange("", -1, -1, -1)
"""The deciding record of a request made before any window of its version was seen."""

MAX_REASON_CHARS = 1000


@dataclass(frozen=True)
class RetrainTrigger:
    id: str  # also the idempotency key
    reason: Reason
    model: str
    version: str
    drifted_features: tuple[str, ...]
    statistics: Statistics
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
    detail: str = ""  # the rule that fired, the cron slot, or the operator's reason
    requested_at: float | None = None  # schedule: the slot; manual: when it was asked for
    # Performance: the deciding window's metrics, the reference's and the label delay.
    evidence: tuple[tuple[str, float], ...] = ()
    registry: Provenance | None = None  # the reference's model registry version and artifact


@dataclass(frozen=True)
class Suppressed:
    """A request the policy held back: which guard, why, and the request it would have been."""

    id: str
    guard: Guard
    detail: str
    trigger: RetrainTrigger


class DecisionRecorder(Protocol):
    """Where the caller of the policy records the requests it held back
    (`monitord.audit.AuditLog`; see `monitord.audit.record_held`)."""

    def record(self, decisions: list[Suppressed]) -> None: ...


def _absent(value: object) -> bool:
    return value is None


@dataclass(frozen=True)
class Lineage:
    """The evidence and data range of one window, as a request carries them (stored as a
    dict of these fields: `EpisodeState.latest`)."""

    profile_id: str
    statistics: Statistics
    feature_share: float
    windows: int
    first_row: int
    row: int
    offset: OffsetRange
    offsets: tuple[OffsetRange, ...]
    start_time: float
    end_time: float
    # Where the reference came from (a model registry); stored only when there is one.
    registry: Annotated[Provenance | None, Field(exclude_if=_absent)] = None

    @classmethod
    def of(cls, window: list[Evaluation], drifted: Drifted, share: float, windows: int) -> Lineage:
        first = window[0]
        record = first.last_record
        widest = max(window, key=lambda e: e.end_time - e.start_time)
        return cls(
            profile_id=first.profile_id,
            statistics=tuple((f, *drifted[f]) for f in sorted(drifted)),
            feature_share=share,
            windows=windows,
            first_row=min(e.result.first_row for e in window),
            row=first.result.row,
            offset=OffsetRange(record.topic, record.partition, record.offset, record.offset),
            offsets=widest.offsets,
            start_time=min(e.start_time for e in window),
            end_time=max(e.end_time for e in window),
            registry=first.registry,
        )


def request(
    id: str,
    reason: Reason,
    model: str,
    version: str,
    lineage: Lineage | None,
    config_hash: str,
    *,
    detail: str = "",
    requested_at: float | None = None,
    evidence: tuple[tuple[str, float], ...] = (),
) -> RetrainTrigger:
    """A request carrying ``lineage`` (None: no window of the version seen; the data range
    is then empty and its times are ``requested_at``)."""
    if lineage is None:
        at = 0.0 if requested_at is None else requested_at
        lineage = Lineage("", (), 0.0, 0, -1, -1, NO_OFFSET, (), at, at)
    return RetrainTrigger(
        id=id,
        reason=reason,
        model=model,
        version=version,
        drifted_features=tuple(s[0] for s in lineage.statistics),
        config_hash=config_hash,
        detail=detail,
        requested_at=requested_at,
        evidence=evidence,
        **{f.name: getattr(lineage, f.name) for f in dataclasses.fields(lineage)},
    )


def manual_request(
    model: str,
    version: str,
    reason_text: str,
    now: float,
    config_hash: str,
    *,
    request_id: str | None = None,
    lineage: Lineage | None = None,
) -> RetrainTrigger:
    """A manual request; its id derives from model, version and ``request_id`` (default:
    the request time), so the same request id always names the same request."""
    text = reason_text.strip()
    if not text:
        raise ValueError("reason: say why the model should be retrained (it goes to the audit log)")
    if len(text) > MAX_REASON_CHARS:
        raise ValueError(f"reason: at most {MAX_REASON_CHARS} characters, got {len(text)}")
    if not model or not version:
        raise ValueError("a manual retrain needs a model and a version")
    rid = request_id or repr(now)
    return request(
        stable_id(model, version, "manual", rid),
        "manual",
        model,
        version,
        lineage,
        config_hash,
        detail=text,
        requested_at=now,
    )


class EpisodeState(StateModel):
    """`RetrainEpisodes`' stored state. Fields added after the first checkpoints default
    to the value a fresh version starts with."""

    drifting_windows: NonNegativeInt
    clean_windows: NonNegativeInt
    in_episode: bool
    cooldown: NonNegativeInt
    episode_first_row: int  # -1: no episode yet
    superseded: bool = False
    blocked: Guard | Literal[""] = ""
    last_request_row: int = -1
    latest: Lineage | None = None


@dataclass
class RetrainEpisodes:
    """Episode state of one model version."""

    settings: PolicySettings
    config_hash: str
    drifting_windows: int = 0
    clean_windows: int = 0
    in_episode: bool = False  # a request was made for the drift under way
    cooldown: int = 0
    episode_first_row: int = -1
    superseded: bool = False  # a newer version of the model appeared
    blocked: Guard | Literal[""] = ""  # the guard that last held the episode's request back
    last_request_row: int = -1  # the version's row at its last request
    latest: Lineage | None = None  # the last window seen
    # Stored in `monitord.policy.PolicyState`, where they were before they moved here.
    degraded_windows: int = 0  # performance windows degraded in a row
    degradation_requested: bool = False  # the degradation under way asked for a retrain

    def snapshot(self) -> EpisodeState:
        return EpisodeState(
            drifting_windows=self.drifting_windows,
            clean_windows=self.clean_windows,
            in_episode=self.in_episode,
            cooldown=self.cooldown,
            episode_first_row=self.episode_first_row,
            superseded=self.superseded,
            blocked=self.blocked,
            last_request_row=self.last_request_row,
            latest=self.latest,
        )

    def restore(self, state: EpisodeState) -> None:
        self.drifting_windows = state.drifting_windows
        self.clean_windows = state.clean_windows
        self.in_episode = state.in_episode
        self.cooldown = state.cooldown
        self.episode_first_row = state.episode_first_row
        self.superseded = state.superseded
        self.blocked = state.blocked
        self.last_request_row = state.last_request_row
        self.latest = state.latest

    @property
    def events_since_request(self) -> int:
        """Events of the version monitored since its last request (or since it started)."""
        return (-1 if self.latest is None else self.latest.row) - self.last_request_row

    def observe(
        self, window: list[Evaluation], drifted: Drifted, share: float
    ) -> RetrainTrigger | None:
        """Fold one window (all its tests) in; the drift request when an episode asks for one.

        The guards are the caller's: it reports back with `requested` or `hold`.
        """
        if self.cooldown > 0:
            self.cooldown -= 1
        settings = self.settings
        needed = settings.retrain_consecutive_windows
        by_share = share >= settings.retrain_feature_share
        by_prediction = settings.retrain_on_prediction and PREDICTION in drifted
        if not (by_share or by_prediction):
            self.drifting_windows = 0
            self.clean_windows += 1
            if self.in_episode and self.clean_windows >= needed:
                self.in_episode = False
            self.blocked = ""
            self.latest = Lineage.of(window, drifted, share, 0)
            return None
        self.clean_windows = 0
        if self.drifting_windows == 0:
            self.episode_first_row = min(e.result.first_row for e in window)
            self.blocked = ""
        self.drifting_windows += 1
        self.latest = Lineage.of(window, drifted, share, self.drifting_windows)
        if self.superseded or self.in_episode or self.drifting_windows < needed:
            return None
        first = window[0]
        limit = settings.retrain_feature_share
        rule = (
            f"share {share:.3g} of the monitored columns drifted (threshold {limit:g})"
            if by_share
            else f"the prediction drifted (share {share:.3g}, below the threshold {limit:g})"
        )
        return request(
            stable_id(
                first.model,
                first.version,
                "retrain",
                first.profile_id,
                self.episode_first_row,
                first.result.row,
            ),
            "drift",
            first.model,
            first.version,
            dataclasses.replace(self.latest, first_row=self.episode_first_row),
            self.config_hash,
            detail=f"{rule} for {self.drifting_windows} windows in a row",
        )

    def degraded(
        self, evaluation: Evaluation, degraded: bool, *, ask: bool = True
    ) -> RetrainTrigger | None:
        """Fold one performance window in; the performance request when it has been
        degraded for ``retrain_consecutive_windows`` windows in a row, once per degradation
        (never without ``ask``: `performance.retrain_on_degradation`).

        The guards are the caller's, as for `observe`.
        """
        if not degraded:
            self.degraded_windows = 0
            self.degradation_requested = False
            return None
        self.degraded_windows += 1
        needed = self.settings.retrain_consecutive_windows
        if self.degradation_requested or self.degraded_windows < needed or not ask:
            return None
        self.degradation_requested = True
        result = evaluation.result
        metric = evaluation.features[0]
        value, limit = float(result.statistic[0]), float(result.threshold[0])
        evidence = dict(evaluation.evidence)
        drifted = {metric: (PERFORMANCE_DETECTOR, value, limit)}
        lineage = Lineage.of([evaluation], drifted, 0.0, self.degraded_windows)
        reference = evidence.get("reference_miss_rate", math.nan)
        delay = evidence.get("label_delay_p50_s", math.nan)
        detail = (
            f"{metric} {value:.4g} above {limit:.4g} (reference {reference:.4g}) for "
            f"{self.degraded_windows} windows of labelled rows in a row; median label delay "
            f"{delay:.4g} s"
        )
        return request(
            stable_id(
                evaluation.model,
                evaluation.version,
                "performance",
                evaluation.profile_id,
                result.first_row,
                result.row,
            ),
            "performance",
            evaluation.model,
            evaluation.version,
            lineage,
            self.config_hash,
            detail=detail,
            evidence=evaluation.evidence,
        )

    def requested(self) -> None:
        """A request (any reason) went out for this version."""
        self.cooldown = self.settings.retrain_cooldown_windows
        self.last_request_row = -1 if self.latest is None else self.latest.row
        self.blocked = ""
        if self.drifting_windows:
            self.in_episode = True  # the request answers the drift under way

    def hold(self, guard: Guard) -> bool:
        """The episode's request is held back by ``guard``; True if that is news."""
        news = self.blocked != guard
        self.blocked = guard
        return news

    def supersede(self) -> None:
        """A newer version of the model appeared: no more requests for this one."""
        self.superseded = True
        self.in_episode = False
        self.drifting_windows = 0
        self.blocked = ""


__all__ = [
    "DecisionRecorder",
    "Drifted",
    "EpisodeState",
    "Guard",
    "Lineage",
    "RetrainEpisodes",
    "RetrainTrigger",
    "Suppressed",
    "manual_request",
    "request",
]
