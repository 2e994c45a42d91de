"""Input not keyed by model goes through the internal topic first, and a duplicate there
(a forward repeated after a crash) is never folded twice."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import orjson

from connectors.kafka import key_partition
from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record, TopicPartition
from monitord.alerts import Alert
from monitord.checkpoint import LocalStore
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from monitord.outputs import KafkaPublisher
from monitord.policy import Output
from monitord.repartition import SOURCE_HEADERS, Forward, InFlight, SourceOffsets

INTERNAL = "monitord.repartition"
MODELS = ("a", "b", "c")


def _events(seed: int = 8, n: int = 6000) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    events = []
    for i in range(n):
        model = MODELS[i % len(MODELS)]
        x = rng.normal() + (1.0 if model == "a" and i > n // 2 else 0.0)
        event = {"model": model, "features": {"x": x, "y": rng.normal()}}
        events.append((model, orjson.dumps(event)))
    return events


def _config(repartition: bool) -> Config:
    return parse_config(
        {
            "detection": {"warmup_events": 500, "window_size": 250},
            "kafka": {"repartition": repartition, "consumer": {"max_poll_records": 300}},
            "checkpoint": {"interval_events": 900},
        }
    )


def _run(
    config: Config, records: list[Record], store: LocalStore | None, duplicate: bool = False
) -> tuple[list[Output], Daemon]:
    source, sink = MemorySource(records), MemorySink()
    daemon = Daemon(
        config, source, sink, [KafkaPublisher(sink, "alerts", "retrain")], lambda m, v: None, store
    )
    source.listen(daemon)
    outputs: list[Output] = []
    moved = 0
    while True:
        polled, batch = daemon.step(0.0)
        outputs += batch
        forwarded = sink.messages(INTERNAL)[moved:]
        moved += len(forwarded)
        for message in forwarded * (2 if duplicate else 1):
            assert message.key is not None
            source.append(
                INTERNAL,
                message.value,
                key=message.key,
                partition=zlib.crc32(message.key) % 2,
                headers=message.headers,
                timestamp_ms=message.timestamp_ms or 0,
            )
        if not polled and not forwarded:
            return outputs, daemon


def _unkeyed() -> list[Record]:
    """Events spread over two partitions regardless of model (no key)."""
    return [Record("in", i % 2, i // 2, None, v, i) for i, (_, v) in enumerate(_events())]


def test_unkeyed_input_is_monitored_per_model_on_one_partition(tmp_path: Path) -> None:
    outputs, daemon = _run(_config(True), _unkeyed(), LocalStore(tmp_path / "c.sqlite"))
    assert daemon.stats.per_model == {"a": 2000, "b": 2000, "c": 2000}  # each event once
    owners = {key: v.owner for key, v in daemon.monitor.versions.items()}
    assert {owner.topic for owner in owners.values()} == {INTERNAL}
    assert owners[("a", "unversioned")].partition == zlib.crc32(b"a") % 2
    drifted = {(o.model, o.feature) for o in outputs if isinstance(o, Alert)}
    assert ("a", "x") in drifted
    assert {model for model, _ in drifted} == {"a"}


def test_duplicated_forwards_are_folded_once(tmp_path: Path) -> None:
    once, _ = _run(_config(True), _unkeyed(), LocalStore(tmp_path / "1.sqlite"))
    twice, daemon = _run(
        _config(True), _unkeyed(), LocalStore(tmp_path / "2.sqlite"), duplicate=True
    )
    assert daemon.stats.per_model == {"a": 2000, "b": 2000, "c": 2000}
    assert sorted(o.id for o in twice) == sorted(o.id for o in once)
    assert once


def test_source_offsets_skip_what_was_folded_and_survive_a_restore() -> None:
    def forwarded(offset: int, source_partition: int = 0) -> Record:
        headers = (
            ("trace", b"x"),
            (SOURCE_HEADERS[0], b"in"),
            (SOURCE_HEADERS[1], str(source_partition).encode()),
            (SOURCE_HEADERS[2], str(offset).encode()),
        )
        return Record(INTERNAL, 0, 100 + offset, b"a", b"{}", 0, headers)

    seen = SourceOffsets()
    batch = [forwarded(0), forwarded(1), forwarded(0, source_partition=1)]
    internal = TopicPartition(INTERNAL, 0)
    assert seen.fresh(internal, batch) == batch
    assert seen.fresh(internal, [forwarded(1), forwarded(2)]) == [forwarded(2)]
    assert seen.snapshot(internal) == {"in/0": 2, "in/1": 0}
    restored = SourceOffsets()
    restored.restore(internal, seen.snapshot(internal))
    assert restored.fresh(internal, [forwarded(2), forwarded(3)]) == [forwarded(3)]
    plain = Record(INTERNAL, 0, 7, b"a", b"{}", 0, ())
    assert restored.fresh(internal, [plain]) == [plain]  # no source: kept


def test_forwards_in_flight_hold_their_source_back_until_read_back() -> None:
    def forward(model: str, offset: int, stamp_ms: int) -> Forward:
        source = (
            (SOURCE_HEADERS[0], b"in"),
            (SOURCE_HEADERS[1], b"0"),
            (SOURCE_HEADERS[2], b"%d" % offset),
        )
        return Forward(model.encode(), b"{}", source, stamp_ms)

    def read_back(model: str, offset: int) -> Record:
        headers = (
            (SOURCE_HEADERS[0], b"in"),
            (SOURCE_HEADERS[1], b"0"),
            (SOURCE_HEADERS[2], b"%d" % offset),
        )
        return Record(
            INTERNAL, key_partition(model.encode(), 3), offset, model.encode(), b"{}", 0, headers
        )

    homes = {model: TopicPartition(INTERNAL, key_partition(model.encode(), 3)) for model in "ab"}
    source = TopicPartition("in", 0)
    folded = SourceOffsets()
    in_flight = InFlight(folded, INTERNAL, 3)
    assert in_flight.oldest_ms(source) == math.inf
    # "b" goes to a partition another replica reads: not waited for.
    mine = {homes["a"]}
    assert homes["b"] not in mine
    in_flight.sent([forward("b", 0, 500), forward("a", 1, 1000), forward("a", 2, 900)], mine)
    in_flight.sent([forward("a", 3, 2000)], mine)
    assert in_flight.oldest_ms(source) == 900  # the earliest of the batch
    folded.fresh(homes["a"], [read_back("a", 1)])
    assert in_flight.oldest_ms(source) == 900  # offset 2 is not read back yet
    folded.fresh(homes["a"], [read_back("a", 2)])
    assert in_flight.oldest_ms(source) == 2000
    folded.fresh(homes["a"], [read_back("a", 3)])
    assert in_flight.oldest_ms(source) == math.inf
    # A revoked internal partition is not waited for.
    in_flight.sent([forward("a", 4, 3000)], mine)
    assert in_flight.oldest_ms(source) == 3000
    in_flight.drop([homes["a"]])
    assert in_flight.oldest_ms(source) == math.inf
