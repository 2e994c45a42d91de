"""Replay of a CSV or Parquet file by column (`monitord.columnar`) writes exactly what the
row-by-row path writes (each row sent as its inference event's JSON and decoded again): the
same outputs, the same dead letters with the same event text, the same labels joined, on
values JSON has no word for (NaN, infinities), nulls, text in numeric columns, numbers
beyond the value rule, columns the profile lacks or has and the file does not."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import monitord.replay as replay_module
from monitord.columnar import eligible
from monitord.config import Config, parse_config
from monitord.reference import profile_from_rows, save_profile
from monitord.replay import replay
from monitord.tabular import open_data

pa = pytest.importorskip("pyarrow")  # the optional [parquet] extra; CI installs it
pq = pytest.importorskip("pyarrow.parquet")
pv = pytest.importorskip("pyarrow.csv")

SMALL = parse_config(
    {
        "detection": {"window_size": 200, "warmup_events": 300},
        "performance": {"window_size": 100, "warmup_labels": 150},
        "kafka": {"consumer": {"max_poll_records": 250}},  # polls straddle file batches
    }
)


def _hostile_table(n: int, seed: int) -> Any:
    """n rows: x drifts at n // 2; NaN, inf, nulls and a 1e200 in x; integers with nulls
    and beyond 2**53; booleans; text with nulls and 300-character values; text holding
    numbers in ``t``; a probability prediction, ids, labels and epoch-second times."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[n // 2 :] += 1.5
    x_list: list[float | None] = x.round(6).tolist()
    for i in range(0, n, 97):
        x_list[i] = math.nan
    for i in range(5, n, 211):
        x_list[i] = math.inf
    for i in range(7, n, 89):
        x_list[i] = None
    x_list[n - 3] = 1e200  # beyond the value rule: dead-lettered
    k = rng.integers(0, 9, size=n).tolist()
    k_list: list[int | None] = list(k)
    for i in range(3, n, 53):
        k_list[i] = None
    k_list[11] = 2**53 + 1
    city = [["Oslo", "Lima", "Pune"][i % 3] for i in range(n)]
    city_list: list[str | None] = list(city)
    for i in range(2, n, 41):
        city_list[i] = None
    city_list[13] = "y" * 300
    probability = rng.uniform(size=n)
    probability[n // 2 :] = np.clip(probability[n // 2 :] + 0.2, 0, 1)
    prediction: list[float | None] = probability.round(4).tolist()
    prediction[17] = math.nan
    labels = (rng.uniform(size=n) < 0.5).astype(int).tolist()
    return pa.table(
        {
            "x": pa.array(x_list, pa.float64()),
            "k": pa.array(k_list, pa.int64()),
            "flag": pa.array([i % 4 == 0 for i in range(n)]),
            "city": pa.array(city_list, pa.string()),
            "t": pa.array([None if i % 50 else f"{v:.2f}" for i, v in enumerate(x)]),
            "prediction": pa.array(prediction, pa.float64()),
            "event_id": pa.array(list(range(1000, 1000 + n)), pa.int64()),
            "label": pa.array(labels, pa.int64()),
            "timestamp": pa.array([1.7e9 + i for i in range(n)], pa.float64()),
        }
    )


def _replay(
    path: Path,
    tmp_path: Path,
    by_column: bool,
    monkeypatch: pytest.MonkeyPatch,
    config: Config = SMALL,
    **kwargs: object,
) -> tuple[bytes, bytes, dict[tuple[str, str], int], str, str]:
    """(outputs, dead letters, label outcomes, summary without its timing line, every
    window's statistics and thresholds as the report draws them)."""
    with monkeypatch.context() as patch:
        if not by_column:
            patch.setattr(replay_module, "eligible", lambda data, fields: False)
        out, summary = io.BytesIO(), io.StringIO()
        dead = tmp_path / f"dead-{by_column}.jsonl"
        report = tmp_path / f"report-{by_column}.html"
        daemon = replay(
            config,
            path,
            out,
            model="m",
            dead_letters_path=dead,
            summary=summary,
            report_path=report,
            batch_rows=97,  # batches, polls and windows all straddle one another
            **kwargs,  # type: ignore[arg-type]
        )
    lines = [line for line in summary.getvalue().splitlines() if " rows/s" not in line]
    tally = daemon.policy.tally  # type: ignore[attr-defined]  # replay's TallyingPolicy
    windows = repr(tally.results)
    return out.getvalue(), dead.read_bytes(), dict(daemon.joins.counts), "\n".join(lines), windows


def _write(table: Any, path: Path) -> Path:
    """``table`` as Parquet (row groups that batches straddle) or CSV, by ``path``'s suffix
    (CSV: NaN as ``nan``, infinity as ``inf``, null as an empty cell)."""
    if path.suffix == ".csv":
        pv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=700)
    return path


FORMATS = pytest.mark.parametrize("suffix", [".parquet", ".csv"])


@FORMATS
def test_by_column_replays_exactly_as_row_by_row_warming_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = _write(_hostile_table(3000, seed=1), tmp_path / f"traffic{suffix}")
    assert eligible(open_data(path, SMALL.events), SMALL.events)
    by_column = _replay(path, tmp_path, True, monkeypatch)
    by_row = _replay(path, tmp_path, False, monkeypatch)
    assert by_column == by_row
    outputs, dead, joins, _, _ = by_column
    assert b'"detector":"ks"' in outputs
    assert b'"feature":"x"' in outputs
    # 1e200 (t's text made it categorical in the warm-up), with the event's own text.
    assert dead.count(b"\n") == 1
    assert b'"x\\":1e+200' in dead
    assert joins  # the inline labels were joined


@FORMATS
def test_by_column_replays_exactly_as_row_by_row_against_a_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """The profile knows a column the file lacks (``gone``), not one it has (``extra``),
    and takes ``t`` for numbers where the file holds text: those rows are wrong_type."""
    rng = np.random.default_rng(5)
    reference = [
        {
            "x": float(v),
            "k": int(rng.integers(0, 9)),
            "flag": bool(i % 4 == 0),
            "city": ["Oslo", "Lima", "Pune"][i % 3],
            "t": float(v) + 0.5,
            "gone": float(v) * 2,
            "prediction": float(rng.uniform()),
        }
        for i, v in enumerate(rng.normal(size=2000))
    ]
    profile = profile_from_rows(reference, "m", "1")
    profile_path = tmp_path / "m@1.npz"
    save_profile(profile, profile_path)
    table = _hostile_table(2500, seed=2)
    table = table.append_column("extra", pa.array([float(i) for i in range(2500)]))
    path = _write(table, tmp_path / f"traffic{suffix}")
    by_column = _replay(path, tmp_path, True, monkeypatch, profile_path=profile_path)
    by_row = _replay(path, tmp_path, False, monkeypatch, profile_path=profile_path)
    assert by_column == by_row
    outputs, dead, _, _, _ = by_column
    assert b"wrong_type" in dead
    if suffix == ".parquet":  # a CSV cell of digits is a number: t is numeric there
        assert b"'t' holds a JSON string" in dead
    assert b'"feature":"x"' in outputs


@FORMATS
def test_labels_from_a_second_file_join_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    table = _hostile_table(2000, seed=3)
    path = _write(table.drop_columns(["label"]), tmp_path / f"traffic{suffix}")
    labels_path = _write(table.select(["event_id", "label"]), tmp_path / f"labels{suffix}")
    by_column = _replay(path, tmp_path, True, monkeypatch, labels_path=labels_path)
    by_row = _replay(path, tmp_path, False, monkeypatch, labels_path=labels_path)
    assert by_column == by_row
    # Every label but the dead-lettered 1e200 row's joined its prediction.
    assert by_column[2] == {("m", "joined"): 1999}


@pytest.mark.parametrize(
    ("column", "reason"),
    [
        (pa.array([[1.0]] * 3), "a list column"),
        (pa.array([1, 2, 3], pa.timestamp("s")), "a temporal column"),
    ],
)
def test_files_the_by_column_path_does_not_take_go_row_by_row(
    tmp_path: Path, column: object, reason: str
) -> None:
    path = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0], "odd": column}), path)
    data = open_data(path, SMALL.events)
    assert not eligible(data, SMALL.events), reason
    with_model = tmp_path / "models.parquet"
    pq.write_table(pa.table({"x": [1.0], "model": ["m"]}), with_model)
    assert not eligible(open_data(with_model), SMALL.events)
