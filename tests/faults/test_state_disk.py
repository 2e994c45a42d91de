"""A state_dir that fills up or turns read-only is a state, not a crash (issue #16): the
daemon stays up, reports not ready saying why, commits no offset past its last stored
checkpoint, and recovers on its own once the disk has room or is writable; its outputs equal
an undisturbed run's.

The disk is a real one: a tmpfs of a few MiB mounted at state_dir (mounting needs root, as
do the orchestrator tests), filled with a file until the kernel answers ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker
from connectors.outbox import Outbox
from connectors.sqlite import StorageUnavailable
from connectors.stream import TopicPartition
from monitord.audit import AuditLog
from monitord.checkpoint import Checkpoint, LocalStore
from monitord.config import parse_config
from monitord.delivery import Delivery, build_receivers
from tests.faults.harness import (
    Offsets,
    Stream,
    admin_url,
    assert_same_outputs,
    daemon_config,
    daemons,
    finish,
    get,
    published,
    reference_config,
    until,
)
from tests.monitord.test_retrain_policy import DRIFT, T0, Recorder, make_policy, run, window
from tests.servers import RecordingServer

TIMEOUT_S = 120.0
CHECKPOINTS = {"store": "local", "interval_events": 3000, "interval_s": 1.0}


@contextmanager
def tmpfs(path: Path, size: str, *options: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the block."""
    if os.geteuid() != 0:
        pytest.fail("a full or read-only state_dir is a tmpfs of its own: run the tests as root")
    path.mkdir(parents=True, exist_ok=True)
    mount_options = ",".join([f"size={size}", *options])
    subprocess.run(["mount", "-t", "tmpfs", "-o", mount_options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Write a file on ``disk`` until it has no room left; the file, to delete later."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (1 << 20, 1 << 12):  # MiB blocks, then the last pages
            while True:
                try:
                    os.write(fd, bytes(chunk))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return filler


def test_held_back_decisions_wait_for_room_in_the_audit_log(tmp_path: Path) -> None:
    recorder = Recorder()
    run(make_policy(recorder, retrain_min_events=1000), [window(0, DRIFT), window(1, DRIFT)])
    (held,) = recorder.decisions
    with tmpfs(tmp_path / "disk", "1m") as disk:
        audit = AuditLog(disk / "audit.sqlite", clock=lambda: T0)
        try:
            filler = fill(disk)
            audit.record([held])  # called inside the policy: must not fail it
            with pytest.raises(
                StorageUnavailable, match=r"audit\.sqlite: not written \(database or disk is full\)"
            ):
                audit.flush()  # the daemon's flush after a batch: retried until it succeeds
            filler.unlink()
            audit.flush()
            (row,) = audit.history()
        finally:
            audit.close()
    assert (row.id, row.kind, row.status) == (held.id, "retrain", "suppressed")


def test_the_delivery_thread_outlives_a_full_outbox(tmp_path: Path) -> None:
    config = parse_config({"receivers": [{"name": "chat", "type": "slack", "secret_env": "URL"}]})
    with tmpfs(tmp_path / "disk", "1m") as disk, RecordingServer() as server:
        outbox = Outbox(disk / "outbox.sqlite")
        receivers = build_receivers(config.receivers, {"URL": server.url + "/slack"})
        delivery = Delivery(config.receivers, outbox, receivers, dispatch_interval_s=0.05)
        assert outbox.enqueue("alert-1", "chat", b'{"text": "firing"}', now=time.time())
        filler = fill(disk)
        delivery.start()
        try:
            # Delivered, but the outcome cannot be recorded: the message stays due.
            assert server.wait_for(lambda requests: len(requests) >= 2, timeout_s=30)
            assert outbox.pending() == 1
            filler.unlink()
            deadline = time.monotonic() + 30
            while outbox.pending() and time.monotonic() < deadline:
                threading.Event().wait(0.05)
            assert outbox.pending() == 0, "the delivery thread stopped on the full disk"
        finally:
            delivery.close()


def stored_offsets(checkpoints: Path) -> dict[int, int]:
    """Next offset per input partition of the checkpoints stored in ``checkpoints``."""
    with sqlite3.connect(f"file:{checkpoints}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT partition, next_offset FROM checkpoints").fetchall()
    return {int(partition): int(offset) for partition, offset in rows}


def readiness(admin: str) -> tuple[int, list[str]]:
    status, body = get(admin + "/readyz")
    return status, [] if status == 200 else list(json.loads(body)["reasons"])


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize(
    ("audit", "fault"),
    [
        # The first alert's audit row fails: its outputs wait, and the loop with them.
        (True, "recording outputs"),
        # Nothing else is written: events go on in memory, commits wait.
        (False, "storing checkpoints"),
    ],
)
def test_a_full_state_dir_stops_commits_then_recovers(
    tmp_path: Path,
    broker: EmbeddedBroker,
    unique_name: Callable[[str], str],
    offsets: Offsets,
    audit: bool,
    fault: str,
) -> None:
    stream = Stream(unique_name("events"), partitions=2, models=2, per_model=20_000)
    first = 6_000  # 3,000 events per model: past warm-up, before the drift
    stream.produce(broker.bootstrap, stop=first)
    reference_group, full_group = unique_name("reference"), unique_name("full")
    reference = reference_config(tmp_path, broker.bootstrap, stream, reference_group)
    config = daemon_config(
        tmp_path,
        "full",
        broker.bootstrap,
        stream,
        full_group,
        checkpoint=CHECKPOINTS,
        outputs={"audit": audit},
    )
    with tmpfs(tmp_path / "full-state", "16m") as disk, daemons() as start:
        uninterrupted = start(reference, tmp_path / "reference.log")
        daemon = start(config, tmp_path / "full.log")
        admin = admin_url(daemon)
        until(
            lambda: offsets.committed(full_group, stream) == first,
            "the first events checkpointed and committed",
            TIMEOUT_S,
            daemon,
        )
        assert readiness(admin) == (200, [])
        filler = fill(disk)
        stream.produce(broker.bootstrap, start=first)

        def full_and_not_committing() -> bool:
            stored = stored_offsets(disk / "checkpoints.sqlite")
            committed = offsets.committed(full_group, stream)
            assert committed <= sum(stored.values()), "committed past the stored checkpoint"
            status, reasons = readiness(admin)
            return status == 503 and any(
                r.startswith(f"state_dir: {fault}: ") and "disk is full" in r for r in reasons
            )

        until(full_and_not_committing, "not ready for a full state_dir", TIMEOUT_S, daemon)
        stalled = offsets.committed(full_group, stream)
        assert stalled == sum(stored_offsets(disk / "checkpoints.sqlite").values())
        assert stalled < stream.total
        if not audit:  # the loop goes on past the stored checkpoint, in memory only
            until(
                lambda: int(json.loads(get(admin + "/status")[1])["events"]) == stream.total,
                "the whole stream processed in memory",
                TIMEOUT_S,
                daemon,
            )
            assert offsets.committed(full_group, stream) == stalled
            # Idle from now on: a checkpoint is tried again without new events to ask for it.
            tries = daemon.log.read_text().count("checkpoint not stored again")
            until(
                lambda: daemon.log.read_text().count("checkpoint not stored again") > tries,
                "a checkpoint tried again while idle",
                TIMEOUT_S,
                daemon,
            )
        filler.unlink()
        until(lambda: readiness(admin) == (200, []), "ready again", TIMEOUT_S, daemon)
        finish(uninterrupted, offsets, reference_group, stream)
        finish(daemon, offsets, full_group, stream)

    log = (tmp_path / "full.log").read_text()
    assert "Traceback" not in log
    assert f"state_dir: {fault} failed" in log
    expected = published(broker.bootstrap, reference_group)
    assert sum(1 for data in expected.values() if data.get("status") == "firing") >= 2
    assert_same_outputs(published(broker.bootstrap, full_group), expected)


def test_stores_on_a_read_only_state_dir_wait_until_it_is_writable(tmp_path: Path) -> None:
    # `monitord run` refuses a state_dir it cannot write at startup (monitord.preflight);
    # one that turns read-only later, or in between, is waited for by its stores.
    with tmpfs(tmp_path / "ro", "1m", "ro") as disk:
        store = LocalStore(disk / "checkpoints.sqlite")
        audit = AuditLog(disk / "audit.sqlite")
        try:
            with pytest.raises(StorageUnavailable, match=r"checkpoints\.sqlite: cannot open"):
                store.load(TopicPartition("in", 0))
            with pytest.raises(StorageUnavailable, match=r"audit\.sqlite: cannot open"):
                audit.history()
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
            assert store.load(TopicPartition("in", 0)) is None
            store.save([Checkpoint(TopicPartition("in", 0), 42, [], 1.5)], [])
            assert store.load(TopicPartition("in", 0)) == Checkpoint(
                TopicPartition("in", 0), 42, [], 1.5
            )
            assert audit.history() == []
        finally:
            store.close()
            audit.close()
