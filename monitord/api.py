"""The Python API: monitord's calibrated drift tests on tables in a notebook.

Three steps, each the daemon's own code on in-memory data (a pandas DataFrame, a pyarrow
Table, a mapping of column names to arrays, or a 2-D numpy array with ``names=``):

- `build_reference` profiles reference data, as ``monitord reference build`` does a file
  (`save_profile` / `load_profile` write and read the same ``.npz`` files);
- `compare` tests one batch against the reference as one window: the daemon's tests with
  thresholds calibrated for a window of the batch's size from the same false-alarm budget;
- `DriftMonitor` feeds batches through the daemon's monitor and policy: the windows they
  complete, and the alerts and retrain requests ``monitord replay`` prints for the same rows.

Example (a shift of one standard deviation in ``x``; fixed seeds):

>>> import numpy as np
>>> import monitord
>>> rng = np.random.default_rng(7)
>>> train = {"x": rng.normal(size=2000), "city": rng.choice(["Oslo", "Rome"], 2000)}
>>> reference = monitord.build_reference(train, model="fraud", version="7")
>>> shifted = {"x": rng.normal(size=500) + 1.0, "city": rng.choice(["Oslo", "Rome"], 500)}
>>> result = monitord.compare(reference, shifted)
>>> result.drifted
('x',)
>>> [(t.test, t.drifted) for t in result.tests if t.column == "x"]
[('ks', True), ('psi', True), ('missing', False), ('out_of_range', True)]
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.detection import FloatArray, IntArray
from detectors.profile import ReferenceProfile, build_profile
from monitord.audit import record_held
from monitord.config import MIN_REFERENCE_ROWS, MIN_WINDOW_ROWS, Config, load_config, parse_config
from monitord.events import PREDICTION, Columns, EventGroup
from monitord.frames import (
    EventFeed,
    NamedColumns,
    TableError,
    as_numbers,
    as_objects,
    is_numeric,
    n_rows,
    named_columns,
)
from monitord.monitor import Evaluation, Monitor
from monitord.policy import Policy
from monitord.reference import (
    RESERVED,
    labelled_pairs,
    load_profile,
    save_profile,
    supported,
)
from monitord.results import (
    BadRow,
    Distribution,
    StreamResult,
    WindowResult,
    window_results,
)

ConfigLike = Config | Mapping[str, Any] | str | os.PathLike[str] | None
"""A `Config`, a mapping shaped like config.toml (``{"detection": {"window_size": 1000}}``),
the path of a config.toml, or None for the defaults."""

HISTOGRAM_BINS = 20
"""Equal-width bins of a numeric column's `Distribution`."""


def build_reference(
    data: object,
    *,
    model: str = "model",
    version: str = "1",
    names: Sequence[str] | None = None,
    prediction: str | None = "prediction",
    label: str | None = None,
    n_bins: int = 10,
    max_rows: int = 5000,
) -> ReferenceProfile:
    """The reference profile of ``data``, equal (same ``profile_id``) to the one
    ``monitord reference build`` writes for the same rows in a file.

    Columns whose present values are all numbers are numeric, the others categorical; the
    ``prediction`` column is monitored as ``@prediction``; ``model``, ``model_version``,
    ``event_id``, ``timestamp`` and ``label`` columns are not monitored. With ``label``, the
    profile also holds the reference performance: the (prediction, label) pairs of the rows
    that have both. ``n_bins`` and ``max_rows`` are ``--bins`` and ``--max-rows``.
    """
    columns = named_columns(data, names)
    numeric_names: list[str] = []
    numeric: list[FloatArray] = []
    categorical_names: list[str] = []
    categorical: list[npt.NDArray[np.object_]] = []
    for name, values in columns.items():
        if name in RESERVED or name == label:
            continue
        monitored = PREDICTION if name == prediction else name
        if is_numeric(values):
            numeric_names.append(monitored)
            numeric.append(as_numbers(values))
        else:
            categorical_names.append(monitored)
            categorical.append(as_objects(values))
    rows = n_rows(columns)
    profile = build_profile(
        model,
        version,
        numeric_names,
        np.column_stack(numeric) if numeric else np.empty((rows, 0)),
        categorical_names,
        np.column_stack(categorical) if categorical else np.empty((rows, 0), dtype=object),
        n_bins=n_bins,
        max_rows=max_rows,
        performance_pairs=[] if label is None else _pairs(columns, prediction, label),
    )
    return supported(profile, "reference")


def _pairs(columns: NamedColumns, prediction: str | None, label: str) -> list[tuple[Any, Any]]:
    for name, argument in ((label, "label"), (prediction, "prediction")):
        if name is None or name not in columns:
            raise TableError(
                f"{argument}: no column {name!r}; a reference performance needs each row's "
                "prediction and label"
            )
    assert prediction is not None
    pairs = zip(columns[prediction].tolist(), columns[label].tolist(), strict=True)
    kept = labelled_pairs(pairs)
    if len(kept) < MIN_REFERENCE_ROWS:
        raise TableError(
            f"label: {len(kept)} rows have a prediction and a label; a reference performance "
            f"needs at least {MIN_REFERENCE_ROWS}"
        )
    return kept


def compare(
    reference: ReferenceProfile,
    current: object,
    *,
    config: ConfigLike = None,
    names: Sequence[str] | None = None,
    prediction: str | None = "prediction",
) -> WindowResult:
    """Test ``current`` against ``reference`` as one window of all its rows.

    The tests, their settings and the false-alarm budget are the daemon's for the
    reference's model (``[detection]`` of ``config``); the thresholds are calibrated for a
    tumbling window of the batch's size, so a batch of ``n`` rows spends ``n`` events'
    share of the budget. ADWIN, a change detector within a stream, and change detection
    are left to `DriftMonitor`. Rows the daemon would dead-letter (a text in a numeric
    column, say) are left out of the window.
    """
    settings = _config(config)
    columns = named_columns(current, names)
    feed = EventFeed(reference, settings, prediction, "current")
    good = n_rows(columns) - len(feed.wrong_rows(columns))
    if good < MIN_WINDOW_ROWS:
        raise ValueError(
            f"current: {good} usable rows; monitord's thresholds are validated for windows "
            f"of at least {MIN_WINDOW_ROWS} rows"
        )
    model_detection = settings.detection_for(reference.model)
    detection = model_detection.model_copy(
        update={
            "window_size": good,
            "window_step": None,
            "window_seconds": None,
            "detectors": tuple(d for d in model_detection.detectors if d != "adwin"),
            "change_detection": False,
        }
    )
    if not detection.detectors:
        configured = list(model_detection.detectors)
        raise ValueError(
            f"config: detection.detectors of {reference.model!r} is {configured}; compare "
            "needs a window test (ks, psi, chi2 or quality)"
        )
    one_window = settings.model_copy(update={"detection": detection, "models": ()})
    result = DriftMonitor(reference, one_window, prediction=prediction, source="current")
    (window,) = result.update(columns).windows
    return window


class DriftMonitor:
    """The daemon's monitor and policy for one model version, fed with tables.

    `update` folds a batch into the windows (``[detection]`` of ``config``) and returns
    the windows it completed and the alerts and retrain requests decided on them, as
    `monitord replay` would for the same rows; row positions count from the first row of
    the first batch, across batches. Event times come from the ``timestamp`` column when
    there is one (ISO-8601 text, epoch numbers or datetimes). Performance (labels) and
    latency are not monitored here.

    >>> import numpy as np
    >>> from monitord import DriftMonitor, build_reference
    >>> rng = np.random.default_rng(1)
    >>> reference = build_reference({"x": rng.normal(size=1000)}, model="m", version="1")
    >>> monitor = DriftMonitor(reference, {"detection": {"window_size": 200}})
    >>> quiet = monitor.update({"x": rng.normal(size=500)})
    >>> [(w.first_row, w.last_row, w.any_drift) for w in quiet.windows]
    [(0, 199, False), (200, 399, False)]
    >>> moved = monitor.update({"x": rng.normal(size=300) + 2.0})
    >>> [(w.first_row, w.last_row, w.drifted) for w in moved.windows]
    [(400, 599, ('x',)), (600, 799, ('x',))]
    >>> [(a.status, a.feature or "(model)", a.detector, a.row) for a in moved.alerts]
    [('firing', 'x', 'ks', 599), ('firing', 'x', 'psi', 599), ('firing', '(model)', 'any', 599)]
    >>> [(r.reason, r.drifted_features, r.row) for r in moved.retrains]
    [('drift', ('x',), 799)]
    """

    def __init__(
        self,
        reference: ReferenceProfile,
        config: ConfigLike = None,
        *,
        prediction: str | None = "prediction",
        source: str = "data",
    ) -> None:
        """``source`` names the data in the outputs' offsets, as the file's name does in
        `monitord replay`'s; ``prediction`` is the column monitored as ``@prediction``."""
        self.reference = supported(reference, "reference")
        self.config = _config(config)
        self._key = (reference.model, reference.model_version)
        self._monitor = Monitor(self.config, self._profile_for)
        self._policy = Policy.from_config(self.config)
        self._feed = EventFeed(reference, self.config, prediction, source)
        detection = self.config.detection_for(reference.model)
        self._recent = _RecentRows(reference, detection.window_size + detection.step)
        self._rows = 0  # rows fed so far: the next row's position (its offset)
        self._timed = False  # some batch had event times

    def _profile_for(self, model: str, version: str) -> ReferenceProfile | None:
        return self.reference if (model, version) == self._key else None

    def update(self, batch: object, names: Sequence[str] | None = None) -> StreamResult:
        """Fold ``batch`` into the monitor: the windows it completed and what they decided."""
        columns = named_columns(batch, names)
        rows = n_rows(columns)
        if not rows:
            return StreamResult(0, (), ())
        self._timed = self._timed or self._feed.timestamp in columns
        evaluations: list[Evaluation] = []
        bad: list[BadRow] = []
        offset = self._rows
        known = self._monitor.columns_for(*self._key)
        if known is None:
            # The version's columns are the monitor's once it has seen a row: the first row
            # goes alone, decoded from its features as any first event is; the rest then
            # comes column by column in those columns (`EventGroup`).
            self._fold(self._feed.first_row(columns, offset), evaluations, bad)
            columns = {name: values[1:] for name, values in columns.items()}
            offset += 1
            known = self._monitor.columns_for(*self._key)
            assert known is not None  # a version with a reference knows its columns
        if n_rows(columns):
            self._fold(self._feed.group(columns, offset, known), evaluations, bad)
        self._rows += rows
        decided = self._policy.decide(evaluations)
        record_held(decided.held, None)  # logged: the Python API keeps no audit log
        outputs = decided.outputs
        windows = self._windows(evaluations)
        self._recent.trim()
        return StreamResult(rows, tuple(windows), tuple(outputs), tuple(bad))

    def _fold(self, group: EventGroup, evaluations: list[Evaluation], bad: list[BadRow]) -> None:
        update = self._monitor.update(group)
        evaluations += update.evaluations
        bad += [BadRow(b.record.offset, b.reason, b.detail) for b in update.bad]
        known = self._monitor.columns_for(*self._key)
        assert known is not None
        self._recent.extend(known, group)

    def run(self, batches: Iterable[object]) -> StreamResult:
        """`update` with each batch in turn; the results added up."""
        total = StreamResult(0, (), ())
        for batch in batches:
            total += self.update(batch)
        return total

    def _windows(self, evaluations: list[Evaluation]) -> list[WindowResult]:
        """One result per window: every test that closed with it, in the daemon's order."""
        return window_results(
            evaluations, timed=self._timed, distributions=self._recent.distributions
        )


def _optional(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _config(config: ConfigLike) -> Config:
    if config is None:
        return Config()
    if isinstance(config, Config):
        return config
    if isinstance(config, Mapping):
        # The mapping is the whole configuration: no MONITORD_* variable changes it.
        return parse_config(config, environ={})
    return load_config(Path(config))


class _RecentRows:
    """The rows of the latest windows as the tests saw them (numeric values and category
    codes), kept to draw each window's distributions: at most ``keep`` rows past a batch."""

    def __init__(self, profile: ReferenceProfile, keep: int) -> None:
        self._profile, self._keep = profile, keep
        self.first_row = 0  # stream row of the first kept row
        self._numeric = np.empty((0, len(profile.numeric_names)))
        self._codes = np.empty((0, len(profile.categorical_names)), dtype=np.int64)

    def extend(self, columns: Columns, group: EventGroup) -> None:
        numeric, categorical, wrong = columns.arrays(group)
        if wrong:  # the monitor left these rows out
            keep = np.ones(len(group), dtype=bool)
            keep[list(wrong)] = False
            numeric, categorical = numeric[keep], categorical[keep]
        self._numeric = np.concatenate([self._numeric, numeric])
        self._codes = np.concatenate([self._codes, self._profile.encode_categories(categorical)])

    def trim(self) -> None:
        drop = max(0, self._numeric.shape[0] - self._keep)
        self.first_row += drop
        self._numeric, self._codes = self._numeric[drop:], self._codes[drop:]

    def distributions(self, first: int, last: int) -> tuple[Distribution, ...]:
        lo, hi = first - self.first_row, last - self.first_row + 1
        if lo < 0:
            return ()  # reaches back past the kept rows (not a window test's window)
        profile = self._profile
        numeric = [
            _histogram(name, profile.numeric_rows[:, j], self._numeric[lo:hi, j])
            for j, name in enumerate(profile.numeric_names)
        ]
        categorical = [
            _categories(profile, j, self._codes[lo:hi, j])
            for j in range(len(profile.categorical_names))
        ]
        return tuple(numeric + categorical)


def _histogram(name: str, reference: FloatArray, current: FloatArray) -> Distribution:
    ref, cur = reference[np.isfinite(reference)], current[np.isfinite(current)]
    both = np.concatenate([ref, cur])
    low, high = float(both.min()), float(both.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    return Distribution(
        column=name,
        kind="histogram",
        bins=tuple(edges.tolist()),
        reference=tuple(np.histogram(ref, edges)[0].tolist()),
        current=tuple(np.histogram(cur, edges)[0].tolist()),
        reference_missing=int(reference.shape[0] - ref.shape[0]),
        current_missing=int(current.shape[0] - cur.shape[0]),
    )


def _categories(profile: ReferenceProfile, j: int, codes: IntArray) -> Distribution:
    known = len(profile.categories[j])
    present = codes[codes >= 0]
    missing_rate = float(profile.categorical_missing_rate[j])
    return Distribution(
        column=profile.categorical_names[j],
        kind="categories",
        bins=(*profile.categories[j], "(unseen)"),
        reference=(*profile.category_counts[j].tolist(), 0),
        current=tuple(np.bincount(present, minlength=known + 1).tolist()),
        reference_missing=round(missing_rate * profile.n_rows),
        current_missing=int(codes.shape[0] - present.shape[0]),
    )


__all__ = [
    "HISTOGRAM_BINS",
    "ConfigLike",
    "DriftMonitor",
    "build_reference",
    "compare",
    "load_profile",
    "save_profile",
]
