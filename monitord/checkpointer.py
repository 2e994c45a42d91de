"""When and what to checkpoint, the commit after it, and the restore on assignment.

A checkpoint pairs each partition's state (`VersionStates`, the label join, repartitioned
source offsets) with the next offset it covers (`Partitions`); offsets are committed only
once the checkpoint covering them is stored, and an assigned partition is read on from its
checkpoint's offset, so every record is folded into detector state exactly once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from connectors.sqlite import StorageUnavailable
from connectors.stream import CommitFailed, ConnectorError, Polled, Source, TopicPartition
from detectors.profile import ReferenceProfile
from monitord.checkpoint import Checkpoint, CheckpointError, CheckpointStore
from monitord.config import CheckpointSettings
from monitord.labels import LabelJoin
from monitord.metrics import DaemonMetrics
from monitord.partitions import Partitions, first_offsets
from monitord.readiness import HealthReport
from monitord.state_dir import StateDirFaults
from monitord.stats import Stats
from monitord.version_states import VersionStates

log = logging.getLogger(__name__)

STORING_CHECKPOINTS = "storing checkpoints"
"""The state_dir fault of a checkpoint that could not be stored (retried every interval)."""


class Checkpointer:
    """Owns the checkpoint store and the checkpoint cadence (events and seconds since)."""

    def __init__(
        self,
        store: CheckpointStore | None,
        settings: CheckpointSettings,
        partitions: Partitions,
        versions: VersionStates,
        joins: LabelJoin,
        source: Source,
        *,
        health: HealthReport,
        state_dir: StateDirFaults,
        stats: Stats,
        metrics: DaemonMetrics | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self._settings, self._partitions, self._versions = settings, partitions, versions
        self._joins, self._source, self._clock = joins, source, clock
        self._health, self._state_dir, self._stats, self._metrics = (
            health,
            state_dir,
            stats,
            metrics,
        )
        self._saved_profiles: set[str] = set()
        self._events = 0  # folded since the last checkpoint
        self._last = clock()

    def count(self, n_records: int) -> None:
        self._events += n_records

    def due(self) -> bool:
        waited = self._clock() - self._last >= self._settings.interval_s
        if STORING_CHECKPOINTS in self._state_dir:
            return waited  # a failed one is tried again, new events or not (an idle stream)
        if self._events >= self._settings.interval_events:
            return True
        # An interval on: new events are checkpointed, and a failed commit tried again
        # (a drained stream takes no checkpoint that would).
        return waited and (self._events > 0 or bool(self._partitions.uncommitted()))

    def save(self, partitions: set[TopicPartition] | None = None) -> None:
        """Store the state of ``partitions`` (default: all) that moved, then commit them.

        Call only between batches, their outputs delivered: everything folded into the
        state must be flushed.
        """
        if self.store is None:
            return
        moved = self._partitions.moved_since_checkpoint(partitions, self._joins.changed())
        if partitions is None:
            self._events = 0
            self._last = self._clock()
        if not moved:
            self.commit()  # what a failed commit left, if anything
            return
        now = time.time()
        checkpoints, profiles = [], []
        for tp, offset in moved.items():
            checkpoint, captured = self._snapshot(tp, offset, now)
            checkpoints.append(checkpoint)
            profiles += [p for p in captured if p.profile_id not in self._saved_profiles]
        if not self._store(self.store, checkpoints, profiles):
            return
        self._saved_profiles.update(p.profile_id for p in profiles)
        self._partitions.checkpointed(moved)
        self._joins.saved(moved)
        self._stats.checkpoints += 1
        self._stats.last_checkpoint = now
        if self._metrics is not None:
            self._metrics.checkpointed(now)
        self.commit()

    def _snapshot(
        self, tp: TopicPartition, offset: int, now: float
    ) -> tuple[Checkpoint, list[ReferenceProfile]]:
        """A partition's checkpoint, and the references its versions captured."""
        versions, profiles = [], []
        for key in self._versions.owned_by([tp]):
            version, captured = self._versions.snapshot(key)
            versions.append(version)
            profiles += captured
        sources = self._partitions.sources.snapshot(tp)
        return Checkpoint(tp, offset, versions, now, sources, self._joins.snapshot(tp)), profiles

    def _store(
        self,
        store: CheckpointStore,
        checkpoints: list[Checkpoint],
        profiles: list[ReferenceProfile],
    ) -> bool:
        try:
            store.save(checkpoints, profiles)
        except StorageUnavailable as exc:
            # Nothing is committed past the last stored checkpoint; the next try (an interval
            # later) stores the state of then, so a disk that has room again catches up.
            if STORING_CHECKPOINTS in self._state_dir:
                log.warning(
                    "checkpoint not stored again (%s); next try in %gs",
                    exc,
                    self._settings.interval_s,
                )
            self._state_dir.failed(STORING_CHECKPOINTS, exc)
            return False
        self._state_dir.works(STORING_CHECKPOINTS)
        return True

    def commit(self) -> None:
        """Commit what is checkpointed. A failure is not fatal: restoring seeks to the
        checkpoint anyway, and the next checkpoint commits again."""
        uncommitted = self._partitions.uncommitted()
        if not uncommitted:
            return
        try:
            self._source.commit(uncommitted)
        except CommitFailed as exc:
            log.warning("%s; the partitions' new owner restores from the checkpoint", exc)
        except ConnectorError as exc:
            if not exc.retriable:
                raise
            log.warning("%s; committing again after the next checkpoint", exc)
            self._health.set_condition("broker", False, f"commit failed: {exc}")
            return
        self._partitions.committed()

    def commit_restored(self) -> None:
        """Commit the restored offsets the log is now known to reach (`Partitions.in_log`);
        one that fails is tried again an interval on (`due`)."""
        if self._partitions.in_log(self._source.end_offsets()):
            self.commit()

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """Restore each assigned partition's state and read on from its offset."""
        health = self._health
        if self.store is None:
            health.set_condition("assigned", True)
            health.set_condition("state_restored", True)
            return
        health.set_condition("state_restored", False, "restoring checkpoints")
        self._restore(self.store, partitions)
        health.set_condition("assigned", True)
        health.set_condition(
            "state_restored", not self._partitions.unrestored, "a checkpoint store is unreachable"
        )
        self._restored_gauges()

    def hold_unrestored(self, polled: Polled) -> Polled:
        """Retry the checkpoints that could not be loaded; a partition still without its
        state is not processed (that would start it afresh), but read again later."""
        assert self.store is not None
        if self._restore(self.store, self._partitions.unrestored):
            self._restored_gauges()
        unrestored = self._partitions.unrestored
        held = {tp: records for tp, records in polled.items() if tp in unrestored}
        if not held:
            self._health.set_condition("state_restored", True)
            return polled
        self._health.set_condition(
            "state_restored", False, f"checkpoints of {len(unrestored)} partitions unread"
        )
        for tp, offset in first_offsets(held).items():
            self._source.seek(tp, offset)
        return {tp: records for tp, records in polled.items() if tp not in unrestored}

    def _restore(self, store: CheckpointStore, partitions: set[TopicPartition]) -> bool:
        """Restore what ``partitions`` have stored; whether any had a checkpoint."""
        applied = False
        for tp in sorted(partitions, key=lambda tp: (tp.topic, tp.partition)):
            try:
                checkpoint = store.load(tp)
            except CheckpointError as exc:
                log.error("%s; %s starts without state from its committed offset", exc, tp)
                continue
            except ConnectorError as exc:
                # The store is unreachable: the partition waits (see `hold_unrestored`).
                log.warning("%s: cannot load its checkpoint yet (%s)", tp, exc)
                if isinstance(exc, StorageUnavailable):
                    self._state_dir.failed("reading checkpoints", exc)
                self._partitions.loaded(tp, False)
                continue
            self._state_dir.works("reading checkpoints")
            self._partitions.loaded(tp, True)
            if checkpoint is not None:
                self._apply(store, tp, checkpoint)
                applied = True
        return applied

    def _restored_gauges(self) -> None:
        """The gauges the restored state stands behind: which alerts fire, and the
        performance shown (else empty until the next window of labelled rows)."""
        if self._metrics is not None:
            self._metrics.restore_firing(self._versions.policy.firing())
            self._metrics.restore_performance(self._versions.performance.shown())

    def _apply(self, store: CheckpointStore, tp: TopicPartition, checkpoint: Checkpoint) -> None:
        """Load a partition's stored state and read on from the offset it covers."""

        def captured(profile_id: str) -> ReferenceProfile:
            return store.load_profile(tp, profile_id)

        for i, version in enumerate(checkpoint.versions):
            try:
                self._versions.restore(tp, i, version, captured)
            except (CheckpointError, ValueError, KeyError) as exc:
                log.error("%s: cannot restore a model version (%s); it starts afresh", tp, exc)
        self._partitions.sources.restore(tp, checkpoint.sources)
        if checkpoint.join is not None:
            try:
                self._joins.restore(tp, checkpoint.join.in_order())
            except ValueError as exc:
                # Its predictions are lost (their labels count as orphans), not the daemon.
                log.error("%s: cannot restore the label join store (%s); it starts empty", tp, exc)
        self._source.seek(tp, checkpoint.next_offset)
        self._partitions.restored(tp, checkpoint.next_offset, tp.topic in self._joins.topics)
        log.info(
            "%s: restored %d model versions at offset %d",
            tp,
            len(checkpoint.versions),
            checkpoint.next_offset,
        )

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None


__all__ = ["STORING_CHECKPOINTS", "Checkpointer"]
