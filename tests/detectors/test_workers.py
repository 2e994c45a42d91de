"""`WorkerPool`: every index once, on the caller and the workers, failures raised."""

from __future__ import annotations

import threading

import pytest

from detectors.workers import MAX_THREADS, WorkerPool


@pytest.mark.parametrize(("size", "n"), [(0, 10), (1, 10), (3, 10), (3, 2), (20, 100), (3, 0)])
def test_share_runs_every_index_once(size: int, n: int) -> None:
    seen: list[int] = []
    threads: set[threading.Thread] = set()
    lock = threading.Lock()

    def run(i: int) -> None:
        with lock:
            seen.append(i)
            threads.add(threading.current_thread())

    WorkerPool(size, "test-share").share(n, run)
    assert sorted(seen) == list(range(n))
    assert len(threads) <= min(size + 1, MAX_THREADS)


def test_share_runs_meanwhile_on_the_caller_while_workers_take_indexes() -> None:
    seen: list[int] = []
    lock = threading.Lock()
    caller: list[threading.Thread] = []

    def run(i: int) -> None:
        with lock:
            seen.append(i)

    WorkerPool(2, "test-share").share(
        50, run, meanwhile=lambda: caller.append(threading.current_thread())
    )
    assert sorted(seen) == list(range(50))
    assert caller == [threading.current_thread()]


def test_a_failing_index_fails_the_share() -> None:
    def run(i: int) -> None:
        if i == 7:
            raise ValueError("index 7")

    with pytest.raises(ValueError, match="index 7"):
        WorkerPool(1, "test-share").share(20, run)


def test_the_callers_failure_wins_over_a_helpers() -> None:
    helper_failing = threading.Event()

    def run(i: int) -> None:
        helper_failing.set()
        raise RuntimeError("helper")

    def meanwhile() -> None:
        assert helper_failing.wait(timeout=10)  # the helper took the only index
        raise ValueError("caller")

    with pytest.raises(ValueError, match="caller"):
        WorkerPool(1, "test-share").share(1, run, meanwhile)


def test_share_raises_only_once_every_helper_is_done() -> None:
    # Index 0 fails at once; index 1 runs until the caller, on index 2, lets it finish.
    release = threading.Event()
    started_1 = threading.Event()
    finished: list[int] = []

    def run(i: int) -> None:
        if i == 0:
            raise ValueError("index 0")
        if i == 1:
            started_1.set()
            assert release.wait(timeout=10)
        else:
            assert started_1.wait(timeout=10)
            release.set()
        finished.append(i)

    def meanwhile() -> None:
        assert started_1.wait(timeout=10)  # a helper holds index 1: index 2 is the caller's

    with pytest.raises(ValueError, match="index 0"):
        WorkerPool(2, "test-share").share(3, run, meanwhile)
    assert sorted(finished) == [1, 2]
