"""Alert lifecycle: k of n to fire, m clean windows to resolve, cooldown, labels."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from connectors.stream import Record
from detectors.detection import Detection
from monitord.alerts import (
    CHANGE_DETECTOR,
    FEATURE_ALERT,
    MODEL_ALERT,
    AlertBook,
    AlertRow,
    Observation,
)
from monitord.config import AlertSettings, parse_config
from monitord.monitor import Evaluation, OffsetRange
from monitord.replay import replay


def _evaluation(row: int) -> Evaluation:
    result = Detection(
        "ks", row - 99, row, np.zeros(1), np.ones(1), np.zeros(1, bool), None, np.full(1, 100)
    )
    return Evaluation(
        "m",
        "1",
        "ref",
        ("x",),
        result,
        (OffsetRange("in", 0, row - 99, row),),
        Record("in", 0, row, None, b"", 0),
        0.0,
        1.0,
    )


def _run(settings: AlertSettings, drifted: list[bool]) -> list[tuple[int, str]]:
    book = AlertBook(settings)
    transitions: list[tuple[int, str]] = []
    for i, d in enumerate(drifted):
        alert = book.observe(
            Observation("x", "ks", d, 1.0 if d else 0.0, 0.5, _evaluation(i * 100 + 99))
        )
        if alert is not None:
            transitions.append((i, alert.status))
    return transitions


def test_fires_after_k_of_n_and_resolves_after_m_clean() -> None:
    settings = AlertSettings(fire_windows=2, fire_span=3, resolve_windows=2)
    pattern = [True, False, False, True, False, True, False, True, False, False, True]
    # 0: 1 of 3; 3: 1 of 3 (0 fell out); 5: 2 of 3 -> fire; 6 clean, 7 drift resets, 8-9 clean
    assert _run(settings, pattern) == [(5, "firing"), (9, "resolved")]


def test_a_statistic_hovering_at_the_threshold_does_not_resolve() -> None:
    book = AlertBook(AlertSettings(resolve_windows=2))
    statuses = []
    for i, statistic in enumerate([0.6, 0.45, 0.45, 0.45, 0.3, 0.3]):  # threshold 0.5
        drifted = statistic > 0.5
        alert = book.observe(Observation("x", "ks", drifted, statistic, 0.5, _evaluation(i)))
        statuses.append(None if alert is None else alert.status)
    # 0.45 is clean for firing (below 0.5) but not for resolving (not below 0.8 x 0.5 = 0.4).
    assert statuses == ["firing", None, None, None, None, "resolved"]


def test_cooldown_holds_a_resolved_label_set() -> None:
    settings = AlertSettings(resolve_windows=1, cooldown_windows=2)
    assert _run(settings, [True, False, True, True, True]) == [
        (0, "firing"),
        (1, "resolved"),
        (4, "firing"),
    ]


def test_labels_severity_and_annotations() -> None:
    settings = AlertSettings(labels={"team": "ml"}, runbook_url="https://runbooks/drift")
    book = AlertBook(settings)
    feature = book.observe(Observation("x", "ks", True, 0.9, 0.1, _evaluation(99)))
    model = book.observe(Observation("", "any", True, 0.5, 0.25, _evaluation(99)))
    assert feature is not None
    assert model is not None
    assert dict(feature.labels) == {
        "alertname": FEATURE_ALERT,
        "model": "m",
        "model_version": "1",
        "feature": "x",
        "detector": "ks",
        "severity": "warning",
        "team": "ml",
    }
    assert dict(model.labels)["alertname"] == MODEL_ALERT
    assert dict(model.labels)["severity"] == "critical"
    assert "feature" not in dict(model.labels)
    annotations = dict(feature.annotations)
    assert annotations["runbook_url"] == "https://runbooks/drift"
    assert annotations["window_rows"] == "0-99"
    assert annotations["reference_id"] == "ref"
    assert "ks statistic 0.9" in annotations["summary"]
    prediction = book.observe(Observation("@prediction", "ks", True, 0.9, 0.1, _evaluation(99)))
    assert prediction is not None
    assert prediction.severity == "critical"


def test_reserved_labels_are_refused() -> None:
    with pytest.raises(ValueError, match="set by monitord"):
        AlertSettings(labels={"severity": "page"})


def test_stationary_then_drift_then_recovery_fires_and_resolves_each_label_set_once(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(17)
    rows = rng.normal(size=(16_000, 3))
    rows[8_000:12_000, 0] += 1.0  # drift of x, then back to normal
    path = tmp_path / "traffic.csv"
    path.write_text("x,y,z\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in rows))
    config = parse_config({"detection": {"warmup_events": 4000, "window_size": 1000}})
    out = io.BytesIO()
    replay(config, path, out, model="m", prediction_column=None)
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    alerts = [a for a in alerts if a["kind"] == "alert"]
    assert alerts, "the drift was not detected"
    assert all(a["row"] >= 8_000 for a in alerts), "an alert on the stationary stretch"
    per_label_set = Counter((a["feature"], a["detector"], a["status"]) for a in alerts)
    label_sets = {(f, d) for f, d, _ in per_label_set}
    assert ("x", "ks") in label_sets
    assert all(f in ("x", "") for f, _ in label_sets), "an unchanged column alerted"
    for feature, detector in label_sets:
        assert per_label_set[(feature, detector, "firing")] == 1
        assert per_label_set[(feature, detector, "resolved")] == 1
    drift = [a for a in alerts if a["detector"] != CHANGE_DETECTOR]
    assert max(a["row"] for a in drift if a["status"] == "firing") < 12_000
    assert min(a["row"] for a in alerts if a["status"] == "resolved") >= 12_000
    # The return to normal is itself a change against the regime the drift set up: one
    # change event, fired at the return and resolved once traffic is back at the reference.
    change = [(a["status"], a["row"]) for a in alerts if a["detector"] == CHANGE_DETECTOR]
    assert [status for status, _ in change] == ["firing", "resolved"]
    assert 12_000 <= change[0][1] < change[1][1] <= 14_000


@pytest.mark.parametrize(
    "settings",
    [
        AlertSettings(),
        AlertSettings(fire_windows=2, fire_span=3, resolve_windows=2, cooldown_windows=2),
        AlertSettings(fire_windows=3, fire_span=5, resolve_windows=1, cooldown_windows=0),
    ],
)
def test_observe_clean_folds_a_clean_window_as_observe_does(settings: AlertSettings) -> None:
    # The policy's shortcut for clean observations: where it applies (it returns True) the
    # label set ends in the same state and nothing is sent, as through `observe`.
    rng = np.random.default_rng(4)
    full, shortcut = AlertBook(settings), AlertBook(settings)
    sent: tuple[list[str], list[str]] = ([], [])
    taken = 0
    for i in range(3000):
        feature = str(rng.choice(["x", "y", "z"]))
        drifted = bool(rng.random() < 0.3)
        statistic = float(rng.random())
        observation = Observation(feature, "ks", drifted, statistic, 0.5, _evaluation(i + 100))
        alert = full.observe(observation)
        sent[0].extend([] if alert is None else [alert.id])
        if not drifted and shortcut.observe_clean(feature, "ks"):
            taken += 1
            continue
        alert = shortcut.observe(observation)
        sent[1].extend([] if alert is None else [alert.id])
    assert sent[0] == sent[1]
    assert sent[0]  # the sequence does fire and resolve
    assert taken > 50  # the shortcut is exercised
    assert full.snapshot() == shortcut.snapshot()


def test_observe_clean_leaves_a_restored_drifted_history_to_observe() -> None:
    # A history that would fire on its own (settings lowered since it was checkpointed).
    book = AlertBook(AlertSettings(fire_windows=1, fire_span=2))
    book.restore([AlertRow("x", "ks", (True, True), False, 0, 0)])
    assert not book.observe_clean("x", "ks")
    assert book.snapshot() == [["x", "ks", [1, 1], False, 0, 0]]
