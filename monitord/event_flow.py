"""The event side of a batch: with ``kafka.repartition``, input events forwarded keyed by
model; each version's decoded events into its monitor, their predictions and latencies to
`LabelFlow`, their counts to the volume watch (which owns), `Stats` and the metrics."""

from __future__ import annotations

import math
import time

from connectors.stream import Polled, TopicPartition, flatten
from monitord.config import Config
from monitord.events import BadRecord, DecodedBatch, decode
from monitord.join_store import Joined
from monitord.label_flow import LabelFlow
from monitord.metrics import DaemonMetrics
from monitord.monitor import Evaluation, Monitor
from monitord.partitions import Partitions
from monitord.policy import Decisions
from monitord.repartition import Forward, forwards
from monitord.stats import Stats
from monitord.version_states import VersionStates
from monitord.volume import VolumeWatch

MAX_HELD_BYTES = 64 << 20
"""Rows held for versions being calibrated (`Monitor.settle`) past which a batch ends by
waiting for the oldest calibrations: memory stays bounded whatever a fleet's warm-up sends."""


class EventFlow:
    """Moves a batch's inference events through the monitors; owns no state itself."""

    def __init__(
        self,
        config: Config,
        versions: VersionStates,
        label_flow: LabelFlow,
        partitions: Partitions,
        stats: Stats,
        metrics: DaemonMetrics | None,
    ) -> None:
        self._config, self._versions, self._label_flow = config, versions, label_flow
        self._partitions, self._stats, self._metrics = partitions, stats, metrics
        self.volume = VolumeWatch(config.volume)
        self._retired: dict[tuple[str, str], TopicPartition] = {}  # last batch's (`monitor`)
        kafka = config.kafka
        self._internal = kafka.internal_topic if kafka.repartition else None

    def repartition(self, polled: Polled) -> tuple[Polled, list[Forward], list[BadRecord]]:
        """The records to monitor; with ``kafka.repartition``, input events to forward by
        model (and those that cannot be), the internal ones not folded before to monitor."""
        internal_topic = self._internal
        if internal_topic is None:
            return polled, [], []
        internal = {tp: records for tp, records in polled.items() if tp.topic == internal_topic}
        forwarded: list[Forward] = []
        bad: list[BadRecord] = []
        if len(internal) < len(polled):
            inputs = flatten({tp: rs for tp, rs in polled.items() if tp.topic != internal_topic})
            decoded = decode(inputs, self._config.events)
            forwarded, bad = forwards(inputs, decoded), list(decoded.bad)
            self._label_flow.forwarded(forwarded)
        sources = self._partitions.sources
        fresh = {tp: sources.fresh(tp, records) for tp, records in internal.items()}
        return {tp: records for tp, records in fresh.items() if records}, forwarded, bad

    def monitor(
        self, decoded: DecodedBatch, bad: list[BadRecord]
    ) -> tuple[list[Evaluation], list[Joined]]:
        """Fold each version's events into its monitor (bad ones added to ``bad``); their
        evaluations and the pairs their inline labels make."""
        monitor: Monitor = self._versions.monitor
        metrics = self._metrics
        monitor.new_batch()
        self._forget_retired()
        evaluations = self.settle(math.inf)  # of versions calibrated since the last batch
        pairs: list[Joined] = []
        for group in decoded.groups.values():
            update = monitor.update(group)
            evaluations += update.evaluations
            bad += update.bad
            self._retired.update(update.retired)
            for partition in update.retired.values():  # its next checkpoint, due now,
                self._partitions.retired(partition)  # no longer holds them
            if update.refused:  # no series nor counts for what a limit keeps out
                continue
            joined, latency = self._label_flow.predictions(group, update)
            pairs += joined
            evaluations += latency
            good = len(group) - len(update.bad)
            self._stats.per_model[group.model] += good
            self.volume.seen(group.model, group.version, good, group.records[-1], time.time())
            if metrics is not None:
                metrics.model_events(
                    group.model,
                    group.version,
                    good,
                    update.newest_time,
                    update.late,
                    update.untimed,
                )
                metrics.columns_not_monitored(group.model, group.version, update.not_monitored)
        if monitor.held_bytes > MAX_HELD_BYTES:
            evaluations += self.settle(MAX_HELD_BYTES)
        return evaluations, pairs

    def settle(self, keep_bytes: float = 0.0) -> list[Evaluation]:
        """The evaluations of rows held for versions whose calibration is done, and (waiting)
        of more until the rest hold at most ``keep_bytes`` (0: all; `Monitor.settle`)."""
        evaluations: list[Evaluation] = []
        for settled in self._versions.monitor.settle(keep_bytes):
            evaluations += settled.evaluations
            if self._metrics is not None and settled.late:
                self._metrics.model_events(
                    settled.model, settled.version, 0, math.nan, settled.late
                )
        return evaluations

    def volume_alerts(self) -> Decisions:
        """Alerts of volume due now, models gone quiet among them (`monitord.volume`)."""
        if not self.volume.enabled:
            return Decisions([])
        return self._versions.policy.decide(self.volume.check(time.time()))

    def _forget_retired(self) -> None:
        """Forget the policy and performance state of the versions the monitor retired in
        the last batch, now that its evaluations (theirs among them, and those of rows held
        for them or labelled since) were decided: forgotten before, they were decided into
        new state of the retired version. A version back since is not forgotten."""
        monitored = self._versions.monitor.versions
        retired = {key: tp for key, tp in self._retired.items() if key not in monitored}
        self._retired = {}
        if not retired:
            return
        self._versions.forget(list(retired))
        if self._metrics is not None:
            self._metrics.retired(retired)


__all__ = ["EventFlow"]
