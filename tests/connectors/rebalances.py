"""A `connectors.stream.RebalanceListener` for tests: it records what it is told, in order."""

from __future__ import annotations

from collections.abc import Callable

from connectors.stream import TopicPartition


class Rebalances:
    """Records each assignment and revocation; ``on_revoked`` also runs on each revocation
    (inside the source's callback, as the daemon's would)."""

    def __init__(self, on_revoked: Callable[[set[TopicPartition]], None] | None = None) -> None:
        self.assigned: list[set[TopicPartition]] = []
        self.revoked: list[set[TopicPartition]] = []
        self.events: list[tuple[str, set[TopicPartition]]] = []
        self._then = on_revoked

    def on_assigned(self, partitions: set[TopicPartition]) -> None:
        self.assigned.append(partitions)
        self.events.append(("assigned", partitions))

    def on_revoked(self, partitions: set[TopicPartition]) -> None:
        self.revoked.append(partitions)
        self.events.append(("revoked", partitions))
        if self._then is not None:
            self._then(partitions)
