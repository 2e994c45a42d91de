"""Replay by column (`monitord.columnar`) against row by row, on hostile files.

The promise: whatever a CSV or plain Parquet file holds, replaying it by column writes what
the row-by-row path writes (each row sent as its inference event's JSON and decoded again):
the same outputs, the same dead letters with the same event text, the same label joins, the
same stderr summary and log lines, and neither path raises. Each test replays one file both
ways and compares; a file neither path can read fails with an error naming it or its column.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import monitord.replay as replay_module
from monitord import columnar
from monitord.cli import main
from monitord.config import Config, parse_config
from monitord.reference import profile_from_rows, save_profile
from monitord.replay import replay
from monitord.tabular import DataError, open_data

pa = pytest.importorskip("pyarrow")  # the optional [parquet] extra; CI installs it
pq = pytest.importorskip("pyarrow.parquet")
pv = pytest.importorskip("pyarrow.csv")

N = 400
"""Rows of most files: a warm-up, windows before and after the drift at N // 2."""


def _config(
    warmup: int = 60,
    poll: int = 25,
    events: dict[str, Any] | None = None,
    detectors: tuple[str, ...] = ("ks", "psi", "chi2", "quality", "adwin"),
    **limits: Any,
) -> Config:
    return parse_config(
        {
            "detection": {"window_size": 50, "warmup_events": warmup, "detectors": detectors},
            "performance": {"window_size": 50, "warmup_labels": 50},
            "kafka": {"consumer": {"max_poll_records": poll}},  # polls straddle file batches
            "events": events or {},
            "limits": limits,
        }
    )


SMALL = _config()


@dataclass(frozen=True)
class Replayed:
    """What one replay wrote; equal between the two paths when the promise holds."""

    outputs: bytes
    dead_letters: bytes
    joins: dict[tuple[str, str], int]
    stderr: str  # the summary without its timing line, dead-letter and label lines
    logged: list[str]
    windows: str  # every window's statistics and thresholds, as the report draws them


def _replay(
    path: Path,
    tmp_path: Path,
    by_column: bool,
    caplog: pytest.LogCaptureFixture,
    config: Config = SMALL,
    **kwargs: Any,
) -> Replayed:
    where = tmp_path / ("by-column" if by_column else "by-row")
    where.mkdir(exist_ok=True)
    dead = where / "dead.jsonl"
    caplog.clear()
    with contextlib.ExitStack() as stack:
        if not by_column:
            patch = stack.enter_context(pytest.MonkeyPatch.context())
            patch.setattr(replay_module, "eligible", lambda data, fields: False)
        err = io.StringIO()
        stack.enter_context(contextlib.redirect_stderr(err))
        out = io.BytesIO()
        daemon = replay(
            config,
            path,
            out,
            model=kwargs.pop("model", "m"),
            dead_letters_path=dead,
            summary=err,
            batch_rows=kwargs.pop("batch_rows", 7),
            **kwargs,
        )
    stderr = err.getvalue().replace(str(where), "DIR")
    lines = [line for line in stderr.splitlines() if " rows/s" not in line]
    tally = daemon.policy.tally  # type: ignore[attr-defined]  # replay's TallyingPolicy
    return Replayed(
        out.getvalue(),
        dead.read_bytes(),
        dict(daemon.joins.counts),
        "\n".join(lines),
        [record.getMessage() for record in caplog.records],
        repr(tally.results),
    )


def _both(
    path: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    config: Config = SMALL,
    **kwargs: Any,
) -> tuple[Replayed, Replayed]:
    """``path`` replayed by column (checked to be taken by column) and row by row."""
    assert columnar.eligible(open_data(path, config.events), config.events)
    caplog.set_level(logging.INFO)
    by_column = _replay(path, tmp_path, True, caplog, config, **dict(kwargs))
    by_row = _replay(path, tmp_path, False, caplog, config, **dict(kwargs))
    return by_column, by_row


def _assert_alike(by_column: Replayed, by_row: Replayed) -> None:
    # Field by field: a difference shows where it is.
    assert by_column.outputs == by_row.outputs
    assert by_column.dead_letters == by_row.dead_letters
    assert by_column.joins == by_row.joins
    assert by_column.stderr == by_row.stderr
    assert by_column.logged == by_row.logged
    assert by_column.windows == by_row.windows


def _drifting(n: int = N, seed: int = 0) -> dict[str, Any]:
    """``x`` drifting at n // 2 and a probability prediction: every replay has windows."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[n // 2 :] += 3.0
    return {
        "x": pa.array(x.round(6).tolist(), pa.float64()),
        "prediction": pa.array(rng.uniform(size=n).round(4).tolist(), pa.float64()),
    }


def _write(columns: dict[str, Any] | Any, path: Path, row_group_size: int = 50) -> Path:
    """As Parquet (row groups batches straddle) or CSV (null: an empty cell), by suffix."""
    table = pa.table(columns) if isinstance(columns, dict) else columns
    if path.suffix == ".csv":
        pv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=row_group_size)
    return path


def _profile(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    path = tmp_path / "m@1.npz"
    save_profile(profile_from_rows(rows, "m", "1"), path)
    return path


FORMATS = pytest.mark.parametrize("suffix", [".parquet", ".csv"])


# What holds.


def _every_plain_type(n: int = N) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    columns = _drifting(n, seed=1)
    normal = rng.normal(size=n)
    columns.update(
        {
            "f32": pa.array(normal.astype(np.float32).tolist(), pa.float32()),
            "f16": pa.array(normal.astype(np.float16), pa.float16()),
            "u8": pa.array(rng.integers(0, 256, size=n).tolist(), pa.uint8()),
            "u64": pa.array([2**64 - 1 - i * 2**40 for i in range(n)], pa.uint64()),
            "i64": pa.array([(-1) ** i * (2**63 - 1 - i) for i in range(n)], pa.int64()),
            "all_null": pa.array([None] * n, pa.int64()),
            "flag": pa.array([None if i % 3 == 0 else i % 2 == 0 for i in range(n)]),
            "empty": pa.array(["" if i % 2 else "a" for i in range(n)]),
            "long": pa.array([("z" * 10_000 if i % 5 == 0 else "") + str(i % 3) for i in range(n)]),
            "wide": pa.array([str(i % 4) for i in range(n)], pa.large_string()),
            "tiny": pa.array([[-0.0, 5e-324, 1e150, -1e150][i % 4] for i in range(n)]),
            # Names and values JSON must escape, and names the event itself uses.
            "naïve\x00\x1f\u2028名": pa.array(["é\x00", "\u2028", "\U0001f600", "\x7f"] * (n // 4)),
            "": pa.array([float(i % 5) for i in range(n)]),
            "features": pa.array([float(i % 3) for i in range(n)]),
            "latency_ms": pa.array([float(i) for i in range(n)]),
            "@prediction": pa.array([float(i % 2) for i in range(n)]),
            "model_version ": pa.array(["v"] * n),
        }
    )
    return columns


@FORMATS
@pytest.mark.parametrize("with_profile", [False, True], ids=["warming-up", "profile"])
def test_every_plain_type_and_hostile_names_replay_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str, with_profile: bool
) -> None:
    """float16/32, uint8/64 beyond 2**63, an all-null int column, booleans with nulls, empty
    and 10,000-character strings, control characters and reserved words as names."""
    path = _write(_every_plain_type(), tmp_path / f"types{suffix}")
    kwargs: dict[str, Any] = {}
    if with_profile:  # knows some columns, one of another kind (u8 as text), not others
        rng = np.random.default_rng(2)
        rows = [
            {"x": float(v), "f32": float(v), "u8": str(i % 3), "flag": i % 2 == 0, "gone": 1.0}
            | {"prediction": float(rng.uniform())}
            for i, v in enumerate(rng.normal(size=300))
        ]
        kwargs["profile_path"] = _profile(tmp_path, rows)
    by_column, by_row = _both(path, tmp_path, caplog, **kwargs)
    _assert_alike(by_column, by_row)
    assert b'"feature":"x"' in by_column.outputs


@pytest.mark.parametrize(
    "reserved",
    [
        pytest.param(
            {"prediction": [[1e200, -1e300, 1e151, math.nan, math.inf][i % 5] for i in range(N)]},
            id="predictions-beyond-1e150",
        ),
        pytest.param({"prediction": [["a", "b", ""][i % 3] for i in range(N)]}, id="text-pred"),
        pytest.param({"prediction": [i % 2 == 0 for i in range(N)]}, id="boolean-predictions"),
        pytest.param(
            {"prediction": pa.array([2**64 - 1 - i % 3 for i in range(N)], pa.uint64())},
            id="uint64-predictions",
        ),
        pytest.param(
            {"label": [[math.nan, math.inf, -math.inf, 1.0, 0.0, None][i % 6] for i in range(N)]},
            id="non-finite-labels",
        ),
        pytest.param({"label": [["yes", "", "no"][i % 3] for i in range(N)]}, id="text-labels"),
        pytest.param(
            {"timestamp": [[math.nan, math.inf, -1e300, 1.7e9 + i][i % 4] for i in range(N)]},
            id="non-finite-times",
        ),
        pytest.param(
            {"timestamp": [f"2024-01-01T00:{i // 60:02d}:{i % 60:02d}Z" for i in range(N)]},
            id="iso-times",
        ),
        pytest.param(
            {"timestamp": [["garbage", "", "2024-13-45", "1.7e9"][i % 4] for i in range(N)]},
            id="bad-time-text",
        ),
        pytest.param(
            {"timestamp": pa.array([1_700_000_000_000 + i for i in range(N)], pa.int64())},
            id="epoch-millisecond-ints",
        ),
        pytest.param({"timestamp": [i % 2 == 0 for i in range(N)]}, id="boolean-times"),
        pytest.param({"event_id": [float(i // 2) for i in range(N)]}, id="ids-17.0-repeated"),
        pytest.param({"event_id": [1e20 + i * 2**20 for i in range(N)]}, id="ids-1e20"),
        pytest.param(
            {"event_id": [[f" {i} ", "", f"{i}\t", "é"][i % 4] for i in range(N)]},
            id="ids-with-whitespace",
        ),
        pytest.param({"event_id": [i % 2 == 0 for i in range(N)]}, id="boolean-ids"),
        pytest.param(
            {"event_id": pa.array([None if i % 7 == 0 else i for i in range(N)], pa.int64())},
            id="null-ids",
        ),
    ],
)
@FORMATS
def test_hostile_reserved_columns_replay_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str, reserved: dict[str, Any]
) -> None:
    """Predictions, labels, times and ids of every kind and out of every range: the same
    windows, dead letters and joins (the label column is inline, joined by the ids)."""
    columns = _drifting() | {"label": [i % 2 for i in range(N)]}
    columns |= {"event_id": list(range(N)), "timestamp": [1.7e9 + i for i in range(N)]}
    columns |= reserved
    path = _write(columns, tmp_path / f"reserved{suffix}")
    by_column, by_row = _both(path, tmp_path, caplog)
    _assert_alike(by_column, by_row)


@FORMATS
@pytest.mark.parametrize(
    "column",
    [
        pytest.param({"a": [None if i % 5 == 0 else i % 2 == 0 for i in range(N)]}, id="a-bool"),
        pytest.param({"a": [["", "1.5", "x", None][i % 4] for i in range(N)]}, id="a-text"),
        pytest.param({"b": [[math.nan, 1.5, 1e200, None][i % 4] for i in range(N)]}, id="b-float"),
        pytest.param({"b": pa.array([2**64 - 1 - i for i in range(N)], pa.uint64())}, id="b-u64"),
        pytest.param({"b": [i % 2 == 0 for i in range(N)]}, id="b-bool"),
        pytest.param({"b": ["w" * 10_000 + str(i % 3) for i in range(N)]}, id="b-long-text"),
        pytest.param(
            {"c": [[math.inf, -math.inf, 2.0, None][i % 4] for i in range(N)]}, id="c-inf"
        ),
        pytest.param({"d": [1e200 if i % 50 == 0 else float(i % 2) for i in range(N)]}, id="d-num"),
    ],
)
def test_a_profile_of_other_kinds_than_the_file_replays_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str, column: dict[str, Any]
) -> None:
    """The profile takes ``a`` and ``c`` for numbers, ``b`` and ``d`` for categories; the
    file holds booleans, text, floats, huge integers where the other kind is expected."""
    rng = np.random.default_rng(3)
    rows = [
        {"a": float(rng.normal()), "b": ["u", "v"][i % 2], "c": float(i % 3), "d": i % 2 == 0}
        | {"prediction": float(rng.uniform())}
        for i in range(300)
    ]
    profile = _profile(tmp_path, rows)
    columns = _drifting() | {"a": [0.5] * N, "b": ["u"] * N, "c": [1.0] * N} | column
    path = _write(columns, tmp_path / f"kinds{suffix}")
    by_column, by_row = _both(path, tmp_path, caplog, profile_path=profile)
    _assert_alike(by_column, by_row)


CSV_HEADER = "x,y,city,prediction,label"


def _csv_rows(n: int = N) -> list[str]:
    """Cells a spreadsheet writes: non-finite and overflowing numbers, blanks, padded and
    signed integers, quoted commas."""
    rng = np.random.default_rng(4)
    odd = ["nan", "inf", "-inf", "1e999", "", "NaN", "-1e999", " 3 ", "+7", "-0"]
    rows = []
    for i in range(n):
        x = rng.normal() + (3.0 if i >= n // 2 else 0.0)
        y = odd[i % len(odd)] if i % 3 == 0 else str(i)
        prediction = "" if i % 4 == 0 else f"{rng.uniform():.3f}"
        rows.append(f'{x:.5f},{y},"a,b{i % 3}",{prediction},{i % 2}')
    return rows


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(CSV_HEADER + "\n" + "\n".join(_csv_rows()) + "\n", id="odd-cells"),
        pytest.param(
            "\ufeff" + CSV_HEADER + "\r\n" + "\r\n".join(_csv_rows()) + "\r\n", id="bom-crlf"
        ),
        pytest.param(CSV_HEADER + "\n" + "\n\n".join(_csv_rows()) + "\n\n\n", id="blank-lines"),
        pytest.param(
            CSV_HEADER
            + "\n"
            + "\n".join(r.rsplit(",", 2)[0] if i % 5 == 0 else r for i, r in enumerate(_csv_rows()))
            + "\n",
            id="short-rows",
        ),
        pytest.param(
            CSV_HEADER + "\n" + "\n".join(r.replace('"a,b', '"a\nb') for r in _csv_rows()) + "\n",
            id="quoted-newlines",
        ),
        pytest.param(
            "x,prediction,event_id,label\n"
            + "".join(
                f"{2**53 + i if i % 2 else '+' + str(i)},0.{i % 10},{i}{'.0' if i % 3 else ''},1\n"
                for i in range(N)
            ),
            id="integers-beyond-2**53-and-ids-17.0",
        ),
        pytest.param("x,prediction\n1.5,0.5\n", id="one-row"),
    ],
)
def test_hostile_csv_cells_replay_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    path = tmp_path / "cells.csv"
    path.write_text(text, encoding="utf-8", newline="")
    by_column, by_row = _both(path, tmp_path, caplog)
    _assert_alike(by_column, by_row)


@pytest.mark.parametrize(
    ("batch_rows", "poll", "warmup"),
    [(1, 1, 50), (2, 3, 61), (7, 25, 67), (97, 61, 61), (97, 1, 67), (8192, 250, 61)],
)
def test_batches_polls_and_the_warm_up_end_straddling_replay_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, batch_rows: int, poll: int, warmup: int
) -> None:
    """File batches of 1 row up to the whole file, polls of 1 row up to many batches, a
    warm-up ending mid-batch and mid-poll, row groups of 13 rows and of none."""
    columns = _drifting()
    x = columns["x"].to_pylist()
    for i in range(2, N, 37):
        x[i] = 1e200  # dead-lettered, in the warm-up too
    columns |= {
        "x": pa.array(x),
        "city": [["a", "b", None][i % 3] for i in range(N)],
        "event_id": list(range(N)),
        "label": [i % 2 for i in range(N)],
        "timestamp": [1.7e9 + i for i in range(N)],
    }
    table = pa.table(columns)
    path = tmp_path / "straddling.parquet"
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table.slice(0, 0))  # a row group of no rows
        writer.write_table(table.slice(0, 100), row_group_size=13)
        writer.write_table(table.slice(100, 0))
        writer.write_table(table.slice(100), row_group_size=13)
    config = _config(warmup=warmup, poll=poll)
    by_column, by_row = _both(path, tmp_path, caplog, config, batch_rows=batch_rows)
    _assert_alike(by_column, by_row)
    assert by_column.dead_letters.count(b"\n") == len(range(2, N, 37))
    assert by_column.joins


def test_table_format_and_report_replay_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    columns = _drifting() | {"timestamp": [1.7e9 + i for i in range(N)]}
    path = _write(columns, tmp_path / "shown.parquet")
    reports = {True: tmp_path / "column.html", False: tmp_path / "row.html"}
    replayed = {}
    caplog.set_level(logging.INFO)
    for by_column, report in reports.items():
        replayed[by_column] = _replay(
            path, tmp_path, by_column, caplog, output_format="table", report_path=report
        )
    _assert_alike(replayed[True], replayed[False])
    assert b"x" in replayed[True].outputs
    assert reports[True].read_bytes() == reports[False].read_bytes()


@pytest.mark.parametrize(
    ("data_ids", "label_ids"),
    [
        pytest.param(list(range(N)), [str(i) for i in range(N)], id="ints-and-text"),
        pytest.param([float(i) for i in range(N)], list(range(N)), id="17.0-and-ints"),
        pytest.param(
            [str(i) for i in range(N)],
            [[f" {i}", f"{i}.0", str(i), f"{i}\t"][i % 4] for i in range(N)],
            id="text-and-mixed",
        ),
        pytest.param(
            pa.array([2**63 + i for i in range(N)], pa.uint64()),
            [str(2**63 + i) if i % 2 else None for i in range(N)],
            id="uint64-and-text",
        ),
        pytest.param(None, list(range(0, 2 * N, 2)), id="row-index-and-every-other"),
    ],
)
@FORMATS
def test_labels_file_with_ids_of_mixed_types_joins_alike(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    suffix: str,
    data_ids: Any,
    label_ids: list[Any],
) -> None:
    columns = _drifting()
    if data_ids is not None:
        columns["event_id"] = data_ids
    path = _write(columns, tmp_path / f"traffic{suffix}")
    labels = {
        "event_id": label_ids,
        "label": [[1.0, 0.0, None, math.nan][i % 4] for i in range(N)],
    }
    labels_path = _write(labels, tmp_path / f"labels{suffix}")
    by_column, by_row = _both(path, tmp_path, caplog, labels_path=labels_path)
    _assert_alike(by_column, by_row)


@pytest.mark.parametrize(
    ("limits", "model", "version"),
    [
        pytest.param({"max_columns_per_model": 5}, "m", "1", id="column-cap"),
        pytest.param({"max_name_chars": 3}, "m", "1", id="name-cap"),
        pytest.param({"max_categories_per_column": 2}, "m", "1", id="category-cap"),
        pytest.param({}, "m" * 300, "1", id="model-name-too-long"),
        pytest.param({}, "m", "v" * 300, id="version-too-long"),
        pytest.param({}, "é\x00 m", " ", id="odd-model-and-version"),
    ],
)
def test_limits_and_odd_names_replay_alike(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    limits: dict[str, Any],
    model: str,
    version: str,
) -> None:
    """Caps on columns, names and categories; model and version names dead-lettered for
    their length (every row, with its event's text)."""
    rng = np.random.default_rng(6)
    columns = _drifting() | {f"c{j}": rng.normal(size=N).tolist() for j in range(12)}
    columns |= {"n" * 300: [1.0] * N, "city": [str(i % 50) for i in range(N)]}
    path = _write(columns, tmp_path / "capped.parquet")
    config = _config(**limits)
    by_column, by_row = _both(path, tmp_path, caplog, config, model=model, version=version)
    _assert_alike(by_column, by_row)


def test_more_columns_than_the_cap_replay_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """More columns than the default cap (1000), in a file read 97 rows at a time."""
    rng = np.random.default_rng(7)
    columns = {f"c{j}": rng.normal(size=120).round(3).tolist() for j in range(1010)}
    path = _write(_drifting(120) | columns, tmp_path / "wide.parquet", row_group_size=64)
    config = _config(detectors=("ks",))  # calibrating 1000 columns' other tests is slow
    by_column, by_row = _both(path, tmp_path, caplog, config, batch_rows=97)
    _assert_alike(by_column, by_row)


def test_custom_event_field_names_replay_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """events.* renamed: the default names (model, label, event_id...) are then features."""
    rng = np.random.default_rng(8)
    columns = _drifting() | {
        "score": rng.uniform(size=N).tolist(),
        "id": [float(i) for i in range(N)],
        "y": [i % 2 for i in range(N)],
        "ts": [1.7e9 + i for i in range(N)],
        "model": ["other"] * N,
        "model_version": ["9"] * N,
        "label": [1 - i % 2 for i in range(N)],
        "event_id": [str(i) for i in range(N)],
        "timestamp": ["x"] * N,
    }
    events = {"event_id": "id", "label": "y", "timestamp": "ts", "prediction": "score"}
    events |= {"features": "x", "model": "mdl", "model_version": "ver", "latency": "score"}
    path = _write(columns, tmp_path / "renamed.parquet")
    config = _config(events=events)
    by_column, by_row = _both(path, tmp_path, caplog, config, prediction_column="score")
    _assert_alike(by_column, by_row)
    assert by_column.joins


# A seeded fuzz: random plain tables, configs, profiles and labels files.

KINDS = ("f64", "f32", "i8", "u64", "i64", "bool", "str", "lstr", "null")


def _fuzz_column(r: random.Random, n: int, kind: str) -> Any:
    shifted = [r.gauss(0, 1) + (2.0 if i > n // 2 else 0.0) for i in range(n)]

    def holes(values: list[Any]) -> list[Any]:
        return [None if r.random() < 0.1 else v for v in values]

    if kind in ("f64", "f32"):
        odd = [math.nan, math.inf, -math.inf, 1e200, -0.0, 5e-324, 1.7976931348623157e308]
        values = [v if r.random() > 0.1 else r.choice(odd) for v in shifted]
        return pa.array(holes(values), pa.float64() if kind == "f64" else pa.float32())
    if kind in ("i8", "u64", "i64"):
        types = {"i8": (pa.int8(), -128, 127), "u64": (pa.uint64(), 0, 2**64 - 1)}
        arrow, low, high = types.get(kind, (pa.int64(), -(2**63), 2**63 - 1))
        values = [
            min(high, max(low, round(v * 3))) if r.random() > 0.05 else r.choice([low, high])
            for v in shifted
        ]
        return pa.array(holes(values), arrow)
    if kind == "bool":
        return pa.array(holes([v > 0.5 for v in shifted]), pa.bool_())
    if kind in ("str", "lstr"):
        pool = ["Oslo", "Lima", "", " ", "12.5", "nan", "é\u2028", "\x00\x1f", "名", "y" * 300]
        texts = [r.choice(pool[:3]) if v < 1 else r.choice(pool) for v in shifted]
        return pa.array(holes(texts), pa.string() if kind == "str" else pa.large_string())
    return pa.array([None] * n, pa.int64())


def _fuzz_case(seed: int, tmp_path: Path) -> tuple[Path, Config, dict[str, Any]]:
    r = random.Random(seed)
    n = r.choice([1, 5, 150, 400])
    names = ["x", "k", "flag", "é名", "a b", "\t", "features", "latency_ms", "@prediction"]
    columns = {f"{r.choice(names)}{j}": _fuzz_column(r, n, r.choice(KINDS)) for j in range(4)}
    if r.random() < 0.8:
        columns["prediction"] = _fuzz_column(r, n, r.choice(["f64", "bool", "str", "i8"]))
    if r.random() < 0.5:
        columns["label"] = _fuzz_column(r, n, r.choice(["f64", "i8", "bool", "str"]))
    if r.random() < 0.5:  # ids repeat; no float ids: NaN ones are pinned below
        kind = r.choice(["i64", "str", "u64", "bool"])
        ids = pa.array([r.randint(0, n) for _ in range(n)])
        columns["event_id"] = ids if kind == "i64" else _fuzz_column(r, n, kind)
    if r.random() < 0.5:
        stamps = [1.7e9 + i if r.random() > 0.1 else r.choice([None, math.nan]) for i in range(n)]
        columns["timestamp"] = stamps
    suffix = r.choice([".parquet", ".csv"])
    path = _write(columns, tmp_path / f"fuzz{suffix}", row_group_size=r.choice([3, 50, 1000]))
    kwargs: dict[str, Any] = {"batch_rows": r.choice([1, 2, 7, 97, 8192])}
    if r.random() < 0.4:
        numeric = {name: r.random() < 0.6 for name in columns}
        rows = [
            {
                name: float(r.gauss(0, 1)) if numeric[name] else r.choice(["Oslo", "Lima"])
                for name in columns
                if name not in ("label", "event_id", "timestamp")
            }
            for _ in range(200)
        ]
        kwargs["profile_path"] = _profile(tmp_path, rows)
    if "event_id" in columns and r.random() < 0.5:
        labels = {"event_id": columns["event_id"], "label": _fuzz_column(r, n, "i8")}
        kwargs["labels_path"] = _write(labels, tmp_path / f"labels{suffix}")
    return path, _config(warmup=r.choice([50, 61, 100]), poll=r.choice([1, 3, 25, 250])), kwargs


@pytest.mark.parametrize("seed", range(30))
def test_fuzzed_plain_files_replay_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, seed: int
) -> None:
    path, config, kwargs = _fuzz_case(seed, tmp_path)
    by_column, by_row = _both(path, tmp_path, caplog, config, **kwargs)
    _assert_alike(by_column, by_row)


# Memory.


@pytest.mark.parametrize(("batch_rows", "poll"), [(1000, 250), (97, 1000), (8192, 10_000)])
def test_batches_are_let_go_once_decoded_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_rows: int, poll: int
) -> None:
    """Over a file of 40,000 rows, the by-column path holds no more file rows than a poll
    spans (its batches, one at either end at most), not the rows read so far."""
    rng = np.random.default_rng(9)
    n = 40_000
    columns: dict[str, Any] = {"x": rng.normal(size=n), "prediction": rng.uniform(size=n)}
    columns["s"] = [["a", "b"][i % 2] for i in range(n)]
    path = _write(columns, tmp_path / "long.parquet", row_group_size=5000)
    held: list[int] = []
    decode = columnar.ColumnarRows.decode

    def watched(self: columnar.ColumnarRows, *args: Any) -> Any:
        decoded = decode(self, *args)
        held.append(sum(b.end - b.start for b in self._batches))
        return decoded

    monkeypatch.setattr(columnar.ColumnarRows, "decode", watched)
    replay(_config(poll=poll), path, io.BytesIO(), model="m", batch_rows=batch_rows)
    assert len(held) >= n // poll
    assert max(held) <= poll + 2 * batch_rows


# Found apart by the probe, now alike (or refused with an error naming the column).


def test_non_finite_float_event_ids_join_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [[math.nan, math.inf][i % 2] if i % 10 == 0 else float(i) for i in range(N)]
    path = _write(_drifting() | {"event_id": ids}, tmp_path / "ids.parquet")
    labels = _write({"event_id": ids, "label": [i % 2 for i in range(N)]}, tmp_path / "l.parquet")
    by_column, by_row = _both(path, tmp_path, caplog, labels_path=labels)
    _assert_alike(by_column, by_row)


def test_an_empty_version_replays_alike(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(_drifting(), tmp_path / "v.parquet")
    by_column, by_row = _both(path, tmp_path, caplog, version="")
    _assert_alike(by_column, by_row)


@FORMATS
def test_oversize_rows_are_dead_lettered_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str
) -> None:
    columns = _drifting() | {"note": ["y" * 10_000 if i % 50 == 0 else "a" for i in range(N)]}
    path = _write(columns, tmp_path / f"big{suffix}")
    config = _config(events={"max_event_bytes": 5000})
    by_column, by_row = _both(path, tmp_path, caplog, config)
    assert b'"reason":"oversize"' in by_row.dead_letters
    _assert_alike(by_column, by_row)


def test_duplicate_parquet_column_names_alike_or_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drifting = _drifting()
    steady = pa.array([float(i % 7) for i in range(N)])
    table = pa.table(
        [drifting["x"], steady, drifting["prediction"]], names=["x", "x", "prediction"]
    )
    path = _write(table, tmp_path / "twice.parquet")
    try:
        by_column, by_row = _both(path, tmp_path, caplog)
    except DataError as exc:
        refused = str(exc)
    else:
        _assert_alike(by_column, by_row)
        return
    assert "'x'" in refused


@pytest.mark.parametrize(
    ("columns", "kwargs"),
    [
        pytest.param({"prediction": [0.5] * N}, {}, id="prediction-only"),
        pytest.param(
            {"prediction": [0.5] * N, "label": [1] * N, "event_id": list(range(N))},
            {},
            id="reserved-only",
        ),
        pytest.param({"x": [1.0] * N, "prediction": [0.5] * N}, {"label_column": "x"}, id="lab"),
        pytest.param({"prediction": [0.5] * N}, {"profile": True}, id="prediction-and-profile"),
    ],
)
@FORMATS
def test_a_file_without_features_replays_alike(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    suffix: str,
    columns: dict[str, Any],
    kwargs: dict[str, Any],
) -> None:
    kwargs = dict(kwargs)
    if kwargs.pop("profile", False):
        rows = [{"x": float(i % 7), "prediction": 0.5} for i in range(200)]
        kwargs["profile_path"] = _profile(tmp_path, rows)
    path = _write(columns, tmp_path / f"bare{suffix}")
    by_column, by_row = _both(path, tmp_path, caplog, **kwargs)
    _assert_alike(by_column, by_row)


def test_an_empty_prediction_column_name_replays_alike(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    columns = _drifting() | {"": [float(i % 3) for i in range(N)]}
    path = _write(columns, tmp_path / "unnamed.parquet")
    by_column, by_row = _both(path, tmp_path, caplog, prediction_column="")
    _assert_alike(by_column, by_row)


# Found on both paths (a traceback or a silent misreading), now clear errors.


def test_a_repartitioning_config_replays_as_without(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = _write(_drifting(), tmp_path / "traffic.parquet")
    plain = _both(path, tmp_path, caplog)
    kafka = SMALL.kafka.model_copy(update={"repartition": True})
    repartitioning = SMALL.model_copy(update={"kafka": kafka})
    assert _both(path, tmp_path, caplog, repartitioning) == plain


def test_a_column_named_like_the_prediction_is_not_a_second_prediction(tmp_path: Path) -> None:
    rows = [
        {"x": float(i % 7), "@prediction": float(i % 2), "prediction": 0.5 + (i % 3) / 10}
        for i in range(300)
    ]
    try:
        profile = profile_from_rows(rows, "m", "1")
    except DataError as exc:
        refused = str(exc)
    else:
        names = [*profile.numeric_names, *profile.categorical_names]
        assert len(set(names)) == len(names), names
        return
    assert "'@prediction'" in refused


def test_a_byte_order_mark_does_not_rename_the_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfevent_id,x,prediction\r\n17,1.0,0.5\r\n18,2.0,0.6\r\n")
    assert open_data(path).column_names() == ["event_id", "x", "prediction"]


def _odd_parquet(column: Any) -> Any:
    return lambda path: pq.write_table(pa.table({"x": [1.0, 2.0], "odd": column}), path)


@pytest.mark.parametrize(
    ("name", "write", "model", "named"),
    [
        pytest.param(
            "latin1.csv",
            lambda p: p.write_bytes(b"x,city\n1,\xe9\n"),
            "m",
            "latin1.csv",
            id="latin1",
        ),
        pytest.param(
            "decimal.parquet",
            _odd_parquet(pa.array([1, 2], pa.decimal128(5, 2))),
            "m",
            "'odd'",
            id="decimal",
        ),
        pytest.param(
            "binary.parquet", _odd_parquet(pa.array([b"\xff", b""])), "m", "'odd'", id="binary"
        ),
        pytest.param(
            "duration.parquet",
            _odd_parquet(pa.array([1, 2], pa.duration("s"))),
            "m",
            "'odd'",
            id="duration",
        ),
        pytest.param(
            "plain.csv", lambda p: p.write_text("x\n1\n"), "\udcff", "--model", id="argv-bytes"
        ),
        pytest.param(
            "cell.csv",
            lambda p: p.write_text("x,note\n1," + "n" * 200_000 + "\n"),
            "m",
            "cell.csv",
            id="csv-cell-of-200k-characters",
        ),
        pytest.param("dir.csv", Path.mkdir, "m", "dir.csv", id="a-directory"),
        pytest.param(
            "torn.parquet", lambda p: p.write_bytes(b"PAR1garbage"), "m", "torn.parquet", id="torn"
        ),
        pytest.param("empty.parquet", Path.touch, "m", "empty.parquet", id="empty-parquet"),
    ],
)
def test_unreadable_files_and_names_are_clear_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    write: Any,
    model: str,
    named: str,
) -> None:
    path = tmp_path / name
    write(path)
    assert main(["replay", str(path), "--model", model, "--format", "jsonl"]) == 2
    assert named in capsys.readouterr().err
