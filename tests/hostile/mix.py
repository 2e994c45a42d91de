"""Hostile records interleaved with valid traffic, produced twice: with them and without.

`Mix` lays out ``total`` records: the drifting multi-model `tests.faults.harness.Stream`
(models ``m0``..), a `VICTIM` model of its own (a numeric and a categorical feature), and
every kind of `tests.hostile.kinds.KINDS` at seeded positions. Each record goes to the
hostile topic, and, unless it is to be dead-lettered, to the clean topic: the same traffic
without the bad records, in the same order, so the two runs' outputs must agree (the
victim's too: its hostile valid events are in both).

Every record carries a Kafka timestamp derived from its event time (not the wall clock), so
an event whose own time is not believed falls back to the same time in both runs.

The first ``head`` records are valid: the suite lets the daemon process them before any
hostile record arrives, because a model version's columns are learned from its first batch
(a hostile record in it would change which columns a model has, and so the reason a later
record is refused for).
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import orjson

from connectors.kafka import KafkaProducerSettings, KafkaSink, ensure_topics
from tests.faults.harness import Stream, Topic
from tests.hostile.kinds import CATEGORIES, KINDS, VICTIM, Kind, Made, Target

T0 = 1_700_000_000  # harness.Stream's first event time (seconds)
COMPARED, PLAIN_VICTIM = -1, -2  # slot values; a kind's slot is its index in KINDS


@dataclass(frozen=True)
class Bad:
    """A record that must come back as exactly one dead letter."""

    slot: int
    kind: Kind
    target: Target

    def made(self, seed: int) -> Made:
        return self.kind.make(record_rng(seed, self.slot), self.target)


def record_rng(seed: int, slot: int) -> np.random.Generator:
    """The generator of the hostile record at ``slot``: it can be made again to check it."""
    return np.random.default_rng([seed, slot])


@dataclass
class Mix:
    """``total`` records on ``partitions`` partitions: see the module docstring.

    ``per_kind`` records of every kind (``per_heavy_kind`` of a heavy one).
    """

    topic: str
    clean_topic: str
    total: int
    per_kind: int
    per_heavy_kind: int
    partitions: int = 3
    models: int = 4
    head: int = 1000
    seed: int = 20261205
    kinds: tuple[Kind, ...] = KINDS
    # Filled in as records are produced:
    bad: dict[tuple[int, int], Bad] = field(default_factory=dict)  # (partition, offset)
    valid: Counter[str] = field(default_factory=Counter)  # events per model
    untimed: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    produced: int = 0
    _next: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, p) -> offset
    _records: Iterator[tuple[int, Made, int, Bad | None]] | None = None

    def __post_init__(self) -> None:
        assert len({k.name for k in self.kinds}) == len(self.kinds), "kind names repeat"
        counts = [self.per_heavy_kind if k.heavy else self.per_kind for k in self.kinds]
        plain = self.total - sum(counts)
        self.per_model = plain // (self.models + 1)
        self.victims = plain - self.models * self.per_model
        assert self.head % (self.models + 1) == 0
        assert self.head < plain
        rng = np.random.default_rng(self.seed)
        rest = np.repeat(
            np.array([COMPARED, PLAIN_VICTIM, *range(len(self.kinds))], dtype=np.int16),
            [
                self.models * self.per_model - self.head // (self.models + 1) * self.models,
                self.victims - self.head // (self.models + 1),
                *counts,
            ],
        )
        pattern = [COMPARED] * self.models + [PLAIN_VICTIM]
        head = np.array(pattern * (self.head // len(pattern)), dtype=np.int16)
        self.slots = np.concatenate([head, rng.permutation(rest)])
        assert len(self.slots) == self.total
        self._rng = rng

    @property
    def stream(self) -> Stream:
        """The compared models' traffic (drifting; model i on partition i % partitions)."""
        return Stream(self.topic, self.partitions, self.models, self.per_model)

    def hostile(self) -> Topic:
        return Topic(self.topic, self.partitions, self.total)

    def clean(self) -> Topic:
        return Topic(self.clean_topic, self.partitions, self.total - sum(self.reasons.values()))

    def partition_of(self, model: str) -> int:
        index = self.models if model == VICTIM else int(model[1:])
        return index % self.partitions

    def produce(self, bootstrap: str, stop: int | None = None) -> None:
        """Produce records ``produced``..``stop`` (all that are left by default) to both
        topics; the hostile topic's bad records are noted in `bad` by offset."""
        ensure_topics(bootstrap, dict.fromkeys((self.topic, self.clean_topic), self.partitions))
        if self._records is None:
            self._records = self._generate()
        settings = KafkaProducerSettings(
            max_request_size=4 << 20, linger_ms=20, batch_size=1 << 20, client_id="hostile"
        )
        with KafkaSink(bootstrap, settings=settings) as sink:
            for partition, (key, value, headers), time_ms, bad in itertools.islice(
                self._records, (stop if stop is not None else self.total) - self.produced
            ):
                topics = (self.topic,) if bad else (self.topic, self.clean_topic)
                for topic in topics:
                    offset = self._next.get((topic, partition), 0)
                    self._next[topic, partition] = offset + 1
                    if bad is not None:
                        self.bad[partition, offset] = bad
                    # A tombstone's value is None, which kafka-python sends as a null value.
                    sink.send(
                        topic,
                        key,
                        cast(bytes, value),
                        headers,
                        partition=partition,
                        timestamp_ms=time_ms,
                    )
                self.produced += 1
            sink.flush(timeout_s=120)

    def _generate(self) -> Iterator[tuple[int, Made, int, Bad | None]]:
        """``(partition, (key, value, headers), timestamp_ms, bad or None)`` in order."""
        compared = self.stream.messages()
        victims = _victim_events(self.seed, self.victims)
        seen = Counter[str]()  # events per model so far: the next one's time
        names = [f"m{i}" for i in range(self.models)]
        for slot, what in enumerate(self.slots.tolist()):
            bad = None
            if what == COMPARED:
                partition, key, value = next(compared)
                model = key.decode()
                made: Made = (key, value, [])
            elif what == PLAIN_VICTIM:
                model = VICTIM
                partition = self.partition_of(model)
                made = (b"victim", next(victims)(T0 + seen[model]), [])
            else:
                kind = self.kinds[what]
                if kind.names == "victim":
                    model = VICTIM
                else:
                    model = str(
                        self._rng.choice([*names, VICTIM] if kind.names == "any" else names)
                    )
                partition = self.partition_of(model)
                if kind.names == "none":
                    partition = int(self._rng.integers(self.partitions))
                target = Target(model, T0 + seen[model])
                made = kind.make(record_rng(self.seed, slot), target)
                if kind.reason is not None:
                    bad = Bad(slot, kind, target)
                    self.reasons[kind.reason] += 1
                if kind.untimed:
                    self.untimed[model] += 1
            time_ms = (T0 + seen[model]) * 1000
            if bad is None:  # counted before the yield: the last one is never resumed
                self.valid[model] += 1
                seen[model] += 1
            yield partition, made, time_ms, bad

    def clean_offset(self, partition: int, offset: int) -> int:
        """The clean topic's offset of the valid record at ``offset`` of the hostile one
        (once everything is produced)."""
        bad = self._bad_offsets.get(partition, [])
        return offset - bisect.bisect_left(bad, offset)

    @functools.cached_property
    def _bad_offsets(self) -> dict[int, list[int]]:
        assert self.produced == self.total
        by_partition: dict[int, list[int]] = {}
        for partition, offset in sorted(self.bad):
            by_partition.setdefault(partition, []).append(offset)
        return by_partition


def _victim_events(seed: int, n: int) -> Iterator[Callable[[int], bytes]]:
    """The victim's own events, each made at its event time: "x" shifts by 1 sd over the
    middle fifth, category "a" takes over from 70%."""
    rng = np.random.default_rng([seed, 1])
    x = rng.normal(size=n)
    x[2 * n // 5 : 3 * n // 5] += 1.0
    early = rng.choice(CATEGORIES, size=n, p=[0.4, 0.3, 0.2, 0.1])
    late = rng.choice(CATEGORIES, size=n, p=[0.7, 0.1, 0.1, 0.1])
    for i in range(n):
        category = str(late[i] if i >= 7 * n // 10 else early[i])
        event = {
            "model": VICTIM,
            "model_version": "1",
            "features": {"x": float(x[i]), "c": category},
            "prediction": float(x[i]) / 2,
        }
        yield functools.partial(_stamped, event)


def _stamped(event: dict[str, Any], time_s: int) -> bytes:
    return orjson.dumps({**event, "timestamp": time_s})
