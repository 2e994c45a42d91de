"""What a person reads of a replay: the table, the summary, the progress line. No 1970
dates for a file without times, no "nan" for a test without a threshold."""

from __future__ import annotations

import csv
import io
import math
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from monitord.alerts import Alert
from monitord.cli import main
from monitord.clock import iso
from monitord.console import Progress, TableWriter
from monitord.monitor import OffsetRange
from monitord.reference import profile_from_rows, save_profile
from monitord.tabular import read_rows


def _write_csv(path: Path, values: np.ndarray) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "prediction"])
        writer.writerows(values.round(6).tolist())
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Reference rows, 6,000 rows whose x shifts at row 3000, and the CLI arguments of
    their profile with 1,000-row windows."""
    rng = np.random.default_rng(3)
    reference = _write_csv(tmp_path / "reference.csv", rng.normal(size=(5000, 3)))
    values = rng.normal(size=(6000, 3))
    values[3000:, 0] += 1.0
    traffic = _write_csv(tmp_path / "traffic.csv", values)
    profile = tmp_path / "m@1.npz"
    save_profile(profile_from_rows(read_rows(reference), "m", "1"), profile)
    config = tmp_path / "windows.toml"
    config.write_text("[detection]\nwindow_size = 1000\n")
    return reference, traffic, ["--model", "m", "--profile", str(profile), "--config", str(config)]


def _replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    assert main(["replay", *args]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_table_shows_rows_windows_and_no_epoch_times(
    files: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, traffic, args = files
    out, err = _replay(capsys, str(traffic), *args, "--format", "table")
    header, *lines = out.splitlines()
    assert header.split() == [
        "ROW", "OUTPUT", "MODEL", "COLUMN", "TEST", "STATISTIC", "THRESHOLD", "WINDOW",
    ]  # fmt: skip
    first = lines[0].split()
    assert first[:6] == ["3999", "alert", "firing", "m/1", "x", "ks"]
    assert float(first[6]) > float(first[7])  # the statistic over its threshold
    assert first[8:] == ["rows", "3000-3999", "(warning)"]
    (retrain,) = [line for line in lines if "retrain requested" in line]
    assert retrain.split()[:6] == ["4999", "retrain", "requested", "m/1", "x", "drift"]
    assert "rows 4000-4999: share 0.333 of the monitored columns drifted" in retrain
    for text in (out, err):
        assert "1970" not in text
        assert "nan" not in text.lower()


def test_table_of_a_timed_file_shows_the_windows_end(
    files: tuple[Path, Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, traffic, args = files
    stamped = tmp_path / "stamped.csv"
    header, *rows = traffic.read_text().splitlines()
    start = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
    stamped.write_text(
        "\n".join([f"{header},timestamp"] + [f"{r},{iso(start + i)}" for i, r in enumerate(rows)])
    )
    out, _ = _replay(capsys, str(stamped), *args, "--format", "table")
    header, first, *_ = out.splitlines()
    assert header.split()[:4] == ["ROW", "WINDOW", "END", "OUTPUT"]
    assert first.split()[:2] == ["3999", "2026-11-23T01:06:39.000Z"]


def test_summary_names_the_first_drift_per_column_and_test(
    files: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    _, traffic, args = files
    out, err = _replay(capsys, str(traffic), *args)
    assert out.startswith("{")  # not a terminal: JSON lines, the machine contract
    lines = [line.removeprefix("monitord: ") for line in err.splitlines()]
    assert lines[0].startswith("6000 rows in ")
    assert lines[1] == "6 windows of m/1"
    assert (
        "m/1 x ks: first drift at row 3999 (window rows 3000-3999), 3 windows drifted; "
        "alerts fired 1, resolved 0"
    ) in lines
    assert "m/1 (model) any: alerts fired 1, resolved 0" in lines
    assert lines[-2:] == ["retrain requests: 1", "  m/1 at row 4999: drift (x share 0.333)"]


def test_a_clean_replay_says_so(
    files: tuple[Path, Path, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    reference, _, args = files
    out, err = _replay(capsys, str(reference), *args, "--format", "table")
    assert out == ""
    assert err.splitlines()[-1] == "monitord: no drift in 5 windows of m/1"


def test_a_file_shorter_than_the_warm_up_says_why_nothing_was_tested(
    files: tuple[Path, Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, _, _ = files
    short = tmp_path / "short.csv"
    short.write_text("\n".join(reference.read_text().splitlines()[:301]) + "\n")
    out, err = _replay(capsys, str(short), "--model", "m")
    assert out == ""
    assert err.splitlines()[1:] == [
        "monitord: no window was tested: without a profile a version's first "
        "detection.warmup_events rows (1000) are its reference, and a window takes "
        "detection.window_size rows (500)"
    ]


def test_a_test_without_threshold_shows_a_dash() -> None:
    window = OffsetRange("t.csv", 0, 100, 219)
    alert = Alert(
        id="a",
        status="firing",
        severity="warning",
        model="m",
        version="1",
        feature="x",
        detector="adwin",
        statistic=0.25,
        threshold=math.nan,
        profile_id="p",
        first_row=100,
        row=219,
        offset=OffsetRange("t.csv", 0, 219, 219),
        offsets=(window,),
        start_time=0.0,
        end_time=0.0,
        labels=(),
        annotations=(),
    )
    line = TableWriter(io.BytesIO(), "t.csv", timed=False).line(alert)
    assert line.split() == [
        "219", "alert", "firing", "m/1", "x", "adwin", "0.25", "-", "rows", "100-219", "(warning)",
    ]  # fmt: skip


def test_progress_is_rows_rate_and_time_left_at_most_every_interval() -> None:
    now = [100.0]
    stream = io.StringIO()
    progress = Progress(10_000, stream, interval_s=0.5, clock=lambda: now[0])
    now[0] = 100.2
    progress.update(1_000)  # too soon: nothing written
    assert stream.getvalue() == ""
    now[0] = 102.0
    progress.update(4_000)
    assert (
        stream.getvalue() == "\r\x1b[Kmonitord: 4,000 of 10,000 rows (40%), 2,000 rows/s, 0:03 left"
    )
    progress.done()
    assert stream.getvalue().endswith("\r\x1b[K")


def test_on_a_terminal_the_table_is_the_default(files: tuple[Path, Path, list[str]]) -> None:
    """stdout a terminal (a pseudo-terminal here): a table; piped: JSON lines (above)."""
    _, traffic, args = files
    controller, terminal = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "monitord.cli", "replay", str(traffic), *args],
        stdout=terminal,
        stderr=subprocess.PIPE,
    ) as child:
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the child closed the terminal (EIO)
                break
            if not chunk:
                break
            shown += chunk
        assert child.wait(timeout=60) == 0
    os.close(controller)
    header, first, *_ = shown.decode().splitlines()
    assert header.split()[:2] == ["ROW", "OUTPUT"]
    assert first.split()[:3] == ["3999", "alert", "firing"]
