"""What the Python API returns: test results per column, the distributions behind them, and
the alerts and retrain requests the daemon's policy made of them.

Every result is a frozen dataclass with ``to_dict()`` (plain JSON types: NaN and infinities
become None), ``to_json()`` and, with pandas installed, ``to_frame()``: one row per window,
column and test, with the drifted ones easy to filter. A report renders from these alone:
each test's statistic, threshold and verdict, the window's rows and times, the reference
and current distributions (histogram or category counts) and the data-quality rates, which
are the ``missing``, ``out_of_range`` and ``unseen`` tests' statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from monitord.alerts import Alert
from monitord.clock import iso
from monitord.monitor import Evaluation
from monitord.outputs import summary
from monitord.policy import Output
from monitord.retrain import RetrainTrigger

QUALITY_TESTS = ("missing", "out_of_range", "unseen")
"""The tests whose statistic is a data-quality rate (a share of the window's rows)."""

FRAME_COLUMNS = (
    "model",
    "version",
    "first_row",
    "last_row",
    "start_time",
    "end_time",
    "regime",
    "column",
    "test",
    "statistic",
    "threshold",
    "drifted",
    "p_value",
    "n_observed",
)


@dataclass(frozen=True)
class TestResult:
    """One test of one column in one window: it drifted when ``statistic > threshold``.

    ``threshold`` is None for ADWIN, which decides by its own bound (a cut is a drift);
    ``statistic`` is NaN when the window held no value of the column.
    """

    __test__ = False  # not a pytest test class, whatever its name says

    column: str
    test: str
    statistic: float
    threshold: float | None
    drifted: bool
    p_value: float | None
    n_observed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "test": self.test,
            "statistic": _number(self.statistic),
            "threshold": _number(self.threshold),
            "drifted": self.drifted,
            "p_value": _number(self.p_value),
            "n_observed": self.n_observed,
        }


@dataclass(frozen=True)
class Distribution:
    """A column's values in the reference and in the window, for plotting side by side.

    Numeric (``kind == "histogram"``): ``bins`` holds ``len(reference) + 1`` equal-width
    edges spanning both, bin ``i`` holding values in ``[bins[i], bins[i + 1])`` (the last
    bin closed); the reference counts are of the profile's row sample. Categorical
    (``"categories"``): ``bins`` names the reference's categories, most frequent first, and
    ``"(unseen)"`` last; the reference counts are of the whole reference. Missing values are
    counted apart, in ``*_missing``.
    """

    column: str
    kind: Literal["histogram", "categories"]
    bins: tuple[float, ...] | tuple[str, ...]
    reference: tuple[int, ...]
    current: tuple[int, ...]
    reference_missing: int
    current_missing: int

    @property
    def reference_shares(self) -> tuple[float, ...]:
        """Reference counts as shares of the reference's present values."""
        return _shares(self.reference)

    @property
    def current_shares(self) -> tuple[float, ...]:
        """Window counts as shares of the window's present values."""
        return _shares(self.current)

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind,
            "bins": list(self.bins),
            "reference": list(self.reference),
            "current": list(self.current),
            "reference_missing": self.reference_missing,
            "current_missing": self.current_missing,
        }


@dataclass(frozen=True)
class WindowResult:
    """Every test of one window against the reference, and the window's distributions.

    ``first_row`` and ``last_row`` are positions in the data as given (the first row of the
    first batch is 0), rows the daemon would have dead-lettered included; ``n_rows`` counts
    the rows the tests saw. Times are seconds since the epoch of the window's first and last
    event, None when the data carried no event time. ``regime`` is 0 for a test against the
    reference, k for the k-th recent regime of change detection (see ARCHITECTURE.md).
    ``distributions`` are against the reference, so a regime's window and an ADWIN cut
    (its window reaches back past the latest windows) have none.
    """

    model: str
    version: str
    profile_id: str
    first_row: int
    last_row: int
    n_rows: int
    start_time: float | None
    end_time: float | None
    tests: tuple[TestResult, ...]
    distributions: tuple[Distribution, ...] = ()
    regime: int = 0

    @property
    def drifted(self) -> tuple[str, ...]:
        """Columns with at least one drifted test, in test order."""
        return tuple(dict.fromkeys(t.column for t in self.tests if t.drifted))

    @property
    def any_drift(self) -> bool:
        return any(t.drifted for t in self.tests)

    def quality(self) -> dict[str, dict[str, float]]:
        """Data-quality rates per column: ``{"amount": {"missing": 0.02, ...}}``."""
        rates: dict[str, dict[str, float]] = {}
        for t in self.tests:
            if t.test in QUALITY_TESTS:
                rates.setdefault(t.column, {})[t.test] = t.statistic
        return rates

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "profile_id": self.profile_id,
            "first_row": self.first_row,
            "last_row": self.last_row,
            "n_rows": self.n_rows,
            "start_time": _time(self.start_time),
            "end_time": _time(self.end_time),
            "regime": self.regime,
            "drifted": list(self.drifted),
            "tests": [t.to_dict() for t in self.tests],
            "distributions": [d.to_dict() for d in self.distributions],
        }

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    def to_html(self) -> str:
        """The drift report as one self-contained HTML document (`monitord.report`)."""
        from monitord.report import to_html  # noqa: PLC0415 (report imports this module)

        return to_html(self)

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per (column, test) (`FRAME_COLUMNS`)."""
        return _frame(_rows(self))


@dataclass(frozen=True)
class BadRow:
    """A row the daemon would dead-letter: its position in the data and why."""

    row: int
    reason: str
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class StreamResult:
    """What some rows of a stream came to: the windows they completed, the alerts and
    retrain requests the policy sent (as `monitord replay` prints them), and bad rows."""

    rows: int
    windows: tuple[WindowResult, ...]
    outputs: tuple[Output, ...]
    bad_rows: tuple[BadRow, ...] = ()

    @property
    def drifted(self) -> tuple[str, ...]:
        """Columns that drifted in any window."""
        return tuple(dict.fromkeys(c for w in self.windows for c in w.drifted))

    @property
    def alerts(self) -> tuple[Alert, ...]:
        """The alerts among the outputs (firing and resolved)."""
        return tuple(o for o in self.outputs if isinstance(o, Alert))

    @property
    def retrains(self) -> tuple[RetrainTrigger, ...]:
        """The retrain requests among the outputs."""
        return tuple(o for o in self.outputs if isinstance(o, RetrainTrigger))

    def __add__(self, other: StreamResult) -> StreamResult:
        """The result of both stretches of the stream, this one first."""
        return StreamResult(
            self.rows + other.rows,
            self.windows + other.windows,
            self.outputs + other.outputs,
            self.bad_rows + other.bad_rows,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "drifted": list(self.drifted),
            "windows": [w.to_dict() for w in self.windows],
            # The JSON lines of `monitord replay`, field for field.
            "outputs": [orjson.loads(orjson.dumps(summary(o))) for o in self.outputs],
            "bad_rows": [b.to_dict() for b in self.bad_rows],
        }

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    def to_html(self) -> str:
        """The drift report as one self-contained HTML document (`monitord.report`)."""
        from monitord.report import to_html  # noqa: PLC0415 (report imports this module)

        return to_html(self)

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per (window, column, test) (`FRAME_COLUMNS`)."""
        return _frame([row for window in self.windows for row in _rows(window)])


def window_results(
    evaluations: list[Evaluation],
    *,
    timed: bool,
    distributions: Callable[[int, int], tuple[Distribution, ...]] | None = None,
) -> list[WindowResult]:
    """One result per window of ``evaluations`` (every test that closed with it, in the
    daemon's order); ``distributions(first, last)``: the window's columns against the
    reference, when the caller holds its rows; ``timed``: the rows had event times."""
    by_window: dict[tuple[int, int, int], list[Evaluation]] = {}
    for e in evaluations:
        by_window.setdefault((e.regime, e.result.first_row, e.result.row), []).append(e)
    return [
        _window(regime, first, last, found, timed, distributions)
        for (regime, first, last), found in by_window.items()
    ]


def _window(
    regime: int,
    first: int,
    last: int,
    evaluations: list[Evaluation],
    timed: bool,
    distributions: Callable[[int, int], tuple[Distribution, ...]] | None,
) -> WindowResult:
    head = evaluations[0]
    tests = [
        TestResult(
            column=name,
            test=e.result.detector,
            statistic=float(e.result.statistic[j]),
            threshold=_optional(float(e.result.threshold[j])),
            drifted=bool(e.result.drifted[j]),
            p_value=None if e.result.p_value is None else _optional(e.result.p_value[j]),
            n_observed=int(e.result.n_observed[j]),
        )
        for e in evaluations
        for j, name in enumerate(e.features)
    ]
    windowed = any(e.result.detector != "adwin" for e in evaluations)
    return WindowResult(
        model=head.model,
        version=head.version,
        profile_id=head.profile_id,
        first_row=min((r.first_offset for r in head.offsets), default=head.last_record.offset),
        last_row=head.last_record.offset,
        n_rows=last - first + 1,
        start_time=head.start_time if timed else None,
        end_time=head.end_time if timed else None,
        tests=tuple(tests),
        distributions=distributions(first, last)
        if distributions is not None and regime == 0 and windowed
        else (),
        regime=regime,
    )


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _rows(window: WindowResult) -> list[tuple[Any, ...]]:
    head = (
        window.model,
        window.version,
        window.first_row,
        window.last_row,
        _time(window.start_time),
        _time(window.end_time),
        window.regime,
    )
    return [
        (
            *head,
            t.column,
            t.test,
            t.statistic,
            math.nan if t.threshold is None else t.threshold,
            t.drifted,
            math.nan if t.p_value is None else t.p_value,
            t.n_observed,
        )
        for t in window.tests
    ]


def _frame(rows: list[tuple[Any, ...]]) -> Any:
    try:
        import pandas as pd  # noqa: PLC0415 (optional dependency)
    except ImportError:
        raise ImportError(
            "to_frame() needs pandas; install it with `pip install 'monitord[notebook]'`, or "
            "use to_dict()"
        ) from None
    frame = pd.DataFrame(rows, columns=list(FRAME_COLUMNS))
    for name in ("start_time", "end_time"):
        frame[name] = pd.to_datetime(frame[name], utc=True)
    return frame


def _shares(counts: tuple[int, ...]) -> tuple[float, ...]:
    total = sum(counts)
    return tuple(c / total if total else math.nan for c in counts)


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _time(seconds: float | None) -> str | None:
    return None if seconds is None or math.isnan(seconds) else iso(seconds)


__all__ = [
    "FRAME_COLUMNS",
    "QUALITY_TESTS",
    "BadRow",
    "Distribution",
    "StreamResult",
    "TestResult",
    "WindowResult",
]
