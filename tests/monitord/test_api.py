"""The Python API: profiles equal `reference build`'s, stream results equal `replay`'s, the
statistics equal scipy's, and every table type gives the same answer."""

from __future__ import annotations

import csv
import doctest
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest
from scipy.stats import ks_2samp

from detectors.profile import ProfileError, ReferenceProfile
from monitord import DriftMonitor, build_reference, compare, load_profile, save_profile
from monitord.cli import main
from monitord.config import Config, parse_config
from monitord.frames import TableError
from monitord.outputs import summary
from monitord.replay import replay
from monitord.results import FRAME_COLUMNS, StreamResult
from monitord.suite import calibrate_suite

README = Path(__file__).parents[2] / "README.md"
WINDOWS_1000 = parse_config({"detection": {"window_size": 1000}})
START = 1_795_000_000.0  # 2026-11-18T11:06:40Z: timestamps of the stream files


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def _rows(rng: np.random.Generator, n: int, shift_at: int | None = None) -> list[list[object]]:
    """x, y, a city (Rome more often after the shift), a whole-number count and the
    prediction; a few empty cells (missing)."""
    values = rng.normal(size=(n, 3)).round(6)
    if shift_at is not None:
        values[shift_at:, 0] += 1.0
    names = ["Oslo", "Rome", "Lima"]
    cities = rng.choice(names, size=n, p=[0.5, 0.3, 0.2])
    if shift_at is not None:
        cities[shift_at:] = rng.choice(names, size=n - shift_at, p=[0.2, 0.6, 0.2])
    counts = rng.integers(0, 20, size=n)
    rows: list[list[object]] = [
        [x, y, city, int(count), prediction]
        for (x, y, prediction), city, count in zip(values.tolist(), cities, counts, strict=True)
    ]
    for i in rng.choice(n, size=n // 50, replace=False):
        rows[int(i)][int(rng.integers(0, 3))] = ""  # x, y or city missing
    return rows


HEADER = ["x", "y", "city", "count", "prediction"]


@pytest.fixture
def reference_csv(tmp_path: Path) -> Path:
    path = tmp_path / "reference.csv"
    _write_csv(path, HEADER, _rows(np.random.default_rng(11), 3000))
    return path


@pytest.fixture
def built(reference_csv: Path, tmp_path: Path) -> Path:
    """The profile `monitord reference build` writes for ``reference.csv``."""
    out = tmp_path / "m@1.npz"
    args = ["reference", "build", str(reference_csv), "--model", "m", "--version", "1"]
    assert main([*args, "--out", str(out)]) == 0
    return out


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def test_a_profile_of_a_table_is_the_profile_reference_build_writes(
    reference_csv: Path, built: Path
) -> None:
    expected = load_profile(built).profile_id
    frame = _read(reference_csv)
    # An empty cell is missing, as monitord reads a CSV (pyarrow's default: empty text).
    arrow = pa_csv.read_csv(
        reference_csv, convert_options=pa_csv.ConvertOptions(strings_can_be_null=True)
    )
    arrays = {name: frame[name].to_numpy() for name in frame.columns}
    for table in (frame, arrow, arrays):
        profile = build_reference(table, model="m", version="1")
        assert profile.profile_id == expected, type(table).__name__
    profile = build_reference(frame, model="m", version="1")
    assert profile.numeric_names == ("x", "y", "count", "@prediction")
    assert profile.categorical_names == ("city",)


def test_numpy_arrays_take_column_names() -> None:
    rng = np.random.default_rng(2)
    matrix = rng.normal(size=(500, 2))
    from_matrix = build_reference(matrix, names=["a", "prediction"])
    from_columns = build_reference({"a": matrix[:, 0], "prediction": matrix[:, 1]})
    assert from_matrix.profile_id == from_columns.profile_id
    assert from_matrix.numeric_names == ("a", "@prediction")


def test_a_saved_profile_loads_as_itself(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    profile = build_reference({"a": rng.normal(size=200), "b": rng.choice(["u", "v"], 200)})
    save_profile(profile, tmp_path / "p.npz")
    assert load_profile(tmp_path / "p.npz").profile_id == profile.profile_id


def test_compare_gives_scipy_ks_and_the_daemon_thresholds_for_a_window_of_the_batch() -> None:
    rng = np.random.default_rng(5)
    reference = build_reference({"x": rng.normal(size=2000), "prediction": rng.random(2000)})
    current_x = rng.normal(size=300) + 0.3
    current_x[:6] = np.nan  # 6 of 300 missing
    current_x[6] = 99.0  # one value beyond the reference's range
    result = compare(reference, {"x": current_x, "prediction": rng.random(300)})
    tests = {(t.column, t.test): t for t in result.tests}
    observed = current_x[~np.isnan(current_x)]
    sample = reference.numeric_rows[:, 0]  # the whole reference: under max_rows
    assert tests["x", "ks"].statistic == ks_2samp(sample, observed).statistic
    assert tests["x", "missing"].statistic == 6 / 300
    outside = (observed < sample.min()) | (observed > sample.max())
    assert outside.sum() >= 1  # the 99.0 at least
    assert tests["x", "out_of_range"].statistic == outside.sum() / 294
    assert tests["x", "ks"].n_observed == 294
    # The thresholds the daemon calibrates for a tumbling window of 300 rows, same budget.
    settings = parse_config(
        {"detection": {"window_size": 300, "detectors": ["ks", "psi", "chi2", "quality"]}}
    ).detection.model_copy(update={"window_seconds": None})
    calibration = calibrate_suite(reference, settings)
    assert calibration is not None
    assert calibration.thresholds.ks is not None
    assert tests["x", "ks"].threshold == calibration.thresholds.ks[0]
    assert tests["x", "ks"].drifted  # 0.168 > 0.147 for this seed
    assert "adwin" not in {t.test for t in result.tests}
    assert (result.first_row, result.last_row, result.n_rows) == (0, 299, 300)


def test_compare_runs_the_tests_configured_for_the_model() -> None:
    rng = np.random.default_rng(6)
    reference = build_reference({"x": rng.normal(size=500)}, model="m")
    config = {"models": [{"name": "m", "detection": {"detectors": ["ks", "adwin"]}}]}
    result = compare(reference, {"x": rng.normal(size=100)}, config=config)
    assert [t.test for t in result.tests] == ["ks"]
    only_adwin = {"detection": {"detectors": ["adwin"]}}
    with pytest.raises(ValueError, match=r"config: detection.detectors of 'm' is \['adwin'\]"):
        compare(reference, {"x": rng.normal(size=100)}, config=only_adwin)


def test_compare_refuses_a_batch_too_small_to_test() -> None:
    reference = build_reference({"x": np.arange(100.0)})
    with pytest.raises(ValueError, match=r"current: 10 usable rows.*at least 20"):
        compare(reference, {"x": np.arange(10.0)})


def _replayed(config: Config, data: Path, profile: Path) -> list[dict[str, object]]:
    out = io.BytesIO()
    replay(config, data, out, model="m", version="1", profile_path=profile)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _as_replay_prints(result: StreamResult) -> list[dict[str, object]]:
    return [json.loads(orjson.dumps(summary(output))) for output in result.outputs]


@pytest.fixture
def stream_csv(tmp_path: Path) -> Path:
    """6000 rows, 5 s apart, x and city shifting at row 3000."""
    rows = _rows(np.random.default_rng(12), 6000, shift_at=3000)
    stamps = [f"{START + 5 * i:.0f}" for i in range(len(rows))]
    path = tmp_path / "traffic.csv"
    _write_csv(path, ["timestamp", *HEADER], [[t, *r] for t, r in zip(stamps, rows, strict=True)])
    return path


@pytest.mark.parametrize("batch_rows", [6000, 777, 1])
def test_stream_outputs_equal_replays_of_the_same_file(
    built: Path, stream_csv: Path, batch_rows: int
) -> None:
    frame = _read(stream_csv)
    data = stream_csv
    if batch_rows == 1:  # row by row is slow: 1,600 rows around the shift, as a file
        frame = frame.iloc[2400:4000].reset_index(drop=True)
        data = stream_csv.with_name("around-the-shift.csv")
        frame.to_csv(data, index=False)
    expected = _replayed(WINDOWS_1000, data, built)
    kinds = {(o["kind"], o.get("feature"), o.get("detector")) for o in expected}
    assert ("alert", "x", "ks") in kinds  # the file drifts: equality is not of silence
    assert ("alert", "city", "chi2") in kinds
    monitor = DriftMonitor(load_profile(built), WINDOWS_1000, source=data.name)
    batches = [frame.iloc[i : i + batch_rows] for i in range(0, len(frame), batch_rows)]
    result = monitor.run(batches)
    assert _as_replay_prints(result) == expected
    assert result.rows == len(frame)
    # The windows too are the same however the rows are cut into batches.
    whole = DriftMonitor(load_profile(built), WINDOWS_1000, source=data.name).update(frame)
    assert result.to_dict() == whole.to_dict()


def test_windows_are_the_evidence_of_the_alerts(built: Path, stream_csv: Path) -> None:
    monitor = DriftMonitor(load_profile(built), WINDOWS_1000, source=stream_csv.name)
    result = monitor.update(_read(stream_csv))
    # 1,000 rows 5 s apart span 83 minutes: windows close by time (an hour) at 720 rows.
    assert [(w.first_row, w.last_row) for w in result.windows[:2]] == [(0, 719), (720, 1439)]
    assert result.windows[0].start_time == START
    assert result.windows[0].end_time == START + 5 * 719
    by_row = {w.last_row: w for w in result.windows if w.regime == 0}
    for alert in result.alerts:
        if alert.status == "firing" and alert.feature and alert.regime_profile_id is None:
            window = by_row[alert.row]
            (test,) = [
                t for t in window.tests if (t.column, t.test) == (alert.feature, alert.detector)
            ]
            assert (test.statistic, test.threshold, test.drifted) == (
                alert.statistic,
                alert.threshold,
                True,
            )


def test_every_table_type_gives_the_same_stream(built: Path, stream_csv: Path) -> None:
    profile = load_profile(built)
    frame = _read(stream_csv).iloc[:2500]
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    arrays = {name: frame[name].to_numpy() for name in frame.columns}
    results = [
        DriftMonitor(profile, WINDOWS_1000).update(table).to_dict()
        for table in (frame, arrow, arrays)
    ]
    assert results[0] == results[1] == results[2]
    assert len(results[0]["windows"]) == 3


def test_distributions_count_the_window_and_the_reference() -> None:
    rng = np.random.default_rng(8)
    reference = build_reference(
        {"x": rng.normal(size=400), "kind": np.array(["a"] * 300 + ["b"] * 100, dtype=object)}
    )
    kinds = np.array(["a"] * 10 + ["b"] * 25 + ["c"] * 3 + [None] * 2, dtype=object)
    x = rng.normal(size=40)
    x[0] = np.nan
    result = compare(reference, {"x": x, "kind": kinds})
    histogram, categories = result.distributions
    assert histogram.kind == "histogram"
    assert (sum(histogram.current), histogram.current_missing) == (39, 1)
    assert sum(histogram.reference) == 400
    assert histogram.bins[0] == min(reference.numeric_min[0], np.nanmin(x))
    assert categories.to_dict() == {
        "column": "kind",
        "kind": "categories",
        "bins": ["a", "b", "(unseen)"],
        "reference": [300, 100, 0],
        "current": [10, 25, 3],
        "reference_missing": 0,
        "current_missing": 2,
    }
    quality = result.quality()
    assert quality["kind"] == {"missing": 2 / 40, "unseen": 3 / 38}
    assert quality["x"]["missing"] == 1 / 40


def test_a_value_of_the_wrong_type_is_a_bad_row_left_out_of_the_window() -> None:
    rng = np.random.default_rng(9)
    reference = build_reference({"x": rng.normal(size=400)})
    x = rng.normal(size=41).astype(object)
    x[5] = "12.5"  # text in a numeric column: the daemon dead-letters the event
    monitor = DriftMonitor(reference, {"detection": {"window_size": 40}})
    result = monitor.update({"x": x})
    assert [(b.row, b.reason) for b in result.bad_rows] == [(5, "wrong_type")]
    assert "'x' holds a JSON string" in result.bad_rows[0].detail
    (window,) = result.windows
    assert (window.first_row, window.last_row, window.n_rows) == (0, 40, 40)


def test_results_convert_to_json_and_a_frame() -> None:
    rng = np.random.default_rng(10)
    reference = build_reference({"x": rng.normal(size=1000), "c": rng.choice(["u", "v"], 1000)})
    monitor = DriftMonitor(reference, {"detection": {"window_size": 100}})
    result = monitor.update({"x": rng.normal(size=300) + 3.0, "c": rng.choice(["u", "v"], 300)})
    frame = result.to_frame()
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert len(frame) == sum(len(w.tests) for w in result.windows)
    drifted = frame[frame.drifted]
    assert set(drifted.column) == {"x"} == set(result.drifted)
    assert drifted.groupby("first_row").size().to_dict() == {0: 3, 100: 3, 200: 3}
    data = json.loads(result.to_json())
    assert data == result.to_dict()
    assert data["drifted"] == ["x"]
    assert [o["kind"] for o in data["outputs"]][:1] == ["alert"]
    assert data["windows"][0]["start_time"] is None  # no event times in the data
    window = result.windows[0]
    assert json.loads(window.to_json()) == window.to_dict()
    assert list(window.to_frame().column.unique()) == ["x", "c"]


def test_bad_tables_are_named_in_the_error() -> None:
    with pytest.raises(TableError, match=r"names: a numpy array of 2 columns needs one name"):
        build_reference(np.zeros((100, 2)))
    with pytest.raises(TableError, match=r"columns differ in length"):
        build_reference({"a": np.zeros(100), "b": np.zeros(99)})
    with pytest.raises(TableError, match=r"data: expected a pandas DataFrame.*got list"):
        build_reference([[1.0, 2.0]])
    with pytest.raises(ProfileError, match=r"10 reference rows"):
        build_reference({"a": np.arange(10.0)})
    with pytest.raises(TableError, match=r"label: no column 'y'"):
        build_reference({"a": np.arange(100.0), "prediction": np.arange(100.0)}, label="y")


def test_a_reference_with_labels_holds_its_performance_pairs(
    reference_csv: Path, tmp_path: Path
) -> None:
    frame = _read(reference_csv)
    frame["label"] = (frame["prediction"] > 0).astype(float)
    path = tmp_path / "labelled.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "labelled.npz"
    args = ["reference", "build", str(path), "--model", "m", "--version", "1"]
    assert main([*args, "--label-column", "label", "--out", str(out)]) == 0
    built = load_profile(out)
    profile = build_reference(_read(path), model="m", version="1", label="label")
    assert len(profile.performance_pairs) == 3000 - int(frame.prediction.isna().sum())
    assert profile.profile_id == built.profile_id


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the example writes profiles/fraud-scorer@7.npz
    text = README.read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "README: no python example under '## Python API'"
    parser = doctest.DocTestParser()
    test = parser.get_doctest("\n".join(blocks), {}, "README", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    assert test.examples, "README: the example holds no >>> lines"
    assert load_profile(tmp_path / "profiles" / "fraud-scorer@7.npz").model == "fraud-scorer"


def test_profile_is_the_detectors_profile() -> None:
    profile = build_reference({"a": np.arange(100.0)})
    assert isinstance(profile, ReferenceProfile)
    assert math.isclose(profile.numeric_mean[0], 49.5)


def test_event_times_may_be_datetimes_text_or_epoch_numbers(built: Path, stream_csv: Path) -> None:
    profile = load_profile(built)
    frame = _read(stream_csv).iloc[:2000]
    seconds = frame.assign(timestamp=frame.timestamp.astype(float))
    datetimes = frame.assign(timestamp=pd.to_datetime(frame.timestamp, unit="s"))
    text = frame.assign(timestamp=datetimes.timestamp.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    arrow = pa.Table.from_pandas(datetimes, preserve_index=False)  # timestamp[ns] column
    results = [
        DriftMonitor(profile, WINDOWS_1000).update(table).to_dict()
        for table in (seconds, datetimes, text, arrow)
    ]
    assert results[0]["windows"][1]["start_time"] == "2026-11-18T12:06:40.000Z"  # row 720
    assert all(result == results[0] for result in results)
