"""`monitord replay` end to end over files: exact rows for a known shift, silence without one."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from monitord.alerts import stable_id
from monitord.cli import main
from monitord.clock import iso
from monitord.config import parse_config
from monitord.reference import load_profile, profile_from_rows, save_profile
from monitord.replay import replay
from monitord.tabular import read_rows


def _write_csv(path: Path, values: np.ndarray) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "prediction"])
        writer.writerows(values.round(6).tolist())


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(3)
    reference, traffic = tmp_path / "reference.csv", tmp_path / "traffic.csv"
    _write_csv(reference, rng.normal(size=(5000, 3)))
    values = rng.normal(size=(6000, 3))
    values[3000:, 0] += 1.0  # feature x shifts at row 3000
    _write_csv(traffic, values)
    profile = tmp_path / "m@1.npz"
    save_profile(profile_from_rows(read_rows(reference), "m", "1"), profile)
    return reference, traffic, profile


WINDOWS_1000 = parse_config({"detection": {"window_size": 1000}})
"""1,000-row windows (the default is 500): the rows these tests expect are that window's."""


def _thousand_row_windows(tmp_path: Path) -> list[str]:
    """CLI arguments for a config file giving `WINDOWS_1000`."""
    path = tmp_path / "windows.toml"
    path.write_text("[detection]\nwindow_size = 1000\n")
    return ["--config", str(path)]


def _replay(data: Path, profile: Path) -> list[dict[str, object]]:
    out = io.BytesIO()
    replay(WINDOWS_1000, data, out, model="m", version="1", profile_path=profile)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_shift_fires_at_the_row_that_completes_the_first_drifted_window(
    files: tuple[Path, Path, Path],
) -> None:
    _, traffic, profile = files
    outputs = _replay(traffic, profile)
    alerts = [o for o in outputs if o["kind"] == "alert"]
    # Tumbling windows of 1000 rows end at rows 999, 1999, ...; rows 3000-3999 are the first
    # window wholly after the shift, and row 3999 is the arrival that completes it.
    # One of three columns drifted is above the 0.25 share: the model-level alert fires too.
    assert [(a["feature"], a["detector"], a["status"], a["row"]) for a in alerts] == [
        ("x", "ks", "firing", 3999),
        ("x", "psi", "firing", 3999),
        ("", "any", "firing", 3999),
    ]
    retrains = [o for o in outputs if o["kind"] == "retrain"]
    # Share 1/3 >= 0.25 for two consecutive windows: decided by the window ending at row 4999.
    assert [(r["row"], r["drifted_features"], r["first_row"]) for r in retrains] == [
        (4999, ["x"], 3000)
    ]


def test_stationary_file_is_silent(files: tuple[Path, Path, Path]) -> None:
    reference, _, profile = files
    assert _replay(reference, profile) == []


def test_cli_replay_and_reference_build(
    files: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, traffic, _ = files
    built = tmp_path / "built.npz"
    assert (
        main(
            [
                "reference",
                "build",
                str(reference),
                "--model",
                "m",
                "--version",
                "1",
                "--out",
                str(built),
            ]
        )
        == 0
    )
    capsys.readouterr()
    config = _thousand_row_windows(tmp_path)
    assert main(["replay", str(traffic), "--model", "m", "--profile", str(built), *config]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["row"] for line in lines if line["kind"] == "alert"] == [3999, 3999, 3999]


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "/nonexistent/traffic.csv"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_corrupt_profile_is_a_clear_error(
    files: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, traffic, profile = files
    broken = tmp_path / "broken.npz"
    broken.write_bytes(profile.read_bytes()[:200])
    assert main(["replay", str(traffic), "--model", "m", "--profile", str(broken)]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err
    assert "Traceback" not in err


def test_reference_build_reads_jsonl_and_parquet_alike(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    pyarrow = pytest.importorskip("pyarrow")  # the optional [parquet] extra; CI installs it
    import pyarrow.parquet as pq  # noqa: PLC0415

    reference, _, _ = files
    rows = read_rows(reference)
    jsonl = tmp_path / "reference.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    parquet = tmp_path / "reference.parquet"
    pq.write_table(pyarrow.Table.from_pylist(rows), parquet)
    ids = {
        profile_from_rows(read_rows(path), "m", "1").profile_id
        for path in (reference, jsonl, parquet)
    }
    assert len(ids) == 1


def test_jsonl_of_inference_events_flattens_features(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"model": "m", "features": {"x": 1.5, "c": "DE"}, "prediction": 0.2}\n'
        '{"model": "m", "features": {"x": null, "c": "FR"}, "prediction": 0.4}\n'
    )
    assert read_rows(path) == [
        {"x": 1.5, "c": "DE", "prediction": 0.2, "model": "m"},
        {"x": None, "c": "FR", "prediction": 0.4, "model": "m"},
    ]


def test_cli_replay_reports_the_retrain_decision_with_its_evidence_and_data_range(
    files: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, traffic, profile = files
    # The same traffic, one event per second from 2026-11-23T00:00:00Z (event time).
    stamped = tmp_path / "stamped.csv"
    header, *lines = traffic.read_text().splitlines()
    start = datetime(2026, 11, 23, tzinfo=UTC).timestamp()
    stamped.write_text(
        "\n".join([f"{header},timestamp"] + [f"{r},{iso(start + i)}" for i, r in enumerate(lines)])
    )

    config = _thousand_row_windows(tmp_path)
    assert main(["replay", str(stamped), "--model", "m", "--profile", str(profile), *config]) == 0

    outputs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (decision,) = [o for o in outputs if o["kind"] == "retrain"]
    profile_id = load_profile(profile).profile_id
    assert decision["id"] == stable_id("m", "1", "retrain", profile_id, 3000, 4999)
    assert (decision["reason"], decision["model"], decision["version"]) == ("drift", "m", "1")
    # Evidence: what drifted, by how much, against which reference and config.
    assert decision["drifted_features"] == ["x"]
    assert decision["statistics"] == [["x", "ks", 0.375, pytest.approx(0.0752916549121, 1e-9)]]
    assert decision["feature_share"] == pytest.approx(1 / 3)
    assert decision["windows"] == 2
    assert decision["detail"] == (
        "share 0.333 of the monitored columns drifted (threshold 0.25) for 2 windows in a row"
    )
    assert decision["profile_id"] == profile_id
    assert decision["config_hash"] == WINDOWS_1000.config_hash
    # Data range: the episode's rows, the deciding window's offsets and event times.
    assert (decision["first_row"], decision["row"]) == (3000, 4999)
    assert decision["offsets"] == [
        {"topic": "stamped.csv", "partition": 0, "first_offset": 4000, "last_offset": 4999}
    ]
    assert (decision["start_time"], decision["end_time"]) == (
        "2026-11-23T01:06:40.000Z",
        "2026-11-23T01:23:19.000Z",
    )

    assert main(["replay", str(reference), "--model", "m", "--profile", str(profile)]) == 0
    assert capsys.readouterr().out == ""  # stationary: no alert, no retrain decision


def test_bad_lines_are_dead_lettered_and_the_replay_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One invalid JSON line once stopped the whole replay with exit 2."""
    rng = np.random.default_rng(5)
    lines = [json.dumps({"x": x, "c": "a"}) for x in rng.normal(size=1200).round(4).tolist()]
    bad = {
        100: "{not json",
        200: "[1, 2]",
        400: json.dumps({"x": 0.5, "c": "v" * 900_000}),  # a legal category, cut to 256 chars
        1100: json.dumps({"x": "12.5", "c": "a"}),  # after the warm-up that makes x numeric
    }
    for row, line in bad.items():
        lines.insert(row, line)
    data = tmp_path / "events.jsonl"
    data.write_text("\n".join(lines) + "\n")
    letters = tmp_path / "dead.jsonl"
    args = ["replay", str(data), "--model", "m", "--dead-letters", str(letters)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "3 of 1204 rows dead-lettered (invalid_json 1, not_an_object 1, wrong_type 1)" in err
    written = [json.loads(line) for line in letters.read_text().splitlines()]
    assert [(w["row"], w["reason"]) for w in written] == [
        (100, "invalid_json"),
        (200, "not_an_object"),
        (1100, "wrong_type"),
    ]
    assert [w["event"] for w in written[:2]] == [bad[100], bad[200]]  # the line as it was
    assert json.loads(written[2]["event"])["features"] == {"x": "12.5", "c": "a"}
    assert written[2]["detail"] == "'x' holds a JSON string, not a number"


def test_replay_writes_a_report_of_its_windows_alerts_and_retrain_requests(
    files: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, traffic, profile = files
    config = _thousand_row_windows(tmp_path)
    report = tmp_path / "report.html"
    arguments = ["replay", str(traffic), "--model", "m", "--profile", str(profile), *config]
    assert main([*arguments, "--report", str(report)]) == 0
    with_report = capsys.readouterr()
    assert f"report written to {report}" in with_report.err
    assert main(arguments) == 0
    assert capsys.readouterr().out == with_report.out  # the JSON lines are the same
    page = report.read_text()
    HTMLParser().feed(page)
    assert "monitord replay of traffic.csv" in page
    retrain = next(json.loads(line) for line in with_report.out.splitlines() if '"retrain"' in line)
    assert retrain["id"] in page  # the retrain request, with its id
    assert page.count("<svg") >= 3  # x's statistics over the six windows, and the others
    assert "src=" not in page
    assert "href=" not in page


@pytest.mark.parametrize("option", ["--dead-letters", "--report"])
def test_a_full_disk_is_a_clear_error(
    option: str, files: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Writing the dead letters or the report onto a full disk (Linux's /dev/full answers
    every write with ENOSPC) names the file and the reason, without a traceback."""
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    _, traffic, profile = files
    bad = traffic.parent / "with-a-bad-row.csv"
    bad.write_text(traffic.read_text() + "oops,0.1,0.2\n")  # text in a numeric column
    argv = ["replay", str(bad), "--model", "m", "--profile", str(profile), option, str(full)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "/dev/full" in err
    assert "No space left on device" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("target", ["/dev/full", "a directory"])
def test_reference_build_refuses_to_write_over_what_is_not_a_file(
    target: str, files: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The profile is renamed into place: over a device (run as root) or a directory that
    would replace it. Refused, naming it; the device is still a device."""
    reference, _, _ = files
    out = tmp_path if target == "a directory" else Path(target)
    if not out.exists():
        pytest.skip(f"no {target} on this system")
    kind = out.stat().st_mode
    argv = ["reference", "build", str(reference), "--model", "m", "--version", "1"]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: cannot write (it exists and is not a regular file)" in err
    assert "Traceback" not in err
    assert out.stat().st_mode == kind
