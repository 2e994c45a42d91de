from __future__ import annotations

import numpy as np
import pytest

from detectors.window import CountWindow, EventTimeWindow


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
