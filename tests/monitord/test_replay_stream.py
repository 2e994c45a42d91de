"""Replay and reference build read files in batches, with CSV types a person expects:
the same answers whatever the batch size or the format, integers not turned into floats."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitord.config import parse_config
from monitord.label_gate import HELD_COST, MAX_HELD_BYTES
from monitord.reference import profile_from_file, profile_from_rows, save_profile
from monitord.replay import replay
from monitord.tabular import ABSENT, MAX_EXACT_INTEGER, open_data, read_rows

WINDOWS_1000 = parse_config({"detection": {"window_size": 1000}})


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def shifted(tmp_path: Path) -> tuple[Path, Path]:
    """A reference profile of m@1 and 6,000 rows whose x shifts at row 3000, with a
    model_version column of 1 and an integer feature."""
    rng = np.random.default_rng(3)
    reference = rng.normal(size=(5000, 3)).round(6)
    counts = rng.integers(0, 5, size=5000)
    ref_rows = [[*r, k] for r, k in zip(reference.tolist(), counts.tolist(), strict=True)]
    ref_csv = _write_csv(tmp_path / "reference.csv", ["x", "y", "prediction", "k"], ref_rows)
    profile_dir = tmp_path / "profiles"
    save_profile(profile_from_file(open_data(ref_csv), "m", "1"), profile_dir / "m@1.npz")
    values = rng.normal(size=(6000, 3)).round(6)
    values[3000:, 0] += 1.0
    counts = rng.integers(0, 5, size=6000)
    rows = [[1, *r, k] for r, k in zip(values.tolist(), counts.tolist(), strict=True)]
    header = ["model_version", "x", "y", "prediction", "k"]
    return _write_csv(tmp_path / "traffic.csv", header, rows), profile_dir


def test_csv_whole_numbers_stay_integers_and_ids_and_versions_stay_text(tmp_path: Path) -> None:
    path = _write_csv(
        tmp_path / "types.csv",
        ["model_version", "event_id", "k", "x", "big", "c"],
        [
            ["1", "007", "3", "0.5", str(MAX_EXACT_INTEGER + 1), "1"],
            ["1.10", "8", "", "2", "1", "a"],
        ],
    )
    assert read_rows(path) == [
        {
            "model_version": "1",
            "event_id": "007",
            "k": 3,
            "x": 0.5,
            "big": float(MAX_EXACT_INTEGER + 1),
            "c": "1",
        },
        {"model_version": "1.10", "event_id": "8", "k": None, "x": 2.0, "big": 1.0, "c": "a"},
    ]
    assert type(read_rows(path)[0]["k"]) is int


def test_a_model_version_column_of_1_finds_the_profile_of_version_1(
    shifted: tuple[Path, Path],
) -> None:
    """It was read as 1.0: the version "1.0" had no profile and warmed up silently."""
    traffic, profile_dir = shifted
    config = parse_config({"detection": {"window_size": 1000}, "profile_dir": str(profile_dir)})
    out = io.BytesIO()
    daemon = replay(config, traffic, out, model="m", version="other", profile_path=None)
    assert list(daemon.monitor.versions) == [("m", "1")]
    assert daemon.monitor.versions["m", "1"].profile_from_file
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(a["feature"], a["detector"], a["row"]) for a in alerts[:2]] == [
        ("x", "ks", 3999),
        ("x", "psi", 3999),
    ]


def test_csv_parquet_and_jsonl_replay_alike_in_batches_smaller_than_a_window(
    shifted: tuple[Path, Path], tmp_path: Path
) -> None:
    pyarrow = pytest.importorskip("pyarrow")  # the optional [parquet] extra; CI installs it
    import pyarrow.parquet as pq  # noqa: PLC0415

    traffic, profile_dir = shifted
    rows = read_rows(traffic)
    parquet, jsonl = tmp_path / "traffic.parquet", tmp_path / "traffic.jsonl"
    pq.write_table(pyarrow.Table.from_pylist(rows), parquet, row_group_size=700)
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    profile = profile_dir / "m@1.npz"

    def outputs(path: Path, batch_rows: int = 8192) -> list[tuple[object, ...]]:
        out = io.BytesIO()
        replay(WINDOWS_1000, path, out, model="m", profile_path=profile, batch_rows=batch_rows)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        return [(o["kind"], o.get("feature"), o.get("detector"), o["row"]) for o in lines]

    expected = outputs(traffic)
    assert ("alert", "x", "ks", 3999) in expected
    for path in (traffic, parquet, jsonl):
        assert outputs(path, batch_rows=300) == expected  # windows and polls straddle batches


def test_reference_build_from_batches_equals_the_build_from_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    lines = []
    for i, x in enumerate(rng.normal(size=900).round(4).tolist()):
        row: dict[str, object] = {"x": x, "c": "ab"[i % 2], "flag": i % 3 == 0}
        if i % 7 == 0:
            del row["x"]  # absent, not null
        if i % 5 == 0:
            row["n"] = None  # a column of nulls only: categorical
        lines.append(json.dumps(row))
    path = tmp_path / "reference.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = read_rows(path)
    assert rows[0].get("x", ABSENT) is ABSENT
    from_rows = profile_from_rows(rows, "m", "1")
    data = open_data(path)
    batches = list(data.batches(size=128))
    assert len(batches) == 8
    from_file = profile_from_file(data, "m", "1")
    assert from_file.profile_id == from_rows.profile_id
    assert from_file.numeric_names == ("x",)
    assert from_file.categorical_names == ("c", "flag", "n")


def test_a_csv_row_longer_than_its_header_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("x,y\n1,2\n3,4,5\n")
    with pytest.raises(ValueError, match=r"has 3 cells, the header 2"):
        open_data(path)


@pytest.mark.slow
def test_a_labels_file_larger_than_the_label_gate_finishes(tmp_path: Path) -> None:
    """Label records are all at time 0: the gate releases none before the labels file is
    read to its end. Bounded at 64 MB, it turned the labels beyond it away and read them
    again forever (before and after streaming; 250k labels never finished)."""
    rows = MAX_HELD_BYTES // HELD_COST + 10_000  # more held records than the gate takes
    rng = np.random.default_rng(5)
    events = _write_csv(
        tmp_path / "events.csv",
        ["x", "prediction"],
        [[x, int(x > 0)] for x in rng.normal(size=2000).round(4).tolist()],
    )
    labels = tmp_path / "labels.csv"
    labels.write_text("event_id,label\n" + "".join(f"{i},{i % 2}\n" for i in range(rows)))
    done = subprocess.run(
        [sys.executable, "-m", "monitord.cli", "replay", str(events), "--labels", str(labels)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert f"labels joined to 2000 of 2000 rows; not joined: orphan {rows - 2000}" in done.stderr
