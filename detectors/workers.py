"""Worker threads for numba kernels compiled with ``nogil=True``.

Such a kernel runs truly in parallel with the calling thread. A `WorkerPool` creates its
threads on first use and again in a forked child, which inherits the executor but not its
threads (a plain module-level executor would hang there).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")

MAX_THREADS = 8
"""Most threads `WorkerPool.share` runs a job on, whatever the machine's CPU count."""


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class WorkerPool:
    """``size`` worker threads named ``name``, created on first use in each process."""

    def __init__(self, size: int, name: str) -> None:
        self.size, self._name = size, name
        self._pid = -1
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, fn: Callable[..., T], /, *args: object) -> Future[T]:
        if self._pool is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._pool = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=self._name)
        return self._pool.submit(fn, *args)

    def share(
        self, n: int, run: Callable[[int], None], meanwhile: Callable[[], None] | None = None
    ) -> None:
        """Call ``run(i)`` for each ``i`` in ``range(n)``, each thread (the workers and the
        calling one) taking the next ``i`` not yet taken; return once all are done
        (re-raising a failure). The calling thread first runs ``meanwhile``, if given,
        while the workers start on ``run``."""
        taken = iter(range(n))
        lock = threading.Lock()

        def take() -> None:
            while True:
                with lock:
                    i = next(taken, None)
                if i is None:
                    return
                run(i)

        helpers: list[Future[None]] = []
        try:
            for _ in range(min(self.size, n, MAX_THREADS - 1)):
                helpers.append(self.submit(take))
            if meanwhile is not None:
                meanwhile()
            take()
        finally:
            # Every helper is done before anything is raised (the caller's failure first):
            # none may still be writing into the caller's arrays once it returns.
            wait(helpers)
        for helper in helpers:
            helper.result()


__all__ = ["MAX_THREADS", "T", "WorkerPool", "usable_cpus"]
