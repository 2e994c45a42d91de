"""Checkpoints: the format, and effectively-once detector state across crashes and rebalances."""

from __future__ import annotations

import io
import sqlite3
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.broker import EmbeddedBroker
from connectors.kafka import KafkaProducerSettings, ensure_topics, read_topic
from connectors.stream import BrokerUnavailable, Polled, Record, TopicPartition
from monitord import checkpoint, service
from monitord.checkpoint import (
    INLINE_JOIN,
    ChangelogStore,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    LocalStore,
    VersionState,
    decode,
    encode,
)
from monitord.config import Config, parse_config
from monitord.join_parts import JoinParts
from monitord.monitor import Evaluation
from monitord.policy import Output
from monitord.service import kafka_sink
from tests.monitord.recorded import RecordedRun

P0, P1 = TopicPartition("in", 0), TopicPartition("in", 1)


def _config(**checkpoint: Any) -> Config:
    return parse_config(
        {
            "detection": {"warmup_events": 1500, "window_size": 500, "window_step": 250},
            "kafka": {"consumer": {"max_poll_records": 700}},
            "checkpoint": {"interval_events": 2000, "interval_s": 1e9, **checkpoint},
        }
    )


def _stream(seed: int = 3, n: int = 12_000) -> list[Record]:
    """Two models on two partitions, numeric and categorical features, drifts and a bad record."""
    rng = np.random.default_rng(seed)
    records = []
    for partition, model in enumerate(("a", "b")):
        x = rng.normal(size=n)
        y = rng.exponential(size=n)
        colour = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
        shift = 4000 if model == "a" else 7000
        x[shift:] += 1.0
        colour[shift + 2000 :] = rng.choice(["red", "green"], size=n - shift - 2000)
        for i in range(n):
            features: dict[str, Any] = {"x": float(x[i]), "y": float(y[i])}
            features["colour"] = None if i % 97 == 0 else str(colour[i])
            event = {"model": model, "features": features, "prediction": float(x[i] + y[i])}
            value = b"{not json" if i == 5000 else orjson.dumps(event)
            records.append(Record("in", partition, i, model.encode(), value, 1000 * i))
    return records


Run = RecordedRun
Row = tuple[str, int, str, int, tuple[str, ...]]  # model, regime, detector, row, columns


def _key(e: Evaluation) -> Row:
    return e.model, e.regime, e.result.detector, e.result.row, e.features


def _rows(evaluations: list[Evaluation]) -> dict[Row, bytes]:
    """Detection rows: (model, regime, detector, row, columns) -> the exact statistic bytes."""
    return {_key(e): e.result.statistic.tobytes() for e in evaluations}


def _ids(outputs: list[Output]) -> set[str]:
    return {o.id for o in outputs}


@pytest.fixture(scope="module")
def stream() -> list[Record]:
    return _stream()


@pytest.fixture(scope="module")
def uninterrupted(stream: list[Record]) -> Run:
    run = Run(_config(store="none"), stream, None)
    run.daemon.drain()
    return run


def test_the_reference_run_has_something_to_lose(uninterrupted: Run) -> None:
    # The comparison below is only meaningful if the stream produces alerts and triggers
    # on both models, some of them after the first checkpoints.
    models = {(o.model, type(o).__name__) for o in uninterrupted.outputs}
    assert models == {(m, k) for m in "ab" for k in ("Alert", "RetrainTrigger")}
    assert len(_rows(uninterrupted.evaluations)) > 400


def test_crashes_at_random_points_give_the_same_ids_and_detection_rows(
    tmp_path: Path, stream: list[Record], uninterrupted: Run
) -> None:
    rng = np.random.default_rng(7)
    path = tmp_path / "checkpoints.sqlite"
    committed: dict[TopicPartition, int] = {}
    outputs: list[Output] = []
    evaluations: list[Evaluation] = []
    crashes = 0
    while True:
        run = Run(_config(), stream, path, committed)
        run.steps(int(rng.integers(1, 6)))
        outputs += run.outputs
        evaluations += run.evaluations
        if run.source.drained:
            run.daemon.close()
            break
        run.crash()
        crashes += 1
        committed = run.source.committed
    assert crashes >= 10
    assert _ids(outputs) == _ids(uninterrupted.outputs)
    # Every row detected after a restart equals the uninterrupted run's, bit for bit, and
    # no row is missing: state was folded exactly once.
    assert _rows(evaluations) == _rows(uninterrupted.evaluations)
    expected = _rows(uninterrupted.evaluations)
    for evaluation in evaluations:
        assert evaluation.result.statistic.tobytes() == expected[_key(evaluation)]


def test_offsets_are_committed_only_with_a_checkpoint(tmp_path: Path, stream: list[Record]) -> None:
    run = Run(_config(), stream, tmp_path / "c.sqlite")
    run.steps(2)  # 1,400 events: below the 2,000-event interval
    assert run.source.commits == []
    run.steps(2)
    assert len(run.source.commits) == 1
    store = LocalStore(tmp_path / "c.sqlite")
    for tp, offset in run.source.commits[0].items():
        checkpoint = store.load(tp)
        assert checkpoint is not None
        assert checkpoint.next_offset == offset


def test_a_checkpoint_ahead_of_the_committed_offset_is_not_folded_twice(
    tmp_path: Path, stream: list[Record], uninterrupted: Run
) -> None:
    # The crash fell between storing a checkpoint and committing its offsets: the committed
    # offsets lag, and the restarted daemon must read on from the checkpoint's.
    path = tmp_path / "c.sqlite"
    first = Run(_config(), stream, path)
    first.steps(9)
    first.crash()
    assert first.source.committed
    second = Run(_config(), stream, path, committed={})  # as if no commit ever landed
    second.daemon.drain()
    second.daemon.close()
    rows = _rows(first.evaluations) | _rows(second.evaluations)
    assert rows == _rows(uninterrupted.evaluations)
    assert _ids(first.outputs + second.outputs) == _ids(uninterrupted.outputs)


def _drained_and_killed_before_the_commit(
    stream: list[Record], path: Path
) -> dict[TopicPartition, int]:
    """A run over the whole ``stream`` whose last checkpoint was stored and not committed
    (killed between the two, nothing more to come): the offsets it stored."""
    first = Run(_config(), stream, path)
    first.daemon.drain()
    first.daemon.checkpoint()
    first.crash()
    offsets = {}
    for tp in (P0, P1):
        stored = LocalStore(path).load(tp)
        assert stored is not None
        offsets[tp] = stored.next_offset
    return offsets


def test_a_restored_checkpoint_ahead_of_the_committed_offset_is_committed_with_nothing_to_read(
    tmp_path: Path, stream: list[Record]
) -> None:
    # No later checkpoint commits, so the restored offsets are, once a poll finds the log
    # reaches them.
    path = tmp_path / "c.sqlite"
    offsets = _drained_and_killed_before_the_commit(stream, path)
    second = Run(_config(), stream, path, committed={})
    second.steps(1)
    assert second.source.commits == [offsets]
    second.steps(2)
    assert len(second.source.commits) == 1  # committed once
    assert second.evaluations == []  # nothing folded twice


def test_a_restored_offset_whose_commit_failed_is_committed_an_interval_on(
    tmp_path: Path, stream: list[Record]
) -> None:
    path = tmp_path / "c.sqlite"
    offsets = _drained_and_killed_before_the_commit(stream, path)
    now = [0.0]
    second = Run(_config(interval_s=10.0), stream, path, committed={}, clock=lambda: now[0])
    commit = second.source.commit
    failures = [BrokerUnavailable("coordinator not available")]

    def failing_once(offsets: Mapping[TopicPartition, int]) -> None:
        if failures:
            raise failures.pop()
        commit(offsets)

    second.source.commit = failing_once  # type: ignore[method-assign]
    second.steps(3)  # the first idle commit fails; not tried again at once
    assert not failures
    assert second.source.commits == []
    now[0] = 10.0
    second.steps(1)
    assert second.source.committed == offsets
    now[0] = 20.0
    second.steps(1)
    assert len(second.source.commits) == 1


def test_revoked_partitions_are_checkpointed_and_restored_on_return(
    tmp_path: Path, stream: list[Record], uninterrupted: Run
) -> None:
    run = Run(_config(), stream, tmp_path / "c.sqlite")
    run.steps(10)
    run.source.revoke([P1])
    run.steps(1)
    assert {key[0] for key in run.daemon.monitor.versions} == {"a"}
    run.steps(5)
    run.source.assign([P1])
    run.daemon.drain()
    assert _rows(run.evaluations) == _rows(uninterrupted.evaluations)
    assert _ids(run.outputs) == _ids(uninterrupted.outputs)


def _checkpoint() -> Checkpoint:
    arrays: dict[str, Any] = {"w/rows": np.arange(6.0).reshape(3, 2), "n": np.array(3)}
    version = VersionState({"model": "m", "columns": [["x"], []]}, arrays, {"alerts": []})
    return Checkpoint(P0, 42, [version], 1.5)


def test_format_round_trips() -> None:
    restored = decode(encode(_checkpoint()), "test")
    assert (restored.partition, restored.next_offset, restored.written_at) == (P0, 42, 1.5)
    (version,) = restored.versions
    assert version.monitor == {"model": "m", "columns": [["x"], []]}
    assert version.policy == {"alerts": []}
    np.testing.assert_array_equal(version.arrays["w/rows"], np.arange(6.0).reshape(3, 2))
    assert set(version.arrays) == {"w/rows", "n"}


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda blob: blob[: len(blob) // 2], "not a readable monitord checkpoint"),
        (lambda blob: b"PK\x03\x04" + b"\x00" * 40, "not a readable monitord checkpoint"),
    ],
)
def test_unreadable_checkpoints_fail_clearly(
    mangle: Callable[[bytes], bytes], message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        decode(mangle(encode(_checkpoint())), "store [in-0]")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FORMAT_VERSION", 9, "checkpoint format 9; this monitord reads format 1"),
        ("FORMAT", "someone.elses.thing", "not a monitord checkpoint"),
    ],
)
def test_foreign_and_newer_formats_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: object, message: str
) -> None:
    monkeypatch.setattr(checkpoint, name, value)
    blob = encode(_checkpoint())
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match=message):
        decode(blob, "store [in-0]")


def test_a_negative_offset_is_refused_naming_the_field() -> None:
    blob = encode(_checkpoint())
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        meta = orjson.loads(bytes(npz["meta"]))
    meta["next_offset"] = -7
    with pytest.raises(
        CheckpointError,
        match=r"store \[in-0\]: next_offset: .*greater than or "
        r"equal to 0 \(got -7\)",
    ):
        decode(_with_member(blob, "meta", orjson.dumps(meta)), "store [in-0]")


def _with_member(blob: bytes, name: str, data: bytes) -> bytes:
    """A checkpoint container with entry ``name`` (bytes) set to ``data``."""
    with zipfile.ZipFile(io.BytesIO(blob)) as old:
        members = {info.filename: old.read(info) for info in old.infolist()}
    stored = io.BytesIO()
    np.save(stored, np.frombuffer(data, dtype=np.uint8))
    members[f"{name}.npy"] = stored.getvalue()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as new:
        for member, content in members.items():
            new.writestr(member, content)
    return out.getvalue()


def test_a_join_store_inside_a_checkpoint_of_the_first_format_is_read() -> None:
    # Before join stores were stored in parts, the whole store was the entry "join".
    blob = _with_member(encode(_checkpoint()), "join", b'{"pending": {}}')
    restored = decode(blob, "test")
    assert restored.join == JoinParts((INLINE_JOIN,), {INLINE_JOIN: b'{"pending": {}}'})
    assert restored.join.in_order() == [b'{"pending": {}}']


def test_pickled_content_is_refused(tmp_path: Path) -> None:
    # An object array inside the container would need pickle to load: never.
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.frombuffer(b"{}", dtype=np.uint8), x=np.array([object()]))
    with zipfile.ZipFile(path) as archive:
        assert "x.npy" in archive.namelist()
    with pytest.raises(CheckpointError, match="not a readable"):
        decode(path.read_bytes(), "evil")


def test_a_corrupt_checkpoint_starts_the_partition_afresh(
    tmp_path: Path, stream: list[Record], caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.sqlite"
    first = Run(_config(), stream, path)
    first.steps(4)
    first.crash()
    store = LocalStore(path)
    store._db.execute("UPDATE checkpoints SET blob = x'00' WHERE partition = 1")
    store.close()
    second = Run(_config(), stream, path, committed=first.source.committed)
    second.steps(3)
    assert "in[1] starts without state from its committed offset" in caplog.text
    versions = {key[0]: v for key, v in second.daemon.monitor.versions.items()}
    assert not versions["a"].warming_up  # restored
    assert versions["b"].warming_up  # afresh: capturing a new reference


def test_a_rebalance_while_topping_up_a_batch_folds_nothing_twice(
    tmp_path: Path, stream: list[Record]
) -> None:
    records = stream
    config = parse_config(
        {
            "detection": {"warmup_events": 1500, "window_size": 500, "window_step": 250},
            "kafka": {"consumer": {"max_poll_records": 30_000}},  # first poll: everything
        }
    )
    expected = Run(config, records, None)
    expected.daemon.drain()
    run = Run(config, records, tmp_path / "c.sqlite")
    polls = 0
    poll = run.source.poll

    def rebalancing_second_poll(timeout_s: float, max_records: int) -> Polled:
        nonlocal polls
        polls += 1
        if polls == 2:  # the top-up of the first batch: P1 leaves in the middle of it
            run.source.revoke([P1])
        return poll(timeout_s, max_records)

    run.source.poll = rebalancing_second_poll  # type: ignore[method-assign]
    polled, outputs = run.daemon.step(0.0)
    assert (polled, outputs) == (len(records), [])  # the held batch is dropped, not folded
    assert run.evaluations == []
    run.daemon.drain()
    run.source.assign([P1])
    run.daemon.drain()
    assert _rows(run.evaluations) == _rows(expected.evaluations)
    assert _ids(run.outputs) == _ids(expected.outputs)


class _Unreachable(LocalStore):
    """A store whose checkpoint of ``P1`` cannot be read for the first ``failures`` tries."""

    failures = 5

    def load(self, partition: TopicPartition) -> Checkpoint | None:
        if partition == P1 and self.failures:
            self.failures -= 1
            raise BrokerUnavailable("changelog at 127.0.0.1:9 does not answer")
        return super().load(partition)


def test_a_partition_whose_checkpoint_cannot_be_read_waits_for_it(
    tmp_path: Path, stream: list[Record], uninterrupted: Run
) -> None:
    path = tmp_path / "c.sqlite"
    first = Run(_config(), stream, path)
    first.steps(8)
    first.crash()
    second = Run(_config(), stream, path, committed=first.source.committed)
    second.daemon.checkpoints.store = store = _Unreachable(path)
    second.steps(2)  # one try on assignment, one at each step
    assert store.failures == 2
    assert "b" not in {model for model, _ in second.daemon.monitor.versions}  # held, not afresh
    second.daemon.drain()
    assert store.failures == 0
    rows = _rows(first.evaluations) | _rows(second.evaluations)
    assert rows == _rows(uninterrupted.evaluations)
    assert _ids(first.outputs + second.outputs) == _ids(uninterrupted.outputs)


def _with_join(offset: int, ids: tuple[str, ...], new: dict[str, bytes]) -> Checkpoint:
    return Checkpoint(P0, offset, [], 1.5, join=JoinParts(ids, new))


def _store_join_chains(store: CheckpointStore) -> None:
    """Save a chain of join store parts, a failed part, and a new chain; load each."""
    store.save([_with_join(10, ("t/0",), {"t/0": b"full"})], [])
    store.save([_with_join(20, ("t/0", "t/1"), {"t/1": b"one"})], [])
    store.save([Checkpoint(P1, 5, [], 1.5)], [])  # another partition, without labels
    loaded = store.load(P0)
    assert loaded is not None
    assert loaded.join is not None
    assert (loaded.next_offset, loaded.join.in_order()) == (20, [b"full", b"one"])
    # Part 2 was taken but its checkpoint not stored: part 3 follows part 1.
    store.save([_with_join(30, ("t/0", "t/1", "t/3"), {"t/3": b"three"})], [])
    loaded = store.load(P0)
    assert loaded is not None
    assert loaded.join is not None
    assert loaded.join.in_order() == [b"full", b"one", b"three"]
    store.save([_with_join(40, ("u/0",), {"u/0": b"new full"})], [])
    loaded = store.load(P0)
    assert loaded is not None
    assert loaded.join is not None
    assert (loaded.next_offset, loaded.join.in_order()) == (40, [b"new full"])
    assert store.load(P1) == Checkpoint(P1, 5, [], 1.5)


def test_join_store_parts_are_stored_beside_the_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path / "c.sqlite")
    _store_join_chains(store)
    # A full part leaves no part of the chains before it behind.
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("SELECT topic, partition, id FROM join_parts").fetchall() == [
            ("in", 0, "u/0")
        ]
    store.save([_with_join(50, ("u/0", "u/1"), {"u/1": b"one"})], [])
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        db.execute("DELETE FROM join_parts WHERE id = 'u/0'")
    # Missing, the join store starts empty: the rest of the checkpoint is whole.
    loaded = store.load(P0)
    assert loaded is not None
    assert (loaded.next_offset, loaded.join) == (50, None)
    assert (
        "c.sqlite [in[0]]: join store part u/0 is missing; the label join store starts empty"
        in caplog.text
    )
    store.close()


@pytest.mark.kafka
def test_join_store_parts_are_stored_in_the_changelog_and_tombstoned_when_done(
    broker: EmbeddedBroker, unique_name: Callable[[str], str], kafka_client: str
) -> None:
    topic = unique_name("changelog")
    ensure_topics(broker.bootstrap, {topic: 2})
    kafka = {"client": kafka_client, "bootstrap_servers": broker.bootstrap}
    config = parse_config({"kafka": kafka})
    sink = kafka_sink(config, KafkaProducerSettings())
    store = ChangelogStore(broker.bootstrap, topic, sink)
    _store_join_chains(store)
    store.close()
    # After the checkpoint that starts the new chain: a tombstone for each earlier part.
    records = read_topic(broker.bootstrap, topic, partitions=[0])
    keys = [(record.key or b"").decode() for record in records]
    assert keys[-5:] == [
        "join/in/u/0",
        "checkpoint/in",
        "join/in/t/0",
        "join/in/t/1",
        "join/in/t/3",
    ]
    assert [record.value for record in records[-3:]] == [None, None, None]
    # A new owner reads the new chain only.
    again = ChangelogStore(broker.bootstrap, topic, kafka_sink(config, KafkaProducerSettings()))
    loaded = again.load(P0)
    assert loaded is not None
    assert loaded.join is not None
    assert loaded.join.in_order() == [b"new full"]
    again.close()


@pytest.mark.kafka
def test_the_changelog_topic_is_made_for_checkpoints_above_a_brokers_default_message_size(
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    kafka_client: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A broker refuses messages above its topic's max.message.bytes (1 MB by default); a
    # checkpoint's windows, references and join parts are often more.
    created: dict[str, dict[str, str]] = {}
    ensure = ensure_topics  # the one service calls

    def recording(bootstrap: str, topics: dict[str, int], **options: Any) -> dict[str, int]:
        created.update(options.get("configs") or {})
        return ensure(bootstrap, topics, **options)

    monkeypatch.setattr(service, "ensure_topics", recording)
    inputs = unique_name("in")
    ensure_topics(broker.bootstrap, {inputs: 2})
    kafka = {
        "client": kafka_client,
        "bootstrap_servers": broker.bootstrap,
        "input_topics": [inputs],
        "group_id": unique_name("group"),
    }
    config = parse_config({"kafka": kafka, "checkpoint": {"store": "kafka"}})
    store = service.checkpoint_store(config, service.kafka_security(config))
    assert isinstance(store, ChangelogStore)
    assert created[store.topic] == {
        "cleanup.policy": "compact",
        "max.message.bytes": str(service.CHANGELOG_MAX_MESSAGE_BYTES),
    }
    part = np.random.default_rng(5).bytes(8 * 1024 * 1024)  # a large join store's full part
    store.save([_with_join(10, ("t/0",), {"t/0": part})], [])
    store.close()
    again = service.checkpoint_store(config, service.kafka_security(config))
    assert again is not None
    loaded = again.load(P0)
    assert loaded is not None
    assert loaded.join is not None
    assert loaded.join.in_order() == [part]
    again.close()
