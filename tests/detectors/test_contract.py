"""One contract, every detector (STYLE 15).

Each case is a fresh detector: every window test wrapped in a `WindowedDetector` over a
tumbling and a sliding `CountWindow` and a tumbling and a sliding `EventTimeWindow`, and
`ADWIN`. Each is fed the same fixed stream in uneven batches, with missing values, a drift
halfway and rows slightly out of event-time order, and must:

- resume from a snapshot (through ``numpy.savez``, no pickle) in a fresh detector exactly
  as if it had never stopped, at every cut point; the snapshot is a copy of the state;
- leave its input arrays untouched, and keep returned detections unchanged afterwards;
- behave after `reset()` like a fresh detector;
- reject wrong shapes, dtypes and empty batches with `DetectorInputError`, keeping its state;
- count NaN and +/-inf (numeric) or negative codes (categorical) as missing.
"""

from __future__ import annotations

import copy
import dataclasses
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from detectors.adwin import ADWIN
from detectors.block_means import BlockMeanADWIN
from detectors.chi2 import Chi2Test
from detectors.detection import Detection, DetectorInputError, FloatArray, State
from detectors.ks import KSTest
from detectors.profile import ReferenceProfile, build_profile
from detectors.psi import CategoricalPSITest, PSITest
from detectors.quality import (
    CategoricalMissingRateTest,
    MissingRateTest,
    OutOfRangeTest,
    UnseenRateTest,
)
from detectors.window import CountWindow, EventTimeWindow, HybridWindow, Window
from detectors.window_detector import WindowedDetector, WindowTest

N_ROWS = 700
N_NUMERIC = 3
N_CATEGORICAL = 3
VOCABULARY = np.array(["a", "b", "c", "d"], dtype=object)
BATCH_SIZES = (1, 37, 64, 5, 120, 2, 99, 48, 150, 7, 100, 67)  # sums to N_ROWS
CUTS = (1, 3, 5, 8, 10)  # snapshot after this many batches


def _profile() -> ReferenceProfile:
    rng = np.random.default_rng(1)
    numeric = rng.normal(size=(1500, N_NUMERIC))
    numeric[::50, 2] = np.nan
    categorical = rng.choice(VOCABULARY, size=(1500, N_CATEGORICAL), p=[0.5, 0.3, 0.15, 0.05])
    categorical[::40, 1] = None
    return build_profile(
        "model",
        "1",
        [f"x{j}" for j in range(N_NUMERIC)],
        numeric,
        [f"c{j}" for j in range(N_CATEGORICAL)],
        categorical,
    )


PROFILE = _profile()


def _numeric_stream() -> FloatArray:
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(N_ROWS, N_NUMERIC))
    rows[N_ROWS // 2 :, 0] += 1.5  # drift halfway
    rows[N_ROWS // 2 :, 1] *= 3.0
    rows[rng.random((N_ROWS, N_NUMERIC)) < 0.05] = np.nan
    rows[rng.random((N_ROWS, N_NUMERIC)) < 0.02] = np.inf
    rows[rng.random((N_ROWS, N_NUMERIC)) < 0.02] = -np.inf
    rows[200:330, 2] = np.nan  # a stretch with nothing observed for one feature
    return rows


def _code_stream() -> npt.NDArray[np.int64]:
    rng = np.random.default_rng(3)
    before = rng.choice(5, size=(N_ROWS // 2, N_CATEGORICAL), p=[0.5, 0.3, 0.15, 0.04, 0.01])
    after = rng.choice(5, size=(N_ROWS // 2, N_CATEGORICAL), p=[0.2, 0.2, 0.2, 0.2, 0.2])
    codes = np.concatenate([before, after]).astype(np.int64)  # code 4 is unseen
    codes[rng.random((N_ROWS, N_CATEGORICAL)) < 0.05] = -1
    codes[200:330, 2] = -1
    return codes


NUMERIC_STREAM = _numeric_stream()
CODE_STREAM = _code_stream()
# 10 rows per second, each row up to 0.25 s late: some arrive out of order.
EVENT_TIMES = np.arange(N_ROWS) * 0.1 + np.random.default_rng(4).uniform(0.0, 0.25, N_ROWS)


def _numeric_tests() -> dict[str, Callable[[], WindowTest]]:
    p = PROFILE
    return {
        "ks": lambda: KSTest(p.sorted_sample, np.full(N_NUMERIC, 0.2)),
        "ks_pvalues": lambda: KSTest(p.sorted_sample, np.full(N_NUMERIC, 0.2), p_values=True),
        "psi": lambda: PSITest(p.bin_edges, p.bin_fractions, np.full(N_NUMERIC, 0.2)),
        "missing": lambda: MissingRateTest(np.full(N_NUMERIC, 0.1)),
        "out_of_range": lambda: OutOfRangeTest(
            p.numeric_min, p.numeric_max, np.full(N_NUMERIC, 0.01)
        ),
    }


def _categorical_tests() -> dict[str, Callable[[], WindowTest]]:
    p = PROFILE
    return {
        "psi_categorical": lambda: CategoricalPSITest(p.category_counts, np.full(3, 0.2)),
        "chi2": lambda: Chi2Test(p.category_counts, np.full(N_CATEGORICAL, 15.0)),
        "missing_categorical": lambda: CategoricalMissingRateTest(np.full(N_CATEGORICAL, 0.1)),
        "unseen": lambda: UnseenRateTest(p.n_categories, np.full(N_CATEGORICAL, 0.05)),
    }


WINDOWS: dict[str, Callable[[int, type], Window]] = {
    "count_tumbling": lambda n, dtype: CountWindow(n, 100, dtype=dtype),
    "count_sliding": lambda n, dtype: CountWindow(n, 100, 30, dtype=dtype),
    "event_tumbling": lambda n, dtype: EventTimeWindow(n, 10.0, dtype=dtype),
    "event_sliding": lambda n, dtype: EventTimeWindow(n, 10.0, 4.0, dtype=dtype),
    # 100 rows or 7 s of event time (about 70 rows), whichever first, with 20 rows at least.
    "hybrid": lambda n, dtype: HybridWindow(n, 100, 7.0, 20, dtype=dtype),
}

Detector = WindowedDetector | ADWIN | BlockMeanADWIN


@dataclass(frozen=True)
class Case:
    make: Callable[[], Detector]
    stream: npt.NDArray[np.generic]

    @property
    def numeric(self) -> bool:
        return self.stream.dtype == np.float64


def _windowed(
    tests: Sequence[Callable[[], WindowTest]],
    window: Callable[[int, type], Window],
    n: int,
    dtype: type,
) -> Callable[[], Detector]:
    def make() -> Detector:
        return WindowedDetector([test() for test in tests], window(n, dtype))

    return make


def _cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    groups = (
        (_numeric_tests(), N_NUMERIC, np.float64, NUMERIC_STREAM),
        (_categorical_tests(), N_CATEGORICAL, np.int64, CODE_STREAM),
    )
    for tests, n, dtype, stream in groups:
        for window_name, window in WINDOWS.items():
            for test_name, test in tests.items():
                cases[f"{test_name}-{window_name}"] = Case(
                    _windowed([test], window, n, dtype), stream
                )
            # All tests of a kind sharing one window, as the daemon runs them.
            cases[f"all-{window_name}"] = Case(
                _windowed(list(tests.values()), window, n, dtype), stream
            )
    cases["adwin"] = Case(lambda: ADWIN(N_NUMERIC), NUMERIC_STREAM)
    cases["adwin_block_means"] = Case(lambda: BlockMeanADWIN(N_NUMERIC, block=7), NUMERIC_STREAM)
    return cases


CASES = _cases()


@pytest.fixture(params=sorted(CASES), ids=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[str(request.param)]


def _batches(stream: npt.NDArray[np.generic]) -> list[tuple[npt.NDArray[np.generic], FloatArray]]:
    assert sum(BATCH_SIZES) == stream.shape[0]
    ends = np.cumsum(BATCH_SIZES)
    return [
        (stream[end - size : end], EVENT_TIMES[end - size : end])
        for size, end in zip(BATCH_SIZES, ends, strict=True)
    ]


def _feed(detector: Detector, batch: npt.NDArray[np.generic], times: FloatArray) -> list[Detection]:
    if isinstance(detector, WindowedDetector):
        return detector.update(batch, times)
    return detector.update(batch)


def _run(
    detector: Detector, batches: Sequence[tuple[npt.NDArray[np.generic], FloatArray]]
) -> list[Detection]:
    return [d for batch, times in batches for d in _feed(detector, batch, times)]


def _assert_same(actual: Sequence[Detection], expected: Sequence[Detection]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        for field in dataclasses.fields(Detection):
            got, want = getattr(a, field.name), getattr(e, field.name)
            if isinstance(want, np.ndarray):
                assert isinstance(got, np.ndarray), field.name
                assert got.dtype == want.dtype, field.name
                np.testing.assert_array_equal(got, want, err_msg=field.name)  # NaN == NaN
            else:
                assert got == want, field.name


def _through_npz(state: State) -> State:
    buffer = io.BytesIO()
    arrays: dict[str, Any] = dict(state)  # numpy's stub would match a key to allow_pickle
    np.savez(buffer, **arrays)
    with np.load(io.BytesIO(buffer.getvalue()), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def test_the_stream_exercises_every_detector(case: Case) -> None:
    detections = _run(case.make(), _batches(case.stream))
    assert detections, "no evaluation at all: the contract checks below would be vacuous"
    assert any(d.any_drift for d in detections)


def test_snapshot_restore_equals_an_uninterrupted_run(case: Case) -> None:
    batches = _batches(case.stream)
    whole = _run(case.make(), batches)
    for cut in CUTS:
        running = case.make()
        head = _run(running, batches[:cut])
        state = running.snapshot()
        assert isinstance(state, dict)
        for name, array in state.items():
            assert isinstance(name, str)
            assert isinstance(array, np.ndarray), name
            assert array.dtype != object, name
        saved = _through_npz(state)
        tail = _run(running, batches[cut:])  # the snapshot must not follow the live state
        _assert_same(head + tail, whole)
        for restored_state in (state, saved):
            resumed = case.make()
            resumed.restore(restored_state)
            assert resumed.rows_seen == running.rows_seen - sum(BATCH_SIZES[cut:])
            _assert_same(head + _run(resumed, batches[cut:]), whole)


def test_input_is_not_mutated_and_results_stay_put(case: Case) -> None:
    batches = _batches(case.stream)
    originals = [(batch.copy(), times.copy()) for batch, times in batches]
    detector = case.make()
    returned: list[Detection] = []
    kept: list[Detection] = []
    for batch, times in batches:
        fresh = _feed(detector, batch, times)
        returned += fresh
        kept += copy.deepcopy(fresh)  # what the caller saw at the time
    for (batch, times), (batch0, times0) in zip(batches, originals, strict=True):
        np.testing.assert_array_equal(batch, batch0)
        np.testing.assert_array_equal(times, times0)
    _assert_same(returned, kept)  # later updates did not write into earlier results


def test_reset_behaves_like_a_fresh_detector(case: Case) -> None:
    batches = _batches(case.stream)
    detector = case.make()
    _run(detector, batches[:6])
    detector.reset()
    assert detector.rows_seen == 0
    _assert_same(_run(detector, batches), _run(case.make(), batches))
    assert detector.rows_seen == N_ROWS


def _bad_batches(case: Case) -> list[object]:
    n = case.stream.shape[1]
    good = case.stream[:10]
    wrong_dtype = good.astype(np.float32) if case.numeric else good.astype(np.float64)
    bad: list[object] = [
        good[:, : n - 1],  # too few features
        np.concatenate([good, good[:, :1]], axis=1),  # too many
        good[:, 0],  # 1-D
        good[None],  # 3-D
        good[:0],  # empty
        wrong_dtype,
        good.tolist(),  # not an array
    ]
    if case.numeric:
        bad.append(np.zeros((10, n), dtype=np.int64))  # codes where values are expected
    return bad


def test_bad_batches_are_rejected_without_touching_state(case: Case) -> None:
    batches = _batches(case.stream)
    whole = _run(case.make(), batches)
    detector = case.make()
    head = _run(detector, batches[:4])
    for bad in _bad_batches(case):
        with pytest.raises(DetectorInputError):
            _feed(detector, bad, EVENT_TIMES[:10])  # type: ignore[arg-type]
    _assert_same(head + _run(detector, batches[4:]), whole)


def test_missing_values_are_not_observed(case: Case) -> None:
    batches = _batches(case.stream)
    detections = _run(case.make(), batches)
    if case.numeric:
        # Any non-finite value is missing: inf behaves exactly like NaN.
        as_nan = np.where(np.isfinite(case.stream), case.stream, np.nan)
        _assert_same(_run(case.make(), _batches(as_nan)), detections)
        observed = np.isfinite(case.stream)
    else:
        observed = np.asarray(case.stream, dtype=np.int64) >= 0
    seen = np.cumsum(observed, axis=0)
    for d in detections:
        assert d.n_observed.shape == (case.stream.shape[1],)
        assert (d.n_observed <= seen[d.row]).all()
    if isinstance(case.make(), WindowedDetector) and "count" in _window_kind(case):
        for d in detections:  # count windows hold exactly the rows first_row..row
            expected = observed[d.first_row : d.row + 1].sum(axis=0)
            np.testing.assert_array_equal(d.n_observed, expected)


def _window_kind(case: Case) -> str:
    detector = case.make()
    assert isinstance(detector, WindowedDetector)
    return "count" if isinstance(detector.window, CountWindow) else "event"


def test_detector_surface(case: Case) -> None:
    detector = case.make()
    assert detector.n_features == case.stream.shape[1]
    assert detector.rows_seen == 0
    assert isinstance(detector.name, str)
    assert detector.name
    detections = _run(detector, _batches(case.stream))
    assert detector.rows_seen == N_ROWS
    for d in detections:
        assert 0 <= d.first_row <= d.row < N_ROWS
        assert d.statistic.dtype == np.float64
        assert d.threshold.dtype == np.float64
        assert d.drifted.dtype == np.bool_
        assert d.n_observed.dtype == np.int64
        for array in (d.statistic, d.threshold, d.drifted, d.n_observed):
            assert array.shape == (detector.n_features,)
        if d.p_value is not None:
            assert d.p_value.shape == (detector.n_features,)
            finite = d.p_value[~np.isnan(d.p_value)]
            assert ((finite >= 0.0) & (finite <= 1.0)).all()
