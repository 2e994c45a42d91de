"""A calibration worker's main (`monitord.calibrations`): ``python -m
monitord.calibration_worker`` calibrates each job read on stdin until stdin ends."""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import IO, Any

from monitord.calibrations import LENGTH, calibrated, receive


def serve(jobs: IO[bytes], answers: IO[bytes]) -> None:
    """Answer each job of ``jobs`` (a profile and settings) with its calibration, or with
    the exception it raised (raised again in the daemon, as on the loop)."""
    while (job := receive(jobs)) is not None:
        try:
            answer: Any = calibrated(*job)
        except Exception as exc:  # the daemon's to raise
            answer = exc
        payload = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
        answers.write(LENGTH.pack(len(payload)) + payload)
        answers.flush()


def main() -> None:
    # Signals are the daemon's (Ctrl-C and a service manager's SIGTERM reach the whole
    # group; the daemon ends its workers by closing their input). BLAS threads follow the
    # daemon's environment (`limit_blas_threads`). Answers go to a copy of stdout, and
    # stdout to stderr: a library's stray print must not corrupt them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
