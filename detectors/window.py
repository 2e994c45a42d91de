"""Windows over ``(n_rows, n_features)`` batches, allocated once.

A window turns a stream of batches into a sequence of complete windows, each handed to a
test as a contiguous ``(rows, n_features)`` array. Rows are counted from 0 since
construction or `reset()`, like every detector stream.

- `CountWindow(size, step)`: the last ``size`` rows, evaluated every ``step`` rows
  (``step == size`` is tumbling). Worked example, size 4, step 2: rows 0-3 close the first
  window at row 3, rows 2-5 the second at row 5, rows 4-7 the third at row 7.
- `EventTimeWindow(width_s, step_s)`: rows whose event time lies in ``[end - width, end)``
  for ends on a grid of ``step_s`` seconds (``step_s == width_s`` is tumbling). A window
  closes when a row at or after its end arrives (the watermark is the latest event time
  seen); a late row is placed by its own time if its window is still open and counted in
  ``late_rows`` otherwise.
- `HybridWindow(max_rows, max_seconds, min_rows)`: tumbling windows of arriving rows that
  close at ``max_rows`` rows, or at the first row whose event time is ``max_seconds`` or
  more past the window's first row once the window holds ``min_rows`` (that row opens the
  next window): "1,000 rows or 10 minutes, whichever comes first, with at least 50 rows".
  Memory is bounded by ``max_rows``. Rows stay in arrival order; a row more than
  ``max_seconds`` older than the newest event time seen is counted in ``late_rows`` and
  kept. Worked example, max_rows 4, max_seconds 10, min_rows 2, times 0, 1, 12, 13, 14,
  15, 16: rows 0-1 close at row 2 (12 >= 0 + 10; row 2 opens the next window), rows 2-5
  close by count at row 5, row 6 waits.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from detectors.detection import FloatArray, IntArray, State

_T = TypeVar("_T", bound=np.generic)


@dataclass(frozen=True, eq=False)
class WindowView:
    """One complete window: ``rows`` is only valid until the window is extended again."""

    first_row: int
    last_row: int
    rows: npt.NDArray[np.generic]
    start_time: float = float("nan")
    end_time: float = float("nan")


class CountWindow:
    """The last ``size`` rows, evaluated every ``step`` rows (tumbling when equal)."""

    def __init__(
        self, n_features: int, size: int, step: int | None = None, dtype: type = np.float64
    ) -> None:
        step = size if step is None else step
        if size < 1:
            raise ValueError(f"window size: must be at least 1 row, got {size}")
        if not 1 <= step <= size:
            raise ValueError(f"window step: must be between 1 and size ({size}), got {step}")
        self.size, self.step, self._n_features = size, step, n_features
        self._buffer: npt.NDArray[np.generic] = np.empty((size, n_features), dtype=dtype)
        self.reset()

    def reset(self) -> None:
        self._filled = 0  # valid rows at the start of the buffer
        self.rows_seen = 0

    def extend(
        self, batch: npt.NDArray[np.generic], event_times: FloatArray | None = None
    ) -> Iterator[WindowView]:
        """Append ``batch``; yield every window it completes, oldest first."""
        del event_times  # count windows ignore time
        start = 0
        n = batch.shape[0]
        while start < n:
            take = min(self.size - self._filled, n - start)
            self._buffer[self._filled : self._filled + take] = batch[start : start + take]
            self._filled += take
            self.rows_seen += take
            start += take
            if self._filled == self.size:
                yield WindowView(self.rows_seen - self.size, self.rows_seen - 1, self._buffer)
                keep = self.size - self.step
                self._buffer[:keep] = self._buffer[self.step :]
                self._filled = keep

    def snapshot(self) -> State:
        return {
            "rows": self._buffer[: self._filled].copy(),
            "rows_seen": np.array(self.rows_seen, dtype=np.int64),
        }

    def restore(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        rows = state["rows"]
        if rows.ndim != 2 or rows.shape[1] != self._n_features or rows.shape[0] >= self.size:
            raise ValueError(f"window state: rows of shape {rows.shape} do not fit this window")
        self._filled = rows.shape[0]
        self._buffer[: self._filled] = rows
        self.rows_seen = int(state["rows_seen"])


class EventTimeWindow:
    """Rows whose event time falls in ``[end - width_s, end)``, ends every ``step_s``."""

    def __init__(
        self,
        n_features: int,
        width_s: float,
        step_s: float | None = None,
        dtype: type = np.float64,
        initial_capacity: int = 1024,
    ) -> None:
        step_s = width_s if step_s is None else step_s
        if not width_s > 0:
            raise ValueError(f"window width_s: must be positive, got {width_s}")
        if not 0 < step_s <= width_s:
            raise ValueError(f"window step_s: must be in (0, width_s={width_s}], got {step_s}")
        self.width_s, self.step_s, self._n_features = width_s, step_s, n_features
        self._dtype = dtype
        self._capacity = initial_capacity
        self.reset()

    def reset(self) -> None:
        self._rows: npt.NDArray[np.generic] = np.empty(
            (self._capacity, self._n_features), dtype=self._dtype
        )
        self._times: FloatArray = np.empty(self._capacity)
        self._stream_rows: IntArray = np.empty(self._capacity, dtype=np.int64)
        self._filled = 0
        self._end = float("nan")  # end of the next window to close
        self.rows_seen = 0
        self.late_rows = 0

    def extend(
        self, batch: npt.NDArray[np.generic], event_times: FloatArray | None = None
    ) -> Iterator[WindowView]:
        """Append ``batch`` with its ``(n_rows,)`` event times (seconds); yield closed windows."""
        if event_times is None or event_times.shape != (batch.shape[0],):
            raise ValueError("event-time window: pass event_times of shape (n_rows,)")
        if not np.isfinite(event_times).all():
            raise ValueError("event-time window: event_times must be finite")
        n = batch.shape[0]
        if np.isnan(self._end):
            self._end = (np.floor(event_times[0] / self.step_s) + 1) * self.step_s
        stream_rows = np.arange(self.rows_seen, self.rows_seen + n)
        self.rows_seen += n
        start = 0
        while start < n:
            # Rows before the first one at or past the current end belong to open windows.
            closing = np.flatnonzero(event_times[start:] >= self._end)
            stop = n if closing.size == 0 else start + int(closing[0])
            self._append(batch[start:stop], event_times[start:stop], stream_rows[start:stop])
            start = stop
            if start < n:
                yield from self._close_until(float(event_times[start]))

    def _close_until(self, watermark: float) -> Iterator[WindowView]:
        while watermark >= self._end:
            begin = self._end - self.width_s
            times = self._times[: self._filled]
            inside = (times >= begin) & (times < self._end)
            if inside.any():
                rows = self._rows[: self._filled][inside]
                stream = self._stream_rows[: self._filled][inside]
                yield WindowView(int(stream.min()), int(stream.max()), rows, begin, self._end)
            self._end += self.step_s
            keep = times >= self._end - self.width_s
            kept = int(keep.sum())
            self._rows[:kept] = self._rows[: self._filled][keep]
            self._times[:kept] = times[keep]
            self._stream_rows[:kept] = self._stream_rows[: self._filled][keep]
            self._filled = kept

    def _append(self, rows: npt.NDArray[np.generic], times: FloatArray, stream: IntArray) -> None:
        late = times < self._end - self.width_s
        self.late_rows += int(late.sum())
        rows, times, stream = rows[~late], times[~late], stream[~late]
        needed = self._filled + rows.shape[0]
        if needed > self._rows.shape[0]:
            capacity = max(needed, 2 * self._rows.shape[0])
            self._rows = _grown(self._rows, capacity)
            self._times = _grown(self._times, capacity)
            self._stream_rows = _grown(self._stream_rows, capacity)
        self._rows[self._filled : needed] = rows
        self._times[self._filled : needed] = times
        self._stream_rows[self._filled : needed] = stream
        self._filled = needed

    def snapshot(self) -> State:
        return {
            "rows": self._rows[: self._filled].copy(),
            "times": self._times[: self._filled].copy(),
            "stream_rows": self._stream_rows[: self._filled].copy(),
            "end": np.array(self._end, dtype=np.float64),
            "rows_seen": np.array(self.rows_seen, dtype=np.int64),
            "late_rows": np.array(self.late_rows, dtype=np.int64),
        }

    def restore(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        rows = state["rows"]
        if rows.ndim != 2 or rows.shape[1] != self._n_features:
            raise ValueError(f"window state: rows of shape {rows.shape} do not fit this window")
        self.reset()
        times = np.asarray(state["times"], dtype=np.float64)
        self._append(rows, times, np.asarray(state["stream_rows"], dtype=np.int64))
        self._end = float(state["end"])  # set after: restored rows are never late
        self.rows_seen = int(state["rows_seen"])
        self.late_rows = int(state["late_rows"])


class HybridWindow:
    """Tumbling windows closing at ``max_rows`` rows or ``max_seconds`` of event time."""

    def __init__(
        self,
        n_features: int,
        max_rows: int,
        max_seconds: float,
        min_rows: int = 1,
        dtype: type = np.float64,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"window max_rows: must be at least 1 row, got {max_rows}")
        if not 1 <= min_rows <= max_rows:
            raise ValueError(
                f"window min_rows: must be in [1, max_rows={max_rows}], got {min_rows}"
            )
        if not max_seconds > 0:
            raise ValueError(f"window max_seconds: must be positive, got {max_seconds}")
        self.size, self.max_seconds, self.min_rows = max_rows, float(max_seconds), min_rows
        self._n_features = n_features
        self._buffer: npt.NDArray[np.generic] = np.empty((max_rows, n_features), dtype=dtype)
        self._times: FloatArray = np.empty(max_rows)
        self.reset()

    def reset(self) -> None:
        self._filled = 0
        self.rows_seen = 0
        self.late_rows = 0
        self._watermark = -np.inf  # newest event time seen

    def extend(
        self, batch: npt.NDArray[np.generic], event_times: FloatArray | None = None
    ) -> Iterator[WindowView]:
        """Append ``batch`` with its ``(n_rows,)`` event times (seconds); yield closed windows."""
        n = batch.shape[0]
        if event_times is None or event_times.shape != (n,):
            raise ValueError("hybrid window: pass event_times of shape (n_rows,)")
        if not np.isfinite(event_times).all():
            raise ValueError("hybrid window: event_times must be finite")
        newest = np.maximum.accumulate(np.concatenate([[self._watermark], event_times]))
        self.late_rows += int((event_times < newest[:-1] - self.max_seconds).sum())
        self._watermark = float(newest[-1])
        start = 0
        while start < n:
            room = self.size - self._filled
            opening = self._times[0] if self._filled else event_times[start]
            # Rows at or past the deadline close the window before them, once it is full enough.
            earliest = start + max(self.min_rows - self._filled, 0)
            last = min(n, start + room)
            late = np.flatnonzero(event_times[earliest:last] >= opening + self.max_seconds)
            stop = earliest + int(late[0]) if late.size else last
            self._append(batch[start:stop], event_times[start:stop])
            start = stop
            if late.size or self._filled == self.size:
                yield self._view()
                self._filled = 0

    def _append(self, rows: npt.NDArray[np.generic], times: FloatArray) -> None:
        end = self._filled + rows.shape[0]
        self._buffer[self._filled : end] = rows
        self._times[self._filled : end] = times
        self._filled = end
        self.rows_seen += rows.shape[0]

    def _view(self) -> WindowView:
        times = self._times[: self._filled]
        return WindowView(
            self.rows_seen - self._filled,
            self.rows_seen - 1,
            self._buffer[: self._filled],
            float(times.min()),
            float(times.max()),
        )

    def snapshot(self) -> State:
        return {
            "rows": self._buffer[: self._filled].copy(),
            "times": self._times[: self._filled].copy(),
            "rows_seen": np.array(self.rows_seen, dtype=np.int64),
            "late_rows": np.array(self.late_rows, dtype=np.int64),
            "watermark": np.array(self._watermark, dtype=np.float64),
        }

    def restore(self, state: Mapping[str, npt.NDArray[np.generic]]) -> None:
        rows = state["rows"]
        if rows.ndim != 2 or rows.shape[1] != self._n_features or rows.shape[0] >= self.size:
            raise ValueError(f"window state: rows of shape {rows.shape} do not fit this window")
        self._filled = rows.shape[0]
        self._buffer[: self._filled] = rows
        self._times[: self._filled] = np.asarray(state["times"], dtype=np.float64)
        self.rows_seen = int(state["rows_seen"])
        self.late_rows = int(state["late_rows"])
        self._watermark = float(state["watermark"])


def _grown(array: npt.NDArray[_T], capacity: int) -> npt.NDArray[_T]:
    grown = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    grown[: array.shape[0]] = array
    return grown


Window = CountWindow | EventTimeWindow | HybridWindow


__all__ = ["CountWindow", "EventTimeWindow", "HybridWindow", "Window", "WindowView"]
