"""Event volume per model as alerts: a model that goes quiet, or floods.

``volume.quiet_after_s``: a model without events for that long (wall clock) fires
``MonitordModelQuiet``, resolved by its next event. ``volume.max_events_per_s``: a model
whose events over a minute exceed that rate fires ``MonitordModelFlood``, resolved by a
minute under it. Both off by default: how much traffic is normal is the operator's to say.
Each is an event-like alert on the model's newest version (`monitord.policy`), checked every
loop iteration, busy or idle, so a silent model is noticed without any event to carry it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from connectors.stream import Record
from detectors.detection import Detection
from monitord.alerts import FLOOD_DETECTOR, QUIET_DETECTOR
from monitord.config import VolumeSettings
from monitord.monitor import Evaluation

RATE_SPAN_S = 60.0
"""Wall-clock span over which a model's event rate is measured."""


@dataclass
class _Model:
    version: str
    record: Record  # the newest event's record (evidence)
    last_seen: float  # wall clock of the newest event
    span_start: float
    span_events: int = 0
    quiet: bool = False
    flooding: bool = False


class VolumeWatch:
    """Per-model event counts against the volume settings (module docstring)."""

    def __init__(self, settings: VolumeSettings) -> None:
        self.settings = settings
        self._models: dict[str, _Model] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.settings.quiet_after_s or self.settings.max_events_per_s)

    def seen(self, model: str, version: str, n: int, record: Record, now: float) -> None:
        """``n`` events of ``model``/``version`` were processed at wall clock ``now``."""
        if not self.enabled or n <= 0:
            return
        found = self._models.get(model)
        if found is None:
            self._models[model] = _Model(version, record, now, now, n)
            return
        found.version, found.record, found.last_seen = version, record, now
        found.span_events += n

    def check(self, now: float) -> list[Evaluation]:
        """Transitions at wall clock ``now``: a model gone quiet or back, flooding or not."""
        out: list[Evaluation] = []
        quiet_after, most = self.settings.quiet_after_s, self.settings.max_events_per_s
        for model, state in self._models.items():
            if quiet_after:
                silent = now - state.last_seen
                quiet = silent >= quiet_after
                if quiet != state.quiet:
                    state.quiet = quiet
                    out.append(
                        _evaluation(model, state, QUIET_DETECTOR, quiet, silent, quiet_after, now)
                    )
            if most and now - state.span_start >= RATE_SPAN_S:
                rate = state.span_events / (now - state.span_start)
                flooding = rate > most
                if flooding != state.flooding:
                    state.flooding = flooding
                    out.append(_evaluation(model, state, FLOOD_DETECTOR, flooding, rate, most, now))
                state.span_start, state.span_events = now, 0
        return out


def _evaluation(
    model: str,
    state: _Model,
    detector: str,
    firing: bool,
    statistic: float,
    threshold: float,
    now: float,
) -> Evaluation:
    # The row is the second of the transition: an id of its own for every episode.
    second = int(now)
    feature = "seconds_without_events" if detector == QUIET_DETECTOR else "events_per_s"
    return Evaluation(
        model,
        state.version,
        "",
        (feature,),
        Detection(
            detector,
            second,
            second,
            np.array([statistic]),
            np.array([threshold]),
            np.array([firing]),
            None,
            np.array([0], dtype=np.int64),
        ),
        (),
        state.record,
        state.last_seen,
        now,
        evidence=((feature, statistic),),
    )


__all__ = ["RATE_SPAN_S", "VolumeWatch"]
