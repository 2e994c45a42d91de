"""Reading one batch: topped up with what is already fetched, dropped whole if a rebalance
cut through it, without the partitions whose state is not restored yet; before each poll,
the partitions the source moved because their offset lay outside the log; and whether the
source answers (the ``broker`` and ``assigned`` readiness conditions)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from connectors.stream import ConnectorError, Polled, Source, TopicPartition, record_count
from monitord.checkpointer import Checkpointer
from monitord.metrics import DaemonMetrics
from monitord.partitions import Partitions
from monitord.readiness import HealthReport

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 5.0
"""How often an idle loop checks that the broker still answers (readiness)."""


class BatchReader:
    """Turns polls of the source into batches that can be folded as they are."""

    def __init__(
        self,
        source: Source,
        max_records: int,
        partitions: Partitions,
        checkpoints: Checkpointer,
        health: HealthReport,
        metrics: DaemonMetrics | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source, self._max_records = source, max_records
        self._partitions, self._checkpoints = partitions, checkpoints
        self._health, self._metrics, self._clock = health, metrics, clock
        self._last_probe = clock() - PROBE_INTERVAL_S  # probe at the first quiet poll
        # Asked at each /readyz from the admin thread: a dead broker shows within a second
        # even while the loop waits on it (a commit or a flush can block for 30 s).
        health.watch("broker", source.unreachable)
        health.watch("assigned", functools.partial(missing_topics, source))

    def reset_positions(self) -> set[TopicPartition]:
        """The partitions the source moved because their offset lay outside the log.

        Asked before each poll, so no record read from the new offset is folded before the
        move is known. The partition's detector state is kept: with the broker's log lost,
        the state is all that remains of the history before it. The caller checkpoints the
        new offset at once, so a restart does not meet the same offset again."""
        moves = self._source.reset_positions()
        for move in moves:
            self._partitions.reset(move)
            if self._metrics is not None:
                tp = move.partition
                self._metrics.offset_reset(tp.topic, tp.partition, move.reason)
        return {move.partition for move in moves}

    def poll(self, timeout_s: float) -> Polled:
        return self._source.poll(timeout_s, self._max_records)

    def batch(self, polled: Polled) -> tuple[Polled | None, int]:
        """The batch begun by ``polled``, None if it is to be read again later; and how
        many records were polled (read again: not idle)."""
        self._last_probe = self._clock()
        polled, count, rewound = self._top_up(polled)
        if rewound:
            return None, count
        if self._partitions.unrestored:
            polled = self._checkpoints.hold_unrestored(polled)
            if not polled:
                return None, count  # read again once restored
            count = record_count(polled)
        return polled, count

    def probe(self) -> None:
        """After a quiet poll, check now and then that the broker still answers: raises
        while it is away."""
        if self._clock() - self._last_probe >= PROBE_INTERVAL_S:
            self._last_probe = self._clock()
            self._source.probe(PROBE_INTERVAL_S)
            self._health.set_condition("broker", True)

    def _top_up(self, batch: Polled) -> tuple[Polled, int, bool]:
        """Top the batch up with what is already fetched (no waiting), so the per-batch
        flush and commit are paid once per large batch rather than once per fetch; and how
        many records it holds. True with it: a rebalance ran meanwhile, and the batch is
        dropped, to be read again (folding it now could fold some records twice)."""
        limit = self._max_records
        count = record_count(batch)
        generation = self._partitions.batch_started()
        while count < limit:
            try:
                more = self._source.poll(0.0, limit - count)
            except ConnectorError as exc:
                # What was polled is this consumer's now: process it, report the rest.
                log.warning("topping up a batch failed: %s", exc)
                break
            count += _extend(batch, more)
            if self._partitions.generation != generation:
                rewind = self._partitions.rewind(batch, self._source.assignment())
                for tp, offset in rewind.items():
                    self._source.seek(tp, offset)
                return batch, count, True
            if not more:
                break
        return batch, count, False


def _extend(batch: Polled, more: Polled) -> int:
    """Add the records of ``more`` (polled after ``batch``) to ``batch``, each after its
    partition's; how many were added. One step per partition."""
    for tp, records in more.items():
        have = batch.get(tp)
        if have is None:
            batch[tp] = records
        else:
            have += records
    return record_count(more)


def missing_topics(source: Source) -> str | None:
    """Why the daemon is not assigned (readiness): input topics that do not exist."""
    missing = source.missing_topics()
    if not missing:
        return None
    names = ", ".join(repr(topic) for topic in missing)
    return f"input topics {names} do not exist: create them or correct kafka.input_topics"


__all__ = ["PROBE_INTERVAL_S", "BatchReader", "missing_topics"]
