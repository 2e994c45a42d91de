"""A state file on a full disk is a fault to wait out, not a crash of its writer (issue
#16): the audit log keeps what the policy held back, the delivery thread keeps delivering.

The disk is a real one: a tmpfs of a few MiB (mounting needs root, as do the orchestrator
tests), filled with a file until the kernel answers ENOSPC.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from connectors.outbox import Outbox
from connectors.sqlite import StorageUnavailable
from monitord.audit import AuditLog
from monitord.config import parse_config
from monitord.delivery import Delivery, build_receivers
from tests.monitord.test_retrain_policy import DRIFT, T0, Recorder, make_policy, run, window
from tests.servers import RecordingServer


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
