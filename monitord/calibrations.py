"""Threshold calibration of new model versions, in worker processes when many come at once.

A version whose warm-up is complete has its thresholds calibrated (`calibrate_suite`:
about 15 ms at 50 features, over a second at 500) before it can detect. One version at a
time, that is done on the loop. A fleet of versions warming up together (a release of
many models, or a daemon starting on many) used to stop the loop for the sum of them:
instead, once a batch has spent a tenth of a second calibrating on the loop
(`monitord.monitor.LOOP_CALIBRATION_S`), the rest go to ``workers`` processes, and the
loop reads on, holding those versions' rows until their thresholds come back
(`monitord.monitor`). Processes, not threads: the calibration's Python steps would
contend for the loop's interpreter lock.

A worker is ``python -m monitord.calibration_worker`` reading jobs on its stdin and writing
results on its stdout (length-prefixed pickles, between this process and its own child
only). Not `multiprocessing`: its spawned children import the parent's main module again,
which runs an embedding script's top level a second time. A worker exits when its stdin
closes, so it does not outlive the daemon, even one killed with SIGKILL. A worker that
dies fails its jobs, which are then calibrated on the loop, as is everything after; so does
one that is alive but does not answer a job the loop waits for (`ANSWER_TIMEOUT_S`), once
killed.

The calibration is a deterministic function of the profile and the settings, so a version
detects exactly as if it had been calibrated on the loop, only later.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
import time
from concurrent import futures
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any

from detectors.calibration import Calibration, rebound
from detectors.profile import ReferenceProfile
from monitord.config import DetectionSettings
from monitord.suite import calibrate_suite

log = logging.getLogger(__name__)

Calibrated = tuple[Calibration | None]
"""`calibrate_suite`'s result in a one-tuple (None is a result: no window test applies)."""
LENGTH = struct.Struct("<Q")
_Job = tuple[ReferenceProfile, DetectionSettings, "Future[Calibrated]"]


IDLE_S = 60.0
"""Seconds without a job after which the calibration workers are ended (`Calibrations.tidy`)."""

ANSWER_TIMEOUT_S = 60.0
"""Seconds a worker has to answer a job the loop waits for, when its reference has at most
`TIMEOUT_COLUMNS` columns (in proportion for more); past them the worker is taken as hung
(stopped, deadlocked): it is killed, and its jobs and all later ones are calibrated on the
loop. A calibration takes about 1.5 s at 500 columns, in proportion to them, and a worker's
first one about 5 s more (it loads the compiled kernels): a worker that late is stuck, not
slow. One only slow costs the loop that calibration and the workers, never a result."""

TIMEOUT_COLUMNS = 500
"""Columns of a reference whose worker has `ANSWER_TIMEOUT_S` to answer (more: longer)."""


class WorkerGoneError(RuntimeError):
    """A calibration worker exited before it answered."""


def calibrated(profile: ReferenceProfile, settings: DetectionSettings) -> Calibrated:
    return (calibrate_suite(profile, settings),)


class PendingCalibration:
    """A calibration under way: `done` without waiting, `result` waiting for it."""

    def __init__(
        self,
        future: Future[Calibrated],
        profile: ReferenceProfile,
        settings: DetectionSettings,
        worker: _Worker | None = None,
    ) -> None:
        """``worker``: the one ``future`` was given to (None: made on the loop)."""
        self._future, self.profile, self._settings = future, profile, settings
        self._worker = worker

    def done(self) -> bool:
        return self._future.done()

    def result(self) -> Calibrated:
        """The calibration, made on the loop if no worker has started it yet (rather than
        wait for the worker's queue) or the worker's failed; else the worker's, waited for.
        It refers to `profile` itself, not to the copy the worker was sent. A worker that
        does not answer within `ANSWER_TIMEOUT_S` is killed, the calibration made here."""
        if self._future.cancel():
            return calibrated(self.profile, self._settings)
        if self._worker is not None:
            columns = len(self.profile.numeric_names) + len(self.profile.categorical_names)
            timeout = ANSWER_TIMEOUT_S * max(1.0, columns / TIMEOUT_COLUMNS)
            if not futures.wait([self._future], timeout).done:
                self._worker.kill(f"has not answered in {timeout:.0f} s")
                return calibrated(self.profile, self._settings)
        try:
            (calibration,) = self._future.result()
        except Exception as exc:  # the loop's calibration raises as the worker's did, if so
            log.warning("calibration in a worker failed (%s): calibrating on the loop", exc)
            return calibrated(self.profile, self._settings)
        return (None if calibration is None else rebound(calibration, self.profile),)

    def cancel(self) -> None:
        self._future.cancel()


class _Worker:
    """One worker process, a thread writing its jobs and one reading its answers (each
    waits on a pipe, not on the interpreter)."""

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, path]))}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "monitord.calibration_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._answering: collections.deque[Future[Calibrated]] = collections.deque()
        self.alive = True
        self._lock = threading.Lock()
        self._free = threading.Semaphore(1)  # the worker has no job
        for run in (self._write, self._read):
            threading.Thread(target=run, name="monitord-calibration", daemon=True).start()

    @property
    def load(self) -> int:
        """Jobs given and not answered."""
        return self._jobs.qsize() + len(self._answering)

    def submit(self, profile: ReferenceProfile, settings: DetectionSettings) -> Future[Calibrated]:
        future: Future[Calibrated] = Future()
        # Pickled when sent, not now: a queue of pickles would be a copy of every waiting
        # version's reference (4 MB each at 500 features).
        self._jobs.put((profile, settings, future))
        return future

    def close(self) -> None:
        self._jobs.put(None)

    def kill(self, reason: str) -> None:
        """End a worker that is alive but of no use (hung, say why): its jobs fail as if it
        had died, and it is reaped here (SIGKILL ends it even stopped)."""
        log.error(
            "calibration worker (pid %d) %s: hung (stopped or deadlocked?), killed; its "
            "references and all later ones are calibrated on the loop",
            self._process.pid,
            reason,
        )
        with self._lock:  # nothing more is given to it (`_write`)
            self.alive = False
        with contextlib.suppress(OSError):
            self._process.kill()
        self._process.wait()

    def _write(self) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        while (job := self._jobs.get()) is not None:
            profile, settings, future = job
            # One job at the worker at a time: the others stay in the queue, where the
            # loop can still take them (`PendingCalibration.result`).
            self._free.acquire()
            if not future.set_running_or_notify_cancel():
                self._free.release()
                continue  # cancelled (made on the loop): not sent
            try:  # the loop may be filling the profile's cached fields meanwhile
                payload = pickle.dumps((profile, settings), pickle.HIGHEST_PROTOCOL)
            except Exception as exc:  # made on the loop (`PendingCalibration.result`)
                future.set_exception(exc)
                self._free.release()
                continue
            with self._lock:  # else _read may have failed what was given, not this one
                given = self.alive
                if given:
                    self._answering.append(future)
            if not given:
                future.set_exception(self._gone())
                self._free.release()
                continue
            try:
                stdin.write(LENGTH.pack(len(payload)) + payload)
                stdin.flush()
            except OSError:  # the worker is gone: _read fails what it was given
                continue
        with contextlib.suppress(OSError):
            stdin.close()  # the worker's end of input: it exits

    def _read(self) -> None:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            while (answer := receive(stdout)) is not None:
                future = self._answering.popleft()
                if isinstance(answer, BaseException):
                    future.set_exception(answer)
                else:
                    future.set_result(answer)
                self._free.release()
        finally:
            # Ended, or an answer could not be read: the worker is of no more use.
            with contextlib.suppress(OSError):
                self._process.kill()
            self._process.wait()
            with self._lock:
                self.alive = False
                unanswered = list(self._answering)
                self._answering.clear()
            for future in unanswered:
                future.set_exception(self._gone())
            self._free.release()  # a job waiting to be sent finds the worker gone

    def _gone(self) -> WorkerGoneError:
        return WorkerGoneError(f"calibration worker exited with {self._process.returncode}")


def receive(stream: IO[bytes]) -> Any:
    """The next length-prefixed pickle on ``stream`` (None at its end, or where it ends
    early: its writer exited while writing)."""
    head = stream.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (length,) = LENGTH.unpack(head)
    payload = stream.read(length)
    return pickle.loads(payload) if len(payload) == length else None


class Calibrations:
    """Calibrates references on the loop, or in ``workers`` processes (0: always on the
    loop) when `start` is not asked for the loop (``inline``). Workers are started on first
    use: a daemon that never sees many new versions in one batch never has one."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: list[_Worker] = []
        self._failed = False  # a worker died: the loop calibrates from then on
        self._used = -math.inf  # when a worker was last given a job (monotonic)

    def start(
        self, profile: ReferenceProfile, settings: DetectionSettings, *, inline: bool
    ) -> PendingCalibration:
        if not inline and self.workers > 0 and not self._failed:
            worker = self._worker()
            if worker is not None:
                self._used = time.monotonic()
                return PendingCalibration(
                    worker.submit(profile, settings), profile, settings, worker
                )
        future: Future[Calibrated] = Future()
        future.set_result(calibrated(profile, settings))
        return PendingCalibration(future, profile, settings)

    def _worker(self) -> _Worker | None:
        """The least busy worker (started if fewer than ``workers`` run); None if one died."""
        if not all(worker.alive for worker in self._pool):
            log.warning("a calibration worker died: new references are calibrated on the loop")
            self._failed = True
            self.close()
            return None
        if len(self._pool) < self.workers:
            try:
                self._pool.append(_Worker())
            except OSError as exc:
                log.warning("cannot start a calibration worker (%s): calibrating on the loop", exc)
                self._failed = True
                return None
        return min(self._pool, key=lambda worker: worker.load)

    def tidy(self) -> None:
        """End the workers once they have had nothing to do for `IDLE_S`: a fleet's warm-up
        is a burst, and a worker holds about 250 MB of its own."""
        idle = time.monotonic() - self._used > IDLE_S
        if self._pool and idle and not any(worker.load for worker in self._pool):
            self.close()

    def close(self) -> None:
        """End the workers once their jobs are answered (they exit as their input ends)."""
        for worker in self._pool:
            worker.close()
        self._pool = []


__all__ = [
    "LENGTH",
    "Calibrated",
    "Calibrations",
    "PendingCalibration",
    "WorkerGoneError",
    "calibrated",
    "receive",
]
