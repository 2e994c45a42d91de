"""A model version's state, kept by three owners and stored, restored and forgotten together.

The monitor holds its reference, detectors, windows and row log; the policy its alert
lifecycles and retrain episodes; performance its labelled windows and latency stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from connectors.stream import TopicPartition
from detectors.detection import sub_state
from detectors.profile import ReferenceProfile
from monitord.checkpoint import VersionState
from monitord.monitor import Monitor, MonitorState
from monitord.performance import Performance
from monitord.policy import Policy, PolicyState

Key = tuple[str, str]  # (model, version)


class VersionStates:
    """The three owners of every version's state (``policy`` may be swapped: replay does)."""

    def __init__(self, monitor: Monitor, policy: Policy, performance: Performance) -> None:
        self.monitor, self.policy, self.performance = monitor, policy, performance

    def owned_by(self, partitions: Iterable[TopicPartition]) -> list[Key]:
        """The versions whose state lives with ``partitions``."""
        return [key for tp in partitions for key in self.monitor.owned_by(tp)]

    def snapshot(self, key: Key) -> tuple[VersionState, list[ReferenceProfile]]:
        """A version's stored form, and the references it captured itself."""
        state, arrays, captured = self.monitor.snapshot(key)
        policy = self.policy.snapshot(key)
        performance = self.performance.snapshot(key)
        if performance is not None:
            arrays = {**arrays, **{f"performance/{k}": v for k, v in performance[1].items()}}
        stored = VersionState(
            state.dump(),
            arrays,
            None if policy is None else policy.dump(),
            None if performance is None else performance[0],
        )
        return stored, captured

    def restore(
        self,
        owner: TopicPartition,
        index: int,
        version: VersionState,
        captured: Callable[[str], ReferenceProfile],
    ) -> None:
        """Restore one stored version: all of it, or (raising) none of it. Both documents
        are validated before any state changes (`StateError` says what is wrong)."""
        monitor = MonitorState.load(version.monitor, f"monitor state of version {index}")
        name = f"{monitor.model}/{monitor.version}"
        policy = None
        if version.policy is not None:
            policy = PolicyState.load(version.policy, f"policy state of {name}")
        key = self.monitor.restore(owner, monitor, version.arrays, captured)
        if policy is not None:
            self.policy.restore(key, policy)
        if version.performance is not None:
            arrays = sub_state(version.arrays, "performance/")
            self.performance.restore(key, version.performance, arrays)

    def forget(self, keys: list[Key]) -> None:
        """Drop the versions' policy and performance state (the monitor retired them)."""
        self.policy.drop(keys)
        self.performance.drop(keys)

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop every version owned by ``partitions`` (revoked)."""
        keys = self.owned_by(partitions)
        self.monitor.drop(keys)
        self.forget(keys)


__all__ = ["Key", "VersionStates"]
