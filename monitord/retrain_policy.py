"""The retrain policy of every model: drift episodes, cron schedules and manual requests,
under one set of guards.

**Drift.** Each model version's `RetrainEpisodes` proposes a request when an episode opens.

**Performance.** A version's `RetrainEpisodes.degraded` proposes a request when its
performance stays degraded (with ``performance.retrain_on_degradation``).

**Schedule.** ``[[models]] retrain_schedule`` (crontab, in ``retrain_schedule_timezone``,
default UTC) asks for one request per slot (`monitord.schedule`) for the model's current
version; id from model, version and the slot.

**Manual.** `Retraining.request_manual` (admin endpoint) queues a request for a version
(default: the current one); id from model, version and a request id (default: the time).
`Retraining.due` hands queued and scheduled requests out.

**Guards**, in this order: a drift request waits ``retrain_cooldown_windows`` windows after
the version's last request (any reason); drift and scheduled requests need
``retrain_min_events`` new events of the version since its last request, and must fit in
``retrain_daily_cap`` requests of the model per UTC day (of event time for drift, of the
slot for a schedule). A manual request is an operator's decision: never held back, but it
counts. A held-back request is a `Suppressed` decision with the evidence of the request it
would have been, once per episode and guard, and once per slot; `take_held` hands them to
the caller, which logs and records them (the audit log): this module does no I/O.

**Versions.** The first window of a new version of a model closes the episodes of its other
versions for good: a retrain that deployed a new version no longer triggers for the old one.
The current version is the one whose first window came last.

**Threads.** Only `request_manual` runs on another thread (the admin endpoint's). It reads
the models and versions known as the loop last published them (an immutable `_Known` per
model, replaced, never changed) and puts the request on a queue that `due` drains on the
loop: no state is shared but the queue, so nothing needs a lock.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import NonNegativeInt

from monitord.alerts import stable_id
from monitord.clock import iso
from monitord.config import ModelSettings, PolicySettings
from monitord.monitor import Evaluation
from monitord.retrain import (
    Drifted,
    EpisodeState,
    Guard,
    Lineage,
    RetrainEpisodes,
    RetrainTrigger,
    Suppressed,
    manual_request,
    request,
)
from monitord.schedule import DEFAULT_ZONE, CronSchedule, ScheduleState, utc_day
from monitord.state import StateModel

DAYS_KEPT = 3  # request counts kept per model: today and a margin for late event time


class ModelRetrainState(StateModel):
    """A `ModelRetrain`'s stored state."""

    seq: NonNegativeInt
    current: str
    requests: dict[str, NonNegativeInt]
    schedule: ScheduleState | None


class RetrainState(EpisodeState):
    """A version's retrain state as stored: its episodes and its model's state."""

    model: ModelRetrainState | None = None  # absent before models kept state


class ModelRetrain:
    """Per-model state: the current version, requests per UTC day and the schedule."""

    def __init__(
        self, settings: PolicySettings, schedule: str | None, zone: str = DEFAULT_ZONE
    ) -> None:
        self.settings = settings
        self._expression, self._zone = schedule, zone
        self.reset()

    def reset(self) -> None:
        self.current = ""  # the version whose first window came last
        self.seq = 0  # bumped by every change: the newest of several snapshots wins
        self.requests: dict[str, int] = {}  # UTC day -> requests sent
        self.schedule = (
            None if self._expression is None else CronSchedule(self._expression, self._zone)
        )

    def count(self, day: str) -> None:
        self.requests[day] = self.requests.get(day, 0) + 1
        for old in sorted(self.requests)[:-DAYS_KEPT]:
            del self.requests[old]
        self.seq += 1

    def snapshot(self) -> ModelRetrainState:
        return ModelRetrainState(
            seq=self.seq,
            current=self.current,
            requests=dict(self.requests),
            schedule=None if self.schedule is None else self.schedule.snapshot(),
        )

    def restore(self, state: ModelRetrainState) -> None:
        if state.seq < self.seq:
            return  # this process knows newer state (another partition's versions)
        self.seq = state.seq
        self.current = state.current
        self.requests = dict(state.requests)
        if self.schedule is not None and state.schedule is not None:
            self.schedule.restore(state.schedule)


class UnknownModelError(LookupError, ValueError):
    """A manual request for a model or version this daemon does not know (the admin
    endpoint answers 404); a ValueError too, like every refused request."""


@dataclass(frozen=True)
class _Known:
    """A model as the loop last published it for manual requests: its current version
    ("" before any window) and its versions seen or given a profile, each with the
    lineage of its latest window (None: none seen)."""

    current: str
    versions: Mapping[str, Lineage | None]


class Retraining:
    """Retrain decisions of every model: drift episodes per version, schedules, manual
    requests and the guards (see the module docstring)."""

    def __init__(
        self,
        settings: PolicySettings,
        config_hash: str,
        models: Sequence[ModelSettings] = (),
        *,
        retrain_on_degradation: bool = True,
    ) -> None:
        self.settings, self.config_hash = settings, config_hash
        self.retrain_on_degradation = retrain_on_degradation
        self._configured = {m.name: m for m in models}
        self._episodes: dict[tuple[str, str], RetrainEpisodes] = {}
        self._models: dict[str, ModelRetrain] = {}
        self._held: list[Suppressed] = []  # decided since the last `take_held`
        self._requests: queue.SimpleQueue[RetrainTrigger] = queue.SimpleQueue()
        self._known: Mapping[str, _Known] = {}  # replaced by `publish`, read by any thread
        for name, configured in self._configured.items():
            if configured.retrain_schedule is not None:
                self._model(name)
        self.publish()

    def settings_for(self, model: str) -> PolicySettings:
        configured = self._configured.get(model)
        if configured is not None and configured.policy is not None:
            return configured.policy
        return self.settings

    def _model(self, name: str) -> ModelRetrain:
        state = self._models.get(name)
        if state is None:
            configured = self._configured.get(name)
            if configured is None:
                state = ModelRetrain(self.settings_for(name), None)
            else:
                state = ModelRetrain(
                    self.settings_for(name),
                    configured.retrain_schedule,
                    configured.retrain_schedule_timezone,
                )
            self._models[name] = state
        return state

    def episodes(self, model: str, version: str) -> RetrainEpisodes:
        """A version's episode state (created on first sight)."""
        return self._episodes_of(model, version)

    def take_held(self) -> list[Suppressed]:
        """The requests held back since the last call, for the caller to log and record."""
        held, self._held = self._held, []
        return held

    def publish(self) -> None:
        """Publish the models and versions known, with their latest windows, for
        `request_manual` on other threads; the loop calls it after each batch it decided."""
        versions: dict[str, dict[str, Lineage | None]] = {}
        for name in (*self._configured, *self._models):
            configured = self._configured.get(name)
            versions[name] = dict.fromkeys(configured.profiles if configured else (), None)
        for (name, version), episodes in self._episodes.items():
            versions.setdefault(name, {})[version] = episodes.latest
        self._known = {
            name: _Known(self._models[name].current if name in self._models else "", seen)
            for name, seen in versions.items()
        }

    def _episodes_of(self, model: str, version: str) -> RetrainEpisodes:
        key = (model, version)
        episodes = self._episodes.get(key)
        if episodes is None:
            self._model(model)
            episodes = self._episodes[key] = RetrainEpisodes(
                self.settings_for(model), self.config_hash
            )
        return episodes

    def observe(
        self, window: list[Evaluation], drifted: Drifted, share: float
    ) -> RetrainTrigger | None:
        """Fold one window of a model version in; the drift request, if one goes out."""
        first = window[0]
        state = self._model(first.model)
        episodes = self._episodes_of(first.model, first.version)
        if episodes.latest is None and state.current != first.version:
            self._switch(first.model, first.version)
        candidate = episodes.observe(window, drifted, share)
        if candidate is None:
            return None
        return self._decide(state, episodes, candidate, utc_day(candidate.end_time))

    def degraded(self, evaluation: Evaluation, degraded: bool) -> RetrainTrigger | None:
        """Fold one performance window of a model version in; the performance request, if
        one goes out."""
        episodes = self._episodes_of(evaluation.model, evaluation.version)
        candidate = episodes.degraded(evaluation, degraded, ask=self.retrain_on_degradation)
        return None if candidate is None else self.propose(candidate)

    def propose(self, trigger: RetrainTrigger) -> RetrainTrigger | None:
        """A request a version's own rule made (performance degraded), under the guards;
        None when held back (see `take_held`) or the version was superseded by a newer one."""
        state = self._model(trigger.model)
        episodes = self._episodes_of(trigger.model, trigger.version)
        if episodes.superseded:
            return None
        return self._decide(state, episodes, trigger, utc_day(trigger.end_time))

    def _switch(self, model: str, version: str) -> None:
        for (name, other), episodes in self._episodes.items():
            if name == model and other != version:
                episodes.supersede()
        state = self._models[model]
        state.current = version
        state.seq += 1

    def _decide(
        self,
        state: ModelRetrain,
        episodes: RetrainEpisodes | None,
        trigger: RetrainTrigger,
        day: str,
    ) -> RetrainTrigger | None:
        held = self._guard(state, episodes, trigger, day)
        if held is None:
            state.count(day)
            if episodes is not None:
                episodes.requested()
            return trigger
        guard, detail = held
        if trigger.reason != "drift" or episodes is None or episodes.hold(guard):
            self._held.append(
                Suppressed(stable_id(trigger.id, "suppressed", guard), guard, detail, trigger)
            )
        return None

    def _guard(
        self,
        state: ModelRetrain,
        episodes: RetrainEpisodes | None,
        trigger: RetrainTrigger,
        day: str,
    ) -> tuple[Guard, str] | None:
        settings = state.settings
        automatic = trigger.reason in ("drift", "performance")
        if automatic and episodes is not None and episodes.cooldown > 0:
            return "cooldown", (
                f"{episodes.cooldown} more window(s) of cooldown after the last request of "
                f"{trigger.model}/{trigger.version}"
            )
        new = 0 if episodes is None else episodes.events_since_request
        if new < settings.retrain_min_events:
            return "min_events", (
                f"{new} new events of {trigger.model}/{trigger.version} since its last "
                f"request; {settings.retrain_min_events} needed"
            )
        cap, made = settings.retrain_daily_cap, state.requests.get(day, 0)
        if cap is not None and made >= cap:
            return "daily_cap", (
                f"{made} request(s) for {trigger.model} on {day} (UTC) already; the daily cap "
                f"is {cap}"
            )
        return None

    def request_manual(
        self,
        model: str,
        reason_text: str,
        now: float,
        version: str | None = None,
        request_id: str | None = None,
    ) -> RetrainTrigger:
        """Queue a manual request for ``version`` (default: the model's current version);
        `due` hands it out. `UnknownModelError` (with advice) for a model or version this daemon
        does not know (neither seen nor given a profile in the config); ValueError when no
        version is named and none was seen yet. Safe on any thread (see the module doc)."""
        known = self._known  # one published snapshot throughout
        state = known.get(model)
        if state is None:
            raise UnknownModelError(
                f"model {model!r} is unknown to this daemon (known: "
                f"{', '.join(sorted(known)) or 'none yet'}); another replica may own it, or use "
                "`monitord retrain --direct`"
            )
        chosen = version or state.current
        if not chosen:
            raise ValueError(
                f"model {model!r}: no version seen yet, so there is no current version; "
                "name the version to retrain"
            )
        if chosen not in state.versions:
            raise UnknownModelError(
                f"model {model!r} has no version {chosen!r} known to this daemon (known: "
                f"{', '.join(sorted(state.versions)) or 'none yet'}); another replica may have "
                "seen it, or use `monitord retrain --direct`"
            )
        trigger = manual_request(
            model,
            chosen,
            reason_text,
            now,
            self.config_hash,
            request_id=request_id,
            lineage=state.versions[chosen],
        )
        self._requests.put(trigger)
        return trigger

    def _queued(self) -> list[RetrainTrigger]:
        """The manual requests queued since the last call, each id once."""
        queued: dict[str, RetrainTrigger] = {}
        while True:
            try:
                trigger = self._requests.get_nowait()
            except queue.Empty:
                return list(queued.values())
            queued.setdefault(trigger.id, trigger)

    def due(self, now: float) -> list[RetrainTrigger]:
        """Queued manual requests and the scheduled ones due at ``now``."""
        out = []
        for trigger in self._queued():
            episodes = self._episodes.get((trigger.model, trigger.version))
            at = now if trigger.requested_at is None else trigger.requested_at
            self._model(trigger.model).count(utc_day(at))
            if episodes is not None:
                episodes.requested()
            out.append(trigger)
        for name, state in self._models.items():
            schedule = state.schedule
            slot = None if schedule is None else schedule.due(now)
            if schedule is None or slot is None or not state.current:
                continue  # without a version seen, a due slot waits for one
            schedule.take(slot)
            state.seq += 1
            episodes = self._episodes.get((name, state.current))
            trigger = request(
                stable_id(name, state.current, "schedule", iso(slot)),
                "schedule",
                name,
                state.current,
                None if episodes is None else episodes.latest,
                self.config_hash,
                detail=f"cron {schedule.description}, slot {iso(slot)}",
                requested_at=slot,
            )
            decided = self._decide(state, episodes, trigger, utc_day(slot))
            if decided is not None:
                out.append(decided)
        return out  # nothing `request_manual` reads changed: no `publish`

    def snapshot(self, key: tuple[str, str]) -> RetrainState:
        """A version's episode state and its model's state."""
        episodes = self._episodes_of(*key).snapshot()
        return RetrainState(**dict(episodes), model=self._models[key[0]].snapshot())

    def restore(self, key: tuple[str, str], state: RetrainState) -> None:
        self._episodes_of(*key).restore(state)
        model = self._models[key[0]]
        if state.model is not None:
            model.restore(state.model)
        if not model.current:
            model.current = key[1]
        self.publish()

    def drop(self, keys: Sequence[tuple[str, str]]) -> None:
        """Forget versions (their partition moved); a model without versions starts afresh."""
        for key in keys:
            self._episodes.pop(key, None)
        for name in {model for model, _ in keys}:
            if any(model == name for model, _ in self._episodes):
                continue
            state = self._models.get(name)
            if state is not None and state.schedule is not None:
                state.reset()  # the schedule stays; it fires once a version is known
            else:
                self._models.pop(name, None)
        self.publish()


__all__ = [
    "ModelRetrain",
    "ModelRetrainState",
    "RetrainState",
    "Retraining",
    "UnknownModelError",
]
