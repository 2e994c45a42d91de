"""`WorkerPool.split`: every index once, on the caller and the workers, failures raised."""

from __future__ import annotations

import threading

import pytest

from detectors.workers import MAX_SPLIT, WorkerPool


@pytest.mark.parametrize(("size", "n"), [(0, 10), (1, 10), (3, 10), (3, 2), (20, 100), (3, 0)])
def test_split_covers_every_index_once(size: int, n: int) -> None:
    seen: list[int] = []
    threads: list[threading.Thread] = []
    lock = threading.Lock()

    def run(lo: int, hi: int) -> None:
        with lock:
            seen.extend(range(lo, hi))
            threads.append(threading.current_thread())

    WorkerPool(size, "test-split").split(n, run)
    assert sorted(seen) == list(range(n))
    slices = min(max(n, 1), size + 1, MAX_SPLIT)
    assert len(threads) == slices
    assert threads.count(threading.current_thread()) == 1  # one slice runs on the caller


def test_a_failing_slice_fails_the_split() -> None:
    def run(lo: int, hi: int) -> None:
        if lo > 0:
            raise ValueError(f"slice {lo}:{hi}")

    with pytest.raises(ValueError, match="slice 5:10"):
        WorkerPool(1, "test-split").split(10, run)
