"""What a person sees of a replay on a terminal: outputs as an aligned table, and progress.

The table shows, per alert or retrain request, the input row that decided it and the rows
of its window; event times only when the file has them (a file without timestamps has no
times to show, only row numbers). A test that decides without a threshold (ADWIN) shows
``-`` there, never ``nan``. JSON lines (`monitord.outputs.JsonLinesPublisher`) stay the
format for machines.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import IO

from monitord.alerts import Alert
from monitord.clock import iso
from monitord.monitor import OffsetRange
from monitord.policy import Output

COLUMNS = (
    ("ROW", 9),
    ("OUTPUT", 17),
    ("MODEL", 14),
    ("COLUMN", 14),
    ("TEST", 12),
    ("STATISTIC", 10),
    ("THRESHOLD", 10),
)


def number(value: float) -> str:
    """A statistic as a person reads it: four significant digits, ``-`` for none."""
    return "-" if math.isnan(value) else f"{value:.4g}"


def window_rows(offsets: tuple[OffsetRange, ...], topic: str) -> str:
    """The input rows of a window (``topic``'s; another topic's are named)."""
    mine = [r for r in offsets if r.topic == topic]
    ranges = mine or list(offsets)
    if not ranges:
        return "-"
    first, last = min(r.first_offset for r in ranges), max(r.last_offset for r in ranges)
    of = "" if mine else f" of {ranges[0].topic}"
    return f"rows {first}-{last}{of}"


class TableWriter:
    """A `monitord.outputs.Publisher` writing one aligned text line per output.

    ``timed``: the input has event times, shown as the window's end; ``topic``: the input's
    (rows of another topic, a labels file, are named).
    """

    def __init__(self, stream: IO[bytes], topic: str, *, timed: bool) -> None:
        self._stream, self._topic, self._timed = stream, topic, timed
        self._header_written = False

    def publish(self, outputs: list[Output]) -> None:
        if outputs and not self._header_written:
            self._write(self._cells("ROW", "WINDOW END" if self._timed else None, *_HEADER))
            self._header_written = True
        for output in outputs:
            self._write(self.line(output))

    def line(self, output: Output) -> str:
        row = output.offset.first_offset
        where = "" if output.offset.topic == self._topic else f" of {output.offset.topic}"
        when = iso(output.end_time) if self._timed else None
        window = window_rows(output.offsets, self._topic)
        if isinstance(output, Alert):
            return self._cells(
                f"{row}{where}",
                when,
                f"alert {output.status}",
                f"{output.model}/{output.version}",
                output.feature or "(model)",
                output.detector,
                number(output.statistic),
                number(output.threshold),
                f"{window} ({output.severity})",
            )
        drifted = output.drifted_features
        features = ", ".join(drifted) or "-"
        if len(features) > COLUMNS[3][1]:  # the summary on stderr lists them all
            features = f"{drifted[0]} +{len(drifted) - 1}"
        return self._cells(
            f"{row}{where}",
            when,
            "retrain requested",
            f"{output.model}/{output.version}",
            features,
            output.reason,
            number(output.feature_share),
            "-",
            f"{window}: {output.detail}" if output.detail else window,
        )

    def _cells(self, row: str, when: str | None, *rest: str) -> str:
        widths = [width for _, width in COLUMNS]
        cells = [row.rjust(widths[0])]
        if when is not None:
            cells.append(when.ljust(24))
        for value, width in zip(rest, [*widths[1:], 0], strict=True):
            cells.append(value.ljust(width) if width else value)
        return "  ".join(cells).rstrip()

    def _write(self, line: str) -> None:
        self._stream.write(line.encode() + b"\n")

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        """The stream is the caller's."""


_HEADER = (*(name for name, _ in COLUMNS[1:]), "WINDOW")


class Progress:
    """A progress line on a terminal, rewritten in place at most every ``interval_s``:
    rows read of the total, rows/s and the time left."""

    def __init__(
        self,
        total: int,
        stream: IO[str],
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total, self._stream, self._interval_s, self._clock = total, stream, interval_s, clock
        self._started = clock()
        self._shown = self._started
        self._written = False

    def update(self, rows: int) -> None:
        now = self._clock()
        if now - self._shown < self._interval_s:
            return
        self._shown = now
        self._stream.write("\r\x1b[K" + self.text(rows, now - self._started))
        self._stream.flush()
        self._written = True

    def text(self, rows: int, elapsed_s: float) -> str:
        rate = rows / elapsed_s if elapsed_s > 0 else 0.0
        share = rows / self.total if self.total else 1.0
        left = f", {_duration((self.total - rows) / rate)} left" if rate > 0 else ""
        return f"monitord: {rows:,} of {self.total:,} rows ({share:.0%}), {rate:,.0f} rows/s{left}"

    def done(self) -> None:
        """Clear the line, so the summary starts on a clean one."""
        if self._written:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}" if hours else f"{minutes}:{seconds:02}"


__all__ = ["COLUMNS", "Progress", "TableWriter", "number", "window_rows"]
