"""`monitord replay` with labels: a concept drift is a performance alert and a retrain
request with its evidence, a stationary file is silent, inline or joined by event id."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from monitord.alerts import stable_id
from monitord.cli import main
from monitord.reference import load_profile

ROWS, CHANGE = 4000, 2000


def _concept(n: int, change_at: int, seed: int) -> list[dict[str, float | int]]:
    """Stationary features; the label is x1 + x2 <= 8 before ``change_at`` and <= 6 from it,
    the prediction the old rule throughout, 5% of labels flipped (noise)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 8.0, size=(n, 2)).round(4)
    total = x.sum(axis=1)
    label = (total <= np.where(np.arange(n) < change_at, 8.0, 6.0)).astype(int)
    label = np.where(rng.random(n) < 0.05, 1 - label, label)
    prediction = (total <= 8.0).astype(int)
    return [
        {"x1": float(a), "x2": float(b), "prediction": int(p), "label": int(y)}
        for (a, b), p, y in zip(x.tolist(), prediction.tolist(), label.tolist(), strict=True)
    ]


def _csv(path: Path, rows: Sequence[Mapping[str, object]], columns: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _replay(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[list[dict[str, Any]], str]:
    assert main(["replay", *args, "--model", "m"]) == 0
    captured = capsys.readouterr()
    return [json.loads(line) for line in captured.out.splitlines()], captured.err


@pytest.fixture(scope="module")
def drift() -> list[dict[str, float | int]]:
    return _concept(ROWS, CHANGE, seed=1)


def _decisions(outputs: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [
        (o["kind"], o.get("detector", o.get("reason")), o.get("status"), o["first_row"], o["row"])
        for o in outputs
    ]


def test_concept_drift_prints_the_performance_alert_and_the_retrain_request(
    drift: list[dict[str, float | int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _csv(tmp_path / "drift.csv", drift, ["x1", "x2", "prediction", "label"])
    outputs, err = _replay(capsys, str(data))
    # The first 1000 labelled rows are the reference; windows of 200 follow. The window of
    # rows 2000-2199 is the first after the change: it fires; the next one, the second
    # degraded in a row, asks for a retrain. Features and predictions never move.
    assert {o["feature"] for o in outputs if o["kind"] == "alert"} == {""}
    (alert,) = [o for o in outputs if o.get("detector") == "performance"]
    assert (alert["status"], alert["severity"]) == ("firing", "critical")
    assert (alert["first_row"], alert["row"]) == (CHANGE, CHANGE + 199)
    assert dict(alert["labels"])["alertname"] == "MonitordPerformanceDegraded"
    evidence = dict(alert["evidence"])
    assert evidence["error_rate"] == pytest.approx(alert["statistic"])
    assert alert["statistic"] > alert["threshold"]
    # About 5% misses before (the noise); about 22% more after (6 < x1 + x2 <= 8).
    assert evidence["reference_error_rate"] < 0.06
    assert evidence["error_rate"] > 0.25
    assert evidence["reference_miss_rate"] == pytest.approx(evidence["reference_error_rate"])
    assert evidence["label_delay_p50_s"] == 0.0  # inline: labelled as predicted
    assert {"accuracy", "precision", "recall", "f1"} <= evidence.keys()
    assert alert["offsets"] == [
        {"topic": "drift.csv", "partition": 0, "first_offset": CHANGE, "last_offset": CHANGE + 199}
    ]

    (retrain,) = [o for o in outputs if o["kind"] == "retrain"]
    assert (retrain["reason"], retrain["row"], retrain["windows"]) == (
        "performance",
        CHANGE + 399,
        2,
    )
    ((metric, detector, value, limit),) = retrain["statistics"]
    assert (metric, detector, limit) == ("error_rate", "performance", alert["threshold"])
    assert value == pytest.approx(dict(retrain["evidence"])["error_rate"])
    assert value > limit
    assert str(retrain["detail"]).startswith("error_rate ")
    assert "for 2 windows of labelled rows in a row" in str(retrain["detail"])
    assert dict(retrain["evidence"]).keys() == evidence.keys()
    assert f"labels joined to {ROWS} of {ROWS} rows" in err


def test_stationary_file_prints_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = _concept(ROWS, ROWS, seed=2)
    data = _csv(tmp_path / "stationary.csv", rows, ["x1", "x2", "prediction", "label"])
    outputs, err = _replay(capsys, str(data))
    assert outputs == []
    assert f"labels joined to {ROWS} of {ROWS} rows" in err
    assert "not tested" not in err  # 15 windows of labelled rows tested, none degraded


def test_labels_file_joined_by_event_id_decides_as_inline_labels(
    drift: list[dict[str, float | int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inline = _csv(tmp_path / "inline.csv", drift, ["x1", "x2", "prediction", "label"])
    expected, _ = _replay(capsys, str(inline))

    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(
            json.dumps(
                {
                    "event_id": f"req-{i}",
                    "features": {"x1": row["x1"], "x2": row["x2"]},
                    "prediction": row["prediction"],
                }
            )
            + "\n"
            for i, row in enumerate(drift)
        )
    )
    labels = tmp_path / "labels.csv"
    _csv(
        labels,
        [{"event_id": f"req-{i}", "y": row["label"]} for i, row in enumerate(drift)],
        ["event_id", "y"],
    )
    outputs, err = _replay(capsys, str(events), "--labels", str(labels), "--label-column", "y")
    assert _decisions(outputs) == _decisions(expected)
    (retrain,) = [o for o in outputs if o["kind"] == "retrain"]
    assert retrain["reason"] == "performance"
    assert (
        retrain["evidence"][:-1]
        == next(o for o in expected if o["kind"] == "retrain")["evidence"][:-1]
    )  # the same windows; only the label delay differs
    assert dict(retrain["evidence"])["label_delay_p50_s"] is None  # no label times: unknown
    assert f"labels joined to {ROWS} of {ROWS} rows" in err


def test_row_index_ids_orphans_and_bad_label_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _concept(1200, 1200, seed=4)
    data = _csv(tmp_path / "traffic.csv", rows, ["x1", "x2", "prediction"])  # no event_id
    labels = tmp_path / "labels.jsonl"
    lines = [json.dumps({"event_id": i, "label": row["label"]}) for i, row in enumerate(rows)]
    lines[5:5] = [
        json.dumps({"event_id": 1_000_000, "label": 1}),  # no such prediction
        json.dumps({"label": 1}),  # no event id
        "{not json",
    ]
    labels.write_text("\n".join(lines[:-100]) + "\n")  # the last 100 rows unlabelled
    letters = tmp_path / "dead.jsonl"
    args = ["--labels", str(labels), "--dead-letters", str(letters)]
    outputs, err = _replay(capsys, str(data), *args)
    assert outputs == []
    assert "2 of 1103 label rows dead-lettered (invalid_json 1, missing_event_id 1)" in err
    assert "labels joined to 1100 of 1200 rows; not joined: orphan 1" in err
    written = [json.loads(line) for line in letters.read_text().splitlines()]
    assert [(w["file"], w["row"], w["reason"]) for w in written] == [
        ("labels.jsonl", 6, "missing_event_id"),
        ("labels.jsonl", 7, "invalid_json"),
    ]


def test_too_few_labels_say_why_performance_was_not_tested(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _concept(600, 600, seed=5)
    data = _csv(tmp_path / "short.csv", rows, ["x1", "x2", "prediction", "label"])
    outputs, err = _replay(capsys, str(data))
    assert outputs == []
    assert (
        "m/1: 600 labelled rows, fewer than performance.warmup_labels (1000): performance "
        "not tested" in err
    )


def test_a_profile_with_labels_tests_performance_from_the_first_labelled_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train = _csv(
        tmp_path / "train.csv", _concept(2000, 2000, seed=6), ["x1", "x2", "prediction", "label"]
    )
    build = ["reference", "build", str(train), "--model", "m", "--version", "1"]
    labelled, plain = tmp_path / "labelled.npz", tmp_path / "plain.npz"
    assert main([*build, "--label-column", "label", "--out", str(labelled)]) == 0
    assert "2000 (prediction, label) pairs" in capsys.readouterr().out
    assert main([*build, "--out", str(plain)]) == 0
    assert "pairs" not in capsys.readouterr().out

    # 900 rows, the relation changing at row 400: within what would be the warm-up.
    traffic = _csv(
        tmp_path / "traffic.csv", _concept(900, 400, seed=7), ["x1", "x2", "prediction", "label"]
    )
    outputs, err = _replay(capsys, str(traffic), "--profile", str(labelled))
    pairs = load_profile(labelled).performance_pairs
    reference_id = stable_id(
        "performance", "m", "1", orjson.dumps([[p for p, _ in pairs], [y for _, y in pairs]]).hex()
    )
    (alert,) = [o for o in outputs if o.get("detector") == "performance"]
    # Windows of 200 labelled rows from row 0: 0-199, 200-399, then 400-599 fires.
    assert (alert["status"], alert["first_row"], alert["row"]) == ("firing", 400, 599)
    assert alert["profile_id"] == dict(alert["annotations"])["reference_id"] == reference_id
    assert dict(alert["evidence"])["reference_error_rate"] < 0.06
    (retrain,) = [o for o in outputs if o["kind"] == "retrain"]
    assert (retrain["reason"], retrain["row"], retrain["profile_id"]) == (
        "performance",
        799,
        reference_id,
    )
    assert "not tested" not in err

    # Without labels in the profile, the first 1000 labelled rows are the reference.
    outputs, err = _replay(capsys, str(traffic), "--profile", str(plain))
    assert outputs == []
    assert "m/1: 900 labelled rows, fewer than performance.warmup_labels (1000)" in err


def test_reference_build_refuses_a_label_column_it_cannot_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _concept(300, 300, seed=8)
    columns = ["x1", "x2", "prediction", "label"]
    out = ["--model", "m", "--version", "1", "--out", str(tmp_path / "p.npz")]
    train = _csv(tmp_path / "train.csv", rows, columns)
    assert main(["reference", "build", str(train), *out, "--label", "y"]) == 2
    assert "label column 'y': no row has it" in capsys.readouterr().err
    few_labels = [{**r, "label": r["label"] if i < 20 else ""} for i, r in enumerate(rows)]
    few = _csv(tmp_path / "few.csv", few_labels, columns)
    assert main(["reference", "build", str(few), *out, "--label", "label"]) == 2
    assert "20 rows have a prediction and a label; a reference performance needs at least 50" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "p.npz").exists()


def test_labels_timed_long_after_untimed_events_are_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _concept(300, 300, seed=9)
    data = _csv(tmp_path / "traffic.csv", rows, ["x1", "x2", "prediction"])
    labels = tmp_path / "labels.jsonl"
    stamp = "2026-11-23T00:00:00Z"  # the events have no timestamp: they are at 1970
    labels.write_text(
        "".join(
            json.dumps({"event_id": i, "label": row["label"], "timestamp": stamp}) + "\n"
            for i, row in enumerate(rows)
        )
    )
    outputs, err = _replay(capsys, str(data), "--labels", str(labels))
    assert outputs == []
    assert "labels joined to 0 of 300 rows; not joined: evicted 300, late 300" in err
    assert "300 labels came more than labels.max_delay_s (604800 s) after their prediction" in err
