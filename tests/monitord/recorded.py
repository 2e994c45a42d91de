"""A daemon over in-memory records that keeps what it decided: every evaluation, every
output, and the outputs as the JSON lines `monitord replay` would print (tests only)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record, TopicPartition
from monitord.checkpoint import LocalStore
from monitord.config import Config
from monitord.daemon import Daemon
from monitord.metrics import DaemonMetrics
from monitord.monitor import Evaluation
from monitord.outputs import JsonLinesPublisher, KafkaPublisher, Publisher
from monitord.policy import Decisions, Output


class RecordedRun:
    """A daemon over ``records`` (checkpoints in ``store_path`` when given, a consumer that
    resumes from ``committed``) that records its evaluations and outputs."""

    def __init__(
        self,
        config: Config,
        records: list[Record],
        store_path: Path | None = None,
        committed: dict[TopicPartition, int] | None = None,
        metrics: DaemonMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = MemorySink()
        self.out = io.BytesIO()
        self.evaluations: list[Evaluation] = []
        self.outputs: list[Output] = []
        self.source = MemorySource(records, committed=committed)
        store = None if store_path is None else LocalStore(store_path)
        publishers: list[Publisher] = [
            KafkaPublisher(self.sink, "alerts", "retrain"),
            JsonLinesPublisher(self.out, owned=False),
        ]
        daemon = self.daemon = Daemon(
            config,
            self.source,
            self.sink,
            publishers,
            lambda m, v: None,
            store,
            metrics=metrics,
            clock=clock,
        )
        self.source.listen(daemon)
        decide = daemon.policy.decide

        def recording(evaluations: list[Evaluation]) -> Decisions:
            self.evaluations += evaluations
            decided = decide(evaluations)
            self.outputs += decided.outputs
            return decided

        daemon.policy.decide = recording  # type: ignore[method-assign]

    def steps(self, n: int) -> None:
        for _ in range(n):
            self.daemon.step(0.0)

    def drain(self) -> Self:
        self.daemon.drain()
        return self

    def crash(self) -> None:
        """Stop as kill -9 would: nothing checkpointed, committed or closed on the way out."""
        assert self.daemon.store is not None
        self.daemon.store.close()

    @property
    def lines(self) -> list[bytes]:
        """The outputs as JSON lines, in publication order."""
        return self.out.getvalue().splitlines()

    @property
    def alerts(self) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines]
        return [a for a in parsed if a["kind"] == "alert"]
