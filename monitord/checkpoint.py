"""Checkpoints: a partition's detector and policy state, with the input offset it covers.

A model version's state lives with the input partition that carries its events (the first
one it was seen on), so a checkpoint is per partition: every model version owned by the
partition (its windows, ADWIN buckets, warm-up rows and row log, and its alert and retrain
episodes) and ``next_offset``, the first input offset *not* folded into that state. Offsets
are committed only after the checkpoint covering them is stored; on assignment the daemon
restores the checkpoint and seeks to ``next_offset``, so every record is folded into detector
state exactly once, whatever was committed.

The format is a versioned ``.npz`` container read with ``allow_pickle=False``: JSON metadata
plus named numeric arrays, safe to load from an untrusted store. The metadata is validated
as it is read (`CheckpointMeta`); each version's two documents are the monitor's and the
policy's to validate (`monitord.state`). A reference captured from warm-up events is
stored once per profile id beside the checkpoints.

Two stores: `LocalStore` (SQLite in ``state_dir``, the embedded default) and
`ChangelogStore` (a compacted Kafka topic partitioned like the input, so state moves with a
partition between machines).
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from pydantic import Field, NonNegativeInt

from connectors.kafka import KafkaSecurity, read_topic
from connectors.sqlite import DurableFile, StorageUnavailable, write
from connectors.stream import Sink, TopicPartition
from detectors.detection import State, sub_state
from detectors.npz import read_npz
from detectors.profile import ProfileError, ReferenceProfile
from monitord.join_parts import JoinParts
from monitord.monitor import MonitorState
from monitord.state import StateError, StateModel

log = logging.getLogger(__name__)

FORMAT = "monitord.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(Exception):
    """A stored checkpoint that cannot be read (corrupt, foreign or from a newer format)."""


@dataclass
class VersionState:
    """One model version inside a checkpoint."""

    monitor: dict[str, object]  # a stored `MonitorState` (validated when restored)
    arrays: State
    policy: dict[str, object] | None  # a stored `PolicyState`, None before its first window
    # A stored `monitord.performance.PerformanceState` (its arrays are ``performance/...``
    # in ``arrays``), None before the version's first label.
    performance: dict[str, object] | None = None


@dataclass
class Checkpoint:
    partition: TopicPartition
    next_offset: int
    versions: list[VersionState]
    written_at: float = 0.0
    sources: dict[str, int] = field(default_factory=dict)  # repartitioned: source offsets
    # The partition's `monitord.join_store.JoinStore`, in parts (`monitord.join_parts`).
    join: JoinParts | None = None


class StoredVersion(StateModel):
    """A version's documents in the container's metadata; its arrays are named ``<i>/...``."""

    monitor: dict[str, Any]  # `monitord.monitor.MonitorState`
    policy: dict[str, Any] | None  # `monitord.policy.PolicyState`
    performance: dict[str, Any] | None = None  # `monitord.performance.PerformanceState`


class CheckpointMeta(StateModel):
    """The container's JSON metadata."""

    format: str
    format_version: int
    topic: str
    partition: NonNegativeInt
    next_offset: NonNegativeInt
    written_at: float
    versions: tuple[StoredVersion, ...]
    sources: dict[str, NonNegativeInt] = Field(default_factory=dict)  # absent before repartition
    # The ids of the join store's parts, stored beside the checkpoint (before them, the
    # store was inline: the container's "join" entry).
    join_parts: tuple[str, ...] = ()


def encode(checkpoint: Checkpoint) -> bytes:
    """The checkpoint as a self-describing ``.npz`` container (no pickle)."""
    meta = CheckpointMeta(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        topic=checkpoint.partition.topic,
        partition=checkpoint.partition.partition,
        next_offset=checkpoint.next_offset,
        written_at=checkpoint.written_at,
        versions=tuple(
            StoredVersion(monitor=v.monitor, policy=v.policy, performance=v.performance)
            for v in checkpoint.versions
        ),
        sources=checkpoint.sources,
        join_parts=() if checkpoint.join is None else checkpoint.join.ids,
    )
    entries: dict[str, Any] = {
        f"{i}/{name}": value
        for i, version in enumerate(checkpoint.versions)
        for name, value in version.arrays.items()
    }
    buffer = io.BytesIO()
    # Uncompressed: window contents are floats that hardly compress, and time matters here.
    entries["meta"] = np.frombuffer(json.dumps(meta.model_dump()).encode(), dtype=np.uint8)
    np.savez(buffer, **entries)
    return buffer.getvalue()


def decode(blob: bytes, source: str) -> Checkpoint:
    """Read an `encode` result; ``source`` names it in errors."""
    try:
        arrays = read_npz(blob, source)
        data = json.loads(bytes(arrays.pop("meta")).decode())
        join = arrays.pop("join", None)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: not a readable monitord checkpoint ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{source}: not a monitord checkpoint")
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{source}: checkpoint format {data.get('format_version')!r}; this monitord reads "
            f"format {FORMAT_VERSION}"
        )
    try:
        meta = CheckpointMeta.load(data, source)
    except StateError as exc:
        raise CheckpointError(str(exc)) from None
    versions = [
        VersionState(
            version.monitor, sub_state(arrays, f"{i}/"), version.policy, version.performance
        )
        for i, version in enumerate(meta.versions)
    ]
    if meta.join_parts:  # read from the store by the caller (`with_join_parts`)
        parts: JoinParts | None = JoinParts(meta.join_parts, {})
    else:
        parts = None if join is None else JoinParts((INLINE_JOIN,), {INLINE_JOIN: bytes(join)})
    return Checkpoint(
        TopicPartition(meta.topic, meta.partition),
        meta.next_offset,
        versions,
        meta.written_at,
        dict(meta.sources),
        parts,
    )


def with_join_parts(checkpoint: Checkpoint, stored: Mapping[str, bytes], source: str) -> Checkpoint:
    """``checkpoint`` with the blobs of its join store's parts from ``stored`` (a store's
    parts of the partition, by id). With one missing the join store starts empty, logged,
    as with one unreadable (`monitord.checkpointer`): the rest of the state is whole."""
    join = checkpoint.join
    if join is None:
        return checkpoint
    missing = [part for part in join.missing() if part not in stored]
    if missing:
        log.error(
            "%s: join store part %s is missing; the label join store starts empty",
            source,
            missing[0],
        )
        checkpoint.join = None
        return checkpoint
    blobs = {**stored, **join.blobs}
    checkpoint.join = JoinParts(join.ids, {part: blobs[part] for part in join.ids})
    return checkpoint


class CheckpointStore(Protocol):
    """Where checkpoints and captured references live."""

    def save(self, checkpoints: list[Checkpoint], profiles: list[ReferenceProfile]) -> None:
        """Store every checkpoint (and the captured references they name) durably."""
        ...

    def load(self, partition: TopicPartition) -> Checkpoint | None:
        """The newest checkpoint of ``partition``, None if it never had one."""
        ...

    def load_profile(self, partition: TopicPartition, profile_id: str) -> ReferenceProfile:
        """A captured reference saved with a checkpoint of ``partition``."""
        ...

    def close(self) -> None: ...


_LOCAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoints (topic TEXT, partition INTEGER, next_offset INTEGER,
    blob BLOB, PRIMARY KEY (topic, partition));
CREATE TABLE IF NOT EXISTS profiles (id TEXT PRIMARY KEY, blob BLOB);
CREATE TABLE IF NOT EXISTS join_parts (topic TEXT, partition INTEGER, id TEXT, blob BLOB,
    PRIMARY KEY (topic, partition, id));
"""


class LocalStore:
    """Checkpoints in one SQLite file; a save of several partitions is one transaction.

    A file that cannot be opened or written (disk full, read-only) raises
    `connectors.sqlite.StorageUnavailable` from `save` and `load`, and is opened again at
    the next call: the daemon waits for its disk rather than exit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # A committed save survives kill -9 and power loss.
        self._file = DurableFile(path, _LOCAL_SCHEMA)
        try:
            self._file.connection()
        except StorageUnavailable as exc:
            log.error("%s; checkpoints wait until it can be written", exc)

    @property
    def _db(self) -> sqlite3.Connection:
        return self._file.connection()

    def save(self, checkpoints: list[Checkpoint], profiles: list[ReferenceProfile]) -> None:
        with write(self._db) as db:
            for profile in profiles:
                db.execute(
                    "INSERT OR IGNORE INTO profiles VALUES (?, ?)",
                    (profile.profile_id, profile.to_bytes()),
                )
            for checkpoint in checkpoints:
                tp, join = checkpoint.partition, checkpoint.join
                db.execute(
                    "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?)",
                    (tp.topic, tp.partition, checkpoint.next_offset, encode(checkpoint)),
                )
                if join is None or join.full:  # the parts of an earlier chain are done with
                    db.execute(
                        "DELETE FROM join_parts WHERE topic = ? AND partition = ?",
                        (tp.topic, tp.partition),
                    )
                for part, blob in ({} if join is None else join.blobs).items():
                    db.execute(
                        "INSERT OR REPLACE INTO join_parts VALUES (?, ?, ?, ?)",
                        (tp.topic, tp.partition, part, blob),
                    )

    def load(self, partition: TopicPartition) -> Checkpoint | None:
        row = self._read(
            "SELECT blob FROM checkpoints WHERE topic = ? AND partition = ?",
            (partition.topic, partition.partition),
        )
        if row is None:
            return None
        source = f"{self.path} [{partition}]"
        checkpoint = decode(row[0], source)
        if checkpoint.join is None or not checkpoint.join.missing():
            return checkpoint
        parts = self._read(
            "SELECT id, blob FROM join_parts WHERE topic = ? AND partition = ?",
            (partition.topic, partition.partition),
            every=True,
        )
        return with_join_parts(checkpoint, dict(parts), source)

    def load_profile(self, partition: TopicPartition, profile_id: str) -> ReferenceProfile:
        del partition  # one file holds every partition's references
        row = self._read("SELECT blob FROM profiles WHERE id = ?", (profile_id,))
        if row is None:
            raise CheckpointError(f"{self.path}: captured reference {profile_id} is missing")
        try:
            return ReferenceProfile.from_bytes(row[0], f"{self.path} [{profile_id}]")
        except ProfileError as exc:
            raise CheckpointError(str(exc)) from exc

    def _read(self, query: str, parameters: tuple[object, ...], every: bool = False) -> Any:
        """The first row of ``query`` (every row if ``every``)."""
        try:
            rows = self._db.execute(query, parameters)
            return rows.fetchall() if every else rows.fetchone()
        except sqlite3.OperationalError as exc:
            raise StorageUnavailable(f"{self.path}: not readable ({exc})") from None

    def close(self) -> None:
        self._file.close()


CHECKPOINT_KEY = "checkpoint/"
PROFILE_KEY = "profile/"
JOIN_KEY = "join/"
INLINE_JOIN = "inline"
"""The one part id of a join store stored inside its checkpoint (the first format)."""


class ChangelogSink(Sink, Protocol):
    """A `Sink` that also sends to a chosen partition (both Kafka clients' sinks do)."""

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> None: ...


class ChangelogStore:
    """Checkpoints in a compacted Kafka topic partitioned like the input (Kafka Streams' pattern).

    The checkpoint of input partition ``topic[p]`` is the newest message keyed
    ``checkpoint/<topic>`` in changelog partition ``p``; a reference captured from warm-up
    events is keyed ``profile/<id>`` in the same partition, written before the first
    checkpoint that names it, and so is each part of its join store, keyed
    ``join/<topic>/<part id>`` (a tombstone once a full part starts a new chain, written
    after the checkpoint that no longer reads it). Whoever is assigned ``topic[p]`` replays
    changelog partition ``p``, so state follows a partition to another machine.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        sink: ChangelogSink,
        *,
        security: KafkaSecurity | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.bootstrap, self.topic = bootstrap, topic
        self._sink, self._security, self._timeout_s = sink, security, timeout_s
        self._profiles: dict[str, ReferenceProfile] = {}  # every reference seen or written
        self._join_parts: dict[TopicPartition, set[str]] = {}  # part ids seen or written

    def save(self, checkpoints: list[Checkpoint], profiles: list[ReferenceProfile]) -> None:
        new = {profile.profile_id: profile for profile in profiles}
        for checkpoint in checkpoints:
            partition = checkpoint.partition.partition
            for version in checkpoint.versions:
                state = MonitorState.load(version.monitor, str(checkpoint.partition))
                for profile_id in state.profile_ids:
                    if profile_id in new:
                        data = new.pop(profile_id).to_bytes()
                        key = (PROFILE_KEY + profile_id).encode()
                        self._sink.send(self.topic, key, data, partition=partition)
            self._save_join(checkpoint, partition)
        self._sink.flush(self._timeout_s)
        self._profiles.update((p.profile_id, p) for p in profiles)

    def _save_join(self, checkpoint: Checkpoint, partition: int) -> None:
        """Send a checkpoint with the new part of its join store before it, and tombstones
        for the parts it no longer reads after it."""
        tp, join = checkpoint.partition, checkpoint.join
        known = self._join_parts.setdefault(tp, set())
        for part, blob in ({} if join is None else join.blobs).items():
            key = f"{JOIN_KEY}{tp.topic}/{part}".encode()
            self._sink.send(self.topic, key, blob, partition=partition)
            known.add(part)
        key = (CHECKPOINT_KEY + tp.topic).encode()
        self._sink.send(self.topic, key, encode(checkpoint), partition=partition)
        if join is None or join.full:
            for part in sorted(known.difference(() if join is None else join.ids)):
                key = f"{JOIN_KEY}{tp.topic}/{part}".encode()
                self._sink.send(self.topic, key, None, partition=partition)
                known.discard(part)

    def load(self, partition: TopicPartition) -> Checkpoint | None:
        records = read_topic(
            self.bootstrap,
            self.topic,
            self._timeout_s,
            security=self._security,
            partitions=[partition.partition],
        )
        wanted = (CHECKPOINT_KEY + partition.topic).encode()
        join_prefix = f"{JOIN_KEY}{partition.topic}/".encode()
        newest = None
        parts: dict[str, bytes] = {}
        for record in records:
            key = record.key or b""
            if key == wanted:
                newest = record
            elif key.startswith(join_prefix):  # the newest of each part (none: a tombstone)
                part = key[len(join_prefix) :].decode(errors="replace")
                if record.value:
                    parts[part] = record.value
                else:
                    parts.pop(part, None)
            elif key.startswith(PROFILE_KEY.encode()) and record.value:
                profile_id = key[len(PROFILE_KEY) :].decode(errors="replace")
                source = f"{self.topic}[{partition.partition}]@{record.offset}"
                try:
                    self._profiles[profile_id] = ReferenceProfile.from_bytes(record.value, source)
                except ProfileError as exc:
                    log.error("%s", exc)
        self._join_parts[partition] = set(parts)
        if newest is None or not newest.value:
            return None
        source = f"{self.topic}[{partition.partition}]@{newest.offset}"
        return with_join_parts(decode(newest.value, source), parts, source)

    def load_profile(self, partition: TopicPartition, profile_id: str) -> ReferenceProfile:
        profile = self._profiles.get(profile_id)
        if profile is None:
            raise CheckpointError(
                f"{self.topic}[{partition.partition}]: captured reference {profile_id} is missing"
            )
        return profile

    def close(self) -> None:
        self._sink.close()


__all__ = [
    "CHECKPOINT_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "INLINE_JOIN",
    "JOIN_KEY",
    "PROFILE_KEY",
    "ChangelogSink",
    "ChangelogStore",
    "Checkpoint",
    "CheckpointError",
    "CheckpointMeta",
    "CheckpointStore",
    "LocalStore",
    "StoredVersion",
    "VersionState",
    "decode",
    "encode",
    "with_join_parts",
]
