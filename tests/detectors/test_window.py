from __future__ import annotations

import numpy as np
import pytest

from detectors.window import CountWindow, EventTimeWindow, HybridWindow


def _spans(window: CountWindow, batches: list[np.ndarray]) -> list[tuple[int, int, list[float]]]:
    return [
        (v.first_row, v.last_row, v.rows[:, 0].tolist())
        for batch in batches
        for v in window.extend(batch)
    ]


def test_tumbling_windows_across_uneven_batches() -> None:
    data = np.arange(10.0)[:, None]
    spans = _spans(CountWindow(1, 4), [data[:3], data[3:9], data[9:]])
    assert spans == [(0, 3, [0, 1, 2, 3]), (4, 7, [4, 5, 6, 7])]


def test_sliding_windows_match_the_docstring_example() -> None:
    spans = _spans(CountWindow(1, 4, 2), [np.arange(9.0)[:, None]])
    assert [(a, b) for a, b, _ in spans] == [(0, 3), (2, 5), (4, 7)]
    assert spans[1][2] == [2, 3, 4, 5]


def test_count_window_snapshot_resumes_exactly() -> None:
    data = np.arange(23.0).reshape(-1, 1)
    whole = _spans(CountWindow(1, 5, 3), [data])
    first = CountWindow(1, 5, 3)
    head = _spans(first, [data[:11]])
    resumed = CountWindow(1, 5, 3)
    resumed.restore(first.snapshot())
    assert head + _spans(resumed, [data[11:]]) == whole


def test_event_time_tumbling_and_late_rows() -> None:
    window = EventTimeWindow(1, width_s=10.0)
    times = np.array([1.0, 2.0, 9.0, 11.0, 12.0, 25.0, 3.0, 31.0])
    views = list(window.extend(np.arange(8.0)[:, None], times))
    assert [(v.first_row, v.last_row, v.start_time, v.end_time) for v in views] == [
        (0, 2, 0.0, 10.0),
        (3, 4, 10.0, 20.0),
        (5, 5, 20.0, 30.0),
    ]
    assert window.late_rows == 1  # t=3 arrived after its window [0, 10) had closed


def test_event_time_sliding_windows_overlap() -> None:
    window = EventTimeWindow(1, width_s=10.0, step_s=5.0)
    times = np.array([1.0, 6.0, 11.0, 16.0, 30.0])
    views = list(window.extend(np.arange(5.0)[:, None], times))
    assert [(v.start_time, v.end_time, v.rows[:, 0].tolist()) for v in views] == [
        (-5.0, 5.0, [0.0]),
        (0.0, 10.0, [0.0, 1.0]),
        (5.0, 15.0, [1.0, 2.0]),
        (10.0, 20.0, [2.0, 3.0]),
        (15.0, 25.0, [3.0]),
    ]


def test_bad_parameters_name_themselves() -> None:
    with pytest.raises(ValueError, match="window size"):
        CountWindow(1, 0)
    with pytest.raises(ValueError, match="window step"):
        CountWindow(1, 5, 6)
    with pytest.raises(ValueError, match="width_s"):
        EventTimeWindow(1, 0.0)
    with pytest.raises(ValueError, match="event_times"):
        list(EventTimeWindow(1, 5.0).extend(np.zeros((2, 1))))


def _hybrid(
    window: HybridWindow, data: np.ndarray, times: np.ndarray, sizes: list[int]
) -> list[tuple[int, int, list[float], float, float]]:
    """Every closed window (copied: a view is only valid until the next extend)."""
    spans, start = [], 0
    for size in [*sizes, data.shape[0]]:
        stop = min(start + size, data.shape[0])
        if stop > start:
            spans += [
                (v.first_row, v.last_row, v.rows[:, 0].tolist(), v.start_time, v.end_time)
                for v in window.extend(data[start:stop], times[start:stop])
            ]
        start = stop
    return spans


def test_hybrid_window_docstring_example() -> None:
    window = HybridWindow(1, max_rows=4, max_seconds=10.0, min_rows=2)
    times = np.array([0.0, 1.0, 12.0, 13.0, 14.0, 15.0, 16.0])
    spans = _hybrid(window, np.arange(7.0)[:, None], times, [])
    # Rows 0-1 close at row 2 (12 >= 0 + 10; row 2 opens the next window), rows 2-5 close by
    # count, row 6 waits.
    assert spans == [(0, 1, [0.0, 1.0], 0.0, 1.0), (2, 5, [2.0, 3.0, 4.0, 5.0], 12.0, 15.0)]
    assert window.rows_seen == 7
    assert window.snapshot()["rows"][:, 0].tolist() == [6.0]
    assert window.late_rows == 0


def test_hybrid_window_closed_by_time_waits_for_min_rows() -> None:
    # Deadline 0 + 10 passes at row 1, but the window holds one row of three: rows 1 and 2
    # join it, and row 3 (still past the deadline) closes it. The next window opens at row 3
    # (t = 22, deadline 32); row 5 (t = 35) is past it with two rows in, so it joins; row 6
    # closes.
    window = HybridWindow(1, max_rows=10, max_seconds=10.0, min_rows=3)
    times = np.array([0.0, 20.0, 21.0, 22.0, 23.0, 35.0, 36.0])
    spans = _hybrid(window, np.arange(7.0)[:, None], times, [])
    assert spans == [
        (0, 2, [0.0, 1.0, 2.0], 0.0, 21.0),
        (3, 5, [3.0, 4.0, 5.0], 22.0, 35.0),
    ]


def test_hybrid_window_counts_late_rows_and_keeps_them() -> None:
    # Late: more than 10 s older than the newest time seen (t = 15 after 30, 19.9 after 30,
    # 29.99 after 40). 25 is 5 s behind, not late. Late rows stay in arrival order.
    window = HybridWindow(1, max_rows=100, max_seconds=10.0)
    times = np.array([0.0, 5.0, 30.0, 15.0, 25.0, 19.9, 40.0, 29.99])
    spans = _hybrid(window, np.arange(8.0)[:, None], times, [])
    assert spans == [
        (0, 1, [0.0, 1.0], 0.0, 5.0),
        (2, 5, [2.0, 3.0, 4.0, 5.0], 15.0, 30.0),  # start/end: oldest and newest time held
    ]
    assert window.late_rows == 3
    assert window.snapshot()["rows"][:, 0].tolist() == [6.0, 7.0]


def test_hybrid_window_ignores_the_batch_split() -> None:
    rng = np.random.default_rng(3)
    times = np.cumsum(rng.exponential(1.0, 3000)) + rng.normal(0.0, 4.0, 3000)  # out of order
    times[::97] -= 60.0  # and some a minute late
    data = np.arange(3000.0)[:, None]
    for max_rows, max_seconds, min_rows in [(50, 20.0, 5), (7, 3.0, 7), (200, 30.0, 1)]:
        whole_window = HybridWindow(1, max_rows, max_seconds, min_rows)
        whole = _hybrid(whole_window, data, times, [])
        assert len(whole) > 20
        sizes = rng.integers(1, 2 * max_rows, size=3000).tolist()
        pieces_window = HybridWindow(1, max_rows, max_seconds, min_rows)
        assert _hybrid(pieces_window, data, times, sizes) == whole
        assert pieces_window.late_rows == whole_window.late_rows > 0
        # Windows tile the stream: every row in exactly one window, in order.
        closed = [row for _, _, rows, _, _ in whole for row in rows]
        assert closed == list(range(len(closed)))
        assert all(min_rows <= len(rows) <= max_rows for _, _, rows, _, _ in whole)


def test_hybrid_window_snapshot_resumes_exactly() -> None:
    rng = np.random.default_rng(4)
    times = np.cumsum(rng.exponential(1.0, 500))
    data = rng.normal(size=(500, 2))
    whole = [v.rows.copy() for v in HybridWindow(2, 30, 12.0, 4).extend(data, times)]
    first = HybridWindow(2, 30, 12.0, 4)
    head = [v.rows.copy() for v in first.extend(data[:237], times[:237])]
    resumed = HybridWindow(2, 30, 12.0, 4)
    resumed.restore(first.snapshot())
    tail = [v.rows.copy() for v in resumed.extend(data[237:], times[237:])]
    assert len(head + tail) == len(whole)
    assert all(np.array_equal(a, b) for a, b in zip(head + tail, whole, strict=True))


def test_hybrid_window_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="max_rows"):
        HybridWindow(1, max_rows=0, max_seconds=10.0)
    with pytest.raises(ValueError, match="min_rows"):
        HybridWindow(1, max_rows=5, max_seconds=10.0, min_rows=6)
    with pytest.raises(ValueError, match="min_rows"):
        HybridWindow(1, max_rows=5, max_seconds=10.0, min_rows=0)
    for seconds in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_seconds"):
            HybridWindow(1, max_rows=5, max_seconds=seconds)
    window = HybridWindow(1, max_rows=5, max_seconds=10.0)
    with pytest.raises(ValueError, match="event_times"):
        list(window.extend(np.zeros((2, 1))))
    with pytest.raises(ValueError, match="event_times"):
        list(window.extend(np.zeros((2, 1)), np.zeros(3)))
    with pytest.raises(ValueError, match="event_times must be finite"):
        list(window.extend(np.zeros((2, 1)), np.array([0.0, np.nan])))
