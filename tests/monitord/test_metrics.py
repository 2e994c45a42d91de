from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from prometheus_client.metrics_core import Metric

from connectors.http import ReceiverError
from connectors.outbox import Dispatcher, Outbox
from connectors.stream import Record
from detectors.detection import Detection
from detectors.profile import build_profile
from monitord.alerts import Alert
from monitord.config import ConfigError, DetectionSettings, parse_config
from monitord.metrics import DaemonMetrics, check_cardinality, feature_series
from monitord.monitor import Evaluation, OffsetRange
from monitord.reference import save_profile
from monitord.retrain import RetrainTrigger
from monitord.suite import DetectorSuite

RECORD = Record("events", 0, 41, b"m", b"{}", 0)
OFFSETS = (OffsetRange("events", 0, 0, 41),)


def evaluation(model: str, detector: str, features: dict[str, tuple[float, float]]) -> Evaluation:
    statistic = np.array([s for s, _ in features.values()])
    threshold = np.array([t for _, t in features.values()])
    result = Detection(
        detector=detector,
        first_row=0,
        row=99,
        statistic=statistic,
        threshold=threshold,
        drifted=statistic > threshold,
        p_value=None,
        n_observed=np.full(len(features), 100, dtype=np.int64),
    )
    return Evaluation(model, "1", "p1", tuple(features), result, OFFSETS, RECORD, 0.0, 1.0)


def alert(model: str, status: Literal["firing", "resolved"], feature: str = "age") -> Alert:
    return Alert(
        id=f"{model}/{feature}/{status}",
        status=status,
        severity="warning",
        model=model,
        version="1",
        feature=feature,
        detector="ks",
        statistic=0.5,
        threshold=0.2,
        profile_id="p1",
        first_row=0,
        row=99,
        offset=OFFSETS[0],
        offsets=OFFSETS,
        start_time=0.0,
        end_time=1.0,
        labels=(("model", model),),
        annotations=(),
    )


def trigger(model: str) -> RetrainTrigger:
    return RetrainTrigger(
        id=f"{model}/retrain",
        reason="drift",
        model=model,
        version="1",
        drifted_features=("age",),
        statistics=(("age", "ks", 0.5, 0.2),),
        feature_share=0.5,
        windows=2,
        profile_id="p1",
        first_row=0,
        row=99,
        offset=OFFSETS[0],
        offsets=OFFSETS,
        start_time=0.0,
        end_time=1.0,
        config_hash="c",
    )


def samples(exposition: bytes) -> list[str]:
    """monitord's own sample lines (no HELP/TYPE comments, no process_* or python_*)."""
    return [line for line in exposition.decode().splitlines() if line.startswith("monitord_")]


def test_exposition_of_known_inputs() -> None:
    metrics = DaemonMetrics(version="1.2.3", clock=lambda: 1_800_000_000.0)
    metrics.batch(1000, 0.02)
    metrics.batch(500, 0.3)
    metrics.batch(10, 120.0)
    metrics.bad_records({"invalid_json": 2, "odd\nreason": 1})
    metrics.bad_records({"invalid_json": 1})
    metrics.model_events("fraud", "1", 900, 1_700_000_100.5)
    metrics.model_events("fraud", "1", 100, 1_700_000_050.0)  # older: the newest time stays
    metrics.model_events('say "hi"', "1", 3, float("nan"))
    metrics.evaluations(
        [
            evaluation("fraud", "ks", {"age": (0.25, 0.125), "amount": (0.0625, 0.125)}),
            evaluation("fraud", "adwin", {"@prediction": (1.5, float("nan"))}),
        ]
    )
    metrics.evaluations([evaluation("fraud", "ks", {"age": (0.5, 0.125)})])
    metrics.outputs(
        [alert("fraud", "firing"), alert("fraud", "firing", "amount"), trigger("fraud")]
    )
    metrics.outputs([alert("fraud", "resolved")])
    metrics.lag({("events", 1): 7, ("events", 0): 0})
    metrics.offset_reset("events", 1, "beyond_end")
    metrics.offset_reset("events", 1, "beyond_end")
    metrics.offset_reset("events", 0, "before_start")
    metrics.checkpointed(1_800_000_001.0)
    metrics.heartbeat(1_800_000_002.5)
    metrics.ready(True)
    metrics.labels({("fraud", "joined"): 3, ("", "orphan"): 1}, [5.0, 30.0, 7200.0], 12, 4)
    metrics.labels({("fraud", "joined"): 1}, [float("nan")], 10, 0)
    python = platform.python_version()
    assert samples(metrics.exposition()) == [
        f'monitord_build_info{{python="{python}",version="1.2.3"}} 1.0',
        "monitord_events_consumed_total 1510.0",
        'monitord_model_events_total{model="fraud",model_version="1"} 1000.0',
        'monitord_model_events_total{model="say \\"hi\\"",model_version="1"} 3.0',
        'monitord_bad_records_total{reason="empty"} 0.0',
        'monitord_bad_records_total{reason="invalid_json"} 3.0',
        'monitord_bad_records_total{reason="missing_event_id"} 0.0',
        'monitord_bad_records_total{reason="missing_features"} 0.0',
        'monitord_bad_records_total{reason="missing_label"} 0.0',
        'monitord_bad_records_total{reason="missing_model"} 0.0',
        'monitord_bad_records_total{reason="model_limit"} 0.0',
        'monitord_bad_records_total{reason="name_too_long"} 0.0',
        'monitord_bad_records_total{reason="not_an_object"} 0.0',
        'monitord_bad_records_total{reason="odd\\nreason"} 1.0',
        'monitord_bad_records_total{reason="oversize"} 0.0',
        'monitord_bad_records_total{reason="version_limit"} 0.0',
        'monitord_bad_records_total{reason="wrong_type"} 0.0',
        'monitord_consumer_lag_records{partition="0",topic="events"} 0.0',
        'monitord_consumer_lag_records{partition="1",topic="events"} 7.0',
        'monitord_offset_resets_total{partition="0",reason="before_start",topic="events"} 1.0',
        'monitord_offset_resets_total{partition="1",reason="beyond_end",topic="events"} 2.0',
        'monitord_batch_duration_seconds_bucket{le="0.005"} 0.0',
        'monitord_batch_duration_seconds_bucket{le="0.01"} 0.0',
        'monitord_batch_duration_seconds_bucket{le="0.025"} 1.0',
        'monitord_batch_duration_seconds_bucket{le="0.05"} 1.0',
        'monitord_batch_duration_seconds_bucket{le="0.1"} 1.0',
        'monitord_batch_duration_seconds_bucket{le="0.25"} 1.0',
        'monitord_batch_duration_seconds_bucket{le="0.5"} 2.0',
        'monitord_batch_duration_seconds_bucket{le="1.0"} 2.0',
        'monitord_batch_duration_seconds_bucket{le="2.5"} 2.0',
        'monitord_batch_duration_seconds_bucket{le="5.0"} 2.0',
        'monitord_batch_duration_seconds_bucket{le="10.0"} 2.0',
        'monitord_batch_duration_seconds_bucket{le="30.0"} 2.0',
        'monitord_batch_duration_seconds_bucket{le="60.0"} 2.0',
        'monitord_batch_duration_seconds_bucket{le="+Inf"} 3.0',
        "monitord_batch_duration_seconds_count 3.0",
        "monitord_batch_duration_seconds_sum 120.32",
        'monitord_last_event_timestamp_seconds{model="fraud",model_version="1"} 1.7000001005e+09',
        'monitord_model_last_seen_timestamp_seconds{model="fraud",model_version="1"} 1.8e+09',
        "monitord_model_last_seen_timestamp_seconds{"
        'model="say \\"hi\\"",model_version="1"} 1.8e+09',
        'monitord_drift_statistic{detector="adwin",feature="@prediction",'
        'model="fraud",model_version="1"} 1.5',
        'monitord_drift_statistic{detector="ks",feature="age",model="fraud",model_version="1"} 0.5',
        'monitord_drift_statistic{detector="ks",feature="amount",'
        'model="fraud",model_version="1"} 0.0625',
        'monitord_drift_threshold{detector="ks",feature="age",'
        'model="fraud",model_version="1"} 0.125',
        'monitord_drift_threshold{detector="ks",feature="amount",'
        'model="fraud",model_version="1"} 0.125',
        'monitord_alert_transitions_total{model="fraud",model_version="1",status="firing"} 2.0',
        'monitord_alert_transitions_total{model="fraud",model_version="1",status="resolved"} 1.0',
        'monitord_alerts_firing{model="fraud",model_version="1"} 1.0',
        'monitord_alerts_firing{model="say \\"hi\\"",model_version="1"} 0.0',
        'monitord_retrain_triggers_total{model="fraud",model_version="1",reason="drift"} 1.0',
        "monitord_checkpoint_last_success_timestamp_seconds 1.800000001e+09",
        "monitord_loop_heartbeat_timestamp_seconds 1.8000000025e+09",
        "monitord_ready 1.0",
        'monitord_labels_total{model="",outcome="orphan"} 1.0',
        'monitord_labels_total{model="fraud",outcome="joined"} 4.0',
        'monitord_label_delay_seconds_bucket{le="1.0"} 0.0',
        'monitord_label_delay_seconds_bucket{le="10.0"} 1.0',
        'monitord_label_delay_seconds_bucket{le="60.0"} 2.0',
        'monitord_label_delay_seconds_bucket{le="300.0"} 2.0',
        'monitord_label_delay_seconds_bucket{le="900.0"} 2.0',
        'monitord_label_delay_seconds_bucket{le="3600.0"} 2.0',
        'monitord_label_delay_seconds_bucket{le="14400.0"} 3.0',
        'monitord_label_delay_seconds_bucket{le="86400.0"} 3.0',
        'monitord_label_delay_seconds_bucket{le="604800.0"} 3.0',
        'monitord_label_delay_seconds_bucket{le="+Inf"} 3.0',
        "monitord_label_delay_seconds_count 3.0",
        "monitord_label_delay_seconds_sum 7235.0",
        "monitord_label_join_pending 10.0",
        "monitord_label_records_held 0.0",
        "monitord_metric_series_dropped_total 0.0",
    ]


def test_every_family_has_help_and_type_even_before_data() -> None:
    text = DaemonMetrics(version="1.2.3").exposition().decode()
    types = [line.split()[2:] for line in text.splitlines() if line.startswith("# TYPE monitord")]
    assert types == [
        ["monitord_build_info", "gauge"],
        ["monitord_events_consumed_total", "counter"],
        ["monitord_model_events_total", "counter"],
        ["monitord_late_events_total", "counter"],
        ["monitord_untimed_events_total", "counter"],
        ["monitord_columns_not_monitored", "gauge"],
        ["monitord_bad_records_total", "counter"],
        ["monitord_consumer_lag_records", "gauge"],
        ["monitord_offset_resets_total", "counter"],
        ["monitord_batch_duration_seconds", "histogram"],
        ["monitord_last_event_timestamp_seconds", "gauge"],
        ["monitord_model_last_seen_timestamp_seconds", "gauge"],
        ["monitord_drift_statistic", "gauge"],
        ["monitord_drift_threshold", "gauge"],
        ["monitord_alert_transitions_total", "counter"],
        ["monitord_alerts_firing", "gauge"],
        ["monitord_retrain_triggers_total", "counter"],
        ["monitord_checkpoint_last_success_timestamp_seconds", "gauge"],
        ["monitord_loop_heartbeat_timestamp_seconds", "gauge"],
        ["monitord_ready", "gauge"],
        ["monitord_labels_total", "counter"],
        ["monitord_label_delay_seconds", "histogram"],
        ["monitord_label_join_pending", "gauge"],
        ["monitord_label_records_held", "gauge"],
        ["monitord_model_performance", "gauge"],
        ["monitord_metric_series_dropped_total", "counter"],
    ]
    assert "monitord_ready 0.0" in samples(text.encode())
    # Timestamps are absent, not 0 (1970), before their first report.
    assert not [s for s in samples(text.encode()) if "timestamp" in s]


def test_lag_replaces_the_previous_assignment() -> None:
    metrics = DaemonMetrics()
    metrics.lag({("events", 0): 5, ("events", 1): 6})
    metrics.lag({("events", 1): 2})  # partition 0 was revoked
    lag = [s for s in samples(metrics.exposition()) if s.startswith("monitord_consumer_lag")]
    assert lag == ['monitord_consumer_lag_records{partition="1",topic="events"} 2.0']


def test_cap_refuses_new_feature_series_and_counts_them() -> None:
    metrics = DaemonMetrics(max_feature_series=3)
    metrics.evaluations(
        [
            evaluation("m", "ks", {"a": (0.1, 0.5), "b": (0.2, 0.5)}),
            evaluation("m", "psi", {"a": (0.3, 0.5), "b": (0.4, 0.5)}),
        ]
    )
    metrics.evaluations([evaluation("m", "ks", {"a": (0.9, 0.5), "c": (0.9, 0.5)})])
    drift = [s for s in samples(metrics.exposition()) if s.startswith("monitord_drift_stat")]
    assert drift == [
        'monitord_drift_statistic{detector="ks",feature="a",model="m",model_version="1"} 0.9',
        'monitord_drift_statistic{detector="psi",feature="a",model="m",model_version="1"} 0.3',
        'monitord_drift_statistic{detector="ks",feature="b",model="m",model_version="1"} 0.2',
    ]
    assert "monitord_metric_series_dropped_total 2.0" in samples(metrics.exposition())


def test_restore_firing_replaces_the_firing_label_sets() -> None:
    metrics = DaemonMetrics()
    metrics.outputs([alert("a", "firing")])
    metrics.restore_firing([("b", "1", "x", "ks"), ("b", "1", "", "any"), ("b", "2", "x", "ks")])
    metrics.outputs([alert("b", "resolved", "x")])  # version 1's x resolves; version 2's fires
    firing = [s for s in samples(metrics.exposition()) if s.startswith("monitord_alerts_firing")]
    assert firing == [
        'monitord_alerts_firing{model="b",model_version="1"} 1.0',
        'monitord_alerts_firing{model="b",model_version="2"} 1.0',
    ]


def _versioned(model: str, version: str, feature: str, status: str) -> Alert:
    return dataclasses.replace(alert(model, status, feature), version=version)  # type: ignore[arg-type]


def test_two_live_versions_keep_series_of_their_own_until_one_is_retired() -> None:
    metrics = DaemonMetrics(clock=lambda: 1_800_000_000.0)
    for version, statistic in (("1", 0.1), ("2", 0.7)):  # a canary beside the stable one
        metrics.model_events("fraud", version, 100, 1_700_000_000.0)
        metrics.columns_not_monitored("fraud", version, 1)
        metrics.evaluations(
            [_version_of(evaluation("fraud", "ks", {"age": (statistic, 0.5)}), version)]
        )
    metrics.outputs(
        [
            _versioned("fraud", "2", "age", "firing"),
            dataclasses.replace(trigger("fraud"), version="2"),
        ]
    )
    lines = [s for s in samples(metrics.exposition()) if 'model="fraud"' in s]
    for version in ("1", "2"):
        assert (
            f'monitord_model_events_total{{model="fraud",model_version="{version}"}} 100.0' in lines
        )
    assert [s for s in lines if s.startswith("monitord_drift_statistic")] == [
        'monitord_drift_statistic{detector="ks",feature="age",model="fraud",model_version="1"} 0.1',
        'monitord_drift_statistic{detector="ks",feature="age",model="fraud",model_version="2"} 0.7',
    ]
    assert [s for s in lines if s.startswith("monitord_alerts_firing")] == [
        'monitord_alerts_firing{model="fraud",model_version="1"} 0.0',
        'monitord_alerts_firing{model="fraud",model_version="2"} 1.0',
    ]
    assert (
        'monitord_retrain_triggers_total{model="fraud",model_version="2",reason="drift"} 1.0'
        in lines
    )

    metrics.retired([("fraud", "1")])  # limits.max_versions_per_model retired version 1
    left = [s for s in samples(metrics.exposition()) if 'model="fraud"' in s]
    assert left
    assert all('model_version="2"' in s for s in left), left
    # The cap counts version label sets: a retired version's series made room again.
    capped = DaemonMetrics(max_feature_series=1)
    capped.evaluations([_version_of(evaluation("m", "ks", {"a": (0.1, 0.5)}), "1")])
    capped.evaluations([_version_of(evaluation("m", "ks", {"a": (0.2, 0.5)}), "2")])
    assert "monitord_metric_series_dropped_total 1.0" in samples(capped.exposition())
    capped.retired([("m", "1")])
    capped.evaluations([_version_of(evaluation("m", "ks", {"a": (0.3, 0.5)}), "2")])
    assert [s for s in samples(capped.exposition()) if s.startswith("monitord_drift_stat")] == [
        'monitord_drift_statistic{detector="ks",feature="a",model="m",model_version="2"} 0.3'
    ]


def _version_of(evaluated: Evaluation, version: str) -> Evaluation:
    return dataclasses.replace(evaluated, version=version)


def test_process_and_python_collectors_are_exposed() -> None:
    text = DaemonMetrics().exposition().decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert {
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_collections_total",
    } <= names
    # A second registry gets its own collectors (no duplicate-registration error).
    assert "process_cpu_seconds_total" in DaemonMetrics().exposition().decode()


def test_construction_validates_the_cap() -> None:
    with pytest.raises(ValueError, match="max_feature_series"):
        DaemonMetrics(max_feature_series=0)


def _profile(tmp_path: Path, model: str, numeric: list[str]) -> Path:
    rng = np.random.default_rng(7)
    categories = np.array(["x", "y", "z"], dtype=object)
    profile = build_profile(
        model,
        "1",
        numeric,
        rng.normal(size=(500, len(numeric))),
        ["c"],
        rng.choice(categories, size=(500, 1)),
    )
    path = tmp_path / f"{model}@1.npz"
    save_profile(profile, path)
    return path


def test_feature_series_match_what_the_detector_suite_reports(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    profile = build_profile(
        "m",
        "1",
        ["a", "b", "@prediction"],
        rng.normal(size=(500, 3)),
        ["c"],
        rng.choice(np.array(["x", "y", "z"], dtype=object), size=(500, 1)),
    )
    settings = DetectionSettings(window_size=100, warmup_events=200)
    suite = DetectorSuite(profile, settings)
    # A mean shift half way, so ADWIN cuts too; an unseen category for the quality test.
    numeric = np.vstack([rng.normal(size=(300, 3)), rng.normal(loc=3.0, size=(300, 3))])
    categorical = rng.choice(np.array(["x", "q"], dtype=object), size=(600, 1))
    results = suite.update(numeric, categorical, np.arange(600.0))
    reported = {(feature, result.detector) for names, result in results for feature in names}
    assert len(reported) == 17
    assert feature_series(profile, settings) == reported


def test_check_cardinality_counts_configured_profiles(tmp_path: Path) -> None:
    path = _profile(tmp_path, "fraud", ["a", "b", "@prediction"])
    models = [{"name": "fraud", "profiles": {"1": str(path)}}]
    # 3 numeric x (ks, psi, missing, out_of_range) + 1 categorical x (chi2, psi, missing,
    # unseen) + ADWIN on the prediction = 17.
    assert check_cardinality(parse_config({"models": models})) == 17
    assert check_cardinality(parse_config({"models": models, "admin": {"max_feature_series": 17}}))
    # profile_dir adds the profiles found there; the same file counts once.
    _profile(tmp_path, "churn", ["x"])  # 4 + 4, no prediction column for ADWIN
    config = parse_config({"models": models, "profile_dir": str(tmp_path)})
    assert check_cardinality(config) == 25


def test_check_cardinality_names_the_key_when_exceeded(tmp_path: Path) -> None:
    path = _profile(tmp_path, "fraud", ["a", "b", "@prediction"])
    config = parse_config(
        {
            "models": [{"name": "fraud", "profiles": {"1": str(path)}}],
            "admin": {"max_feature_series": 16},
        }
    )
    with pytest.raises(ConfigError) as caught:
        check_cardinality(config)
    assert str(caught.value) == (
        "admin.max_feature_series: the configured reference profiles need 17 "
        "model/version/feature/detector series (fraud/1: 17), more than the cap of 16; raise "
        "admin.max_feature_series, or monitor fewer features or detectors"
    )


class _Receiver:
    """Our receiver protocol, answering from a script: None delivers, an error fails."""

    def __init__(self, answers: list[ReceiverError | None]) -> None:
        self.answers = answers

    def deliver(self, payload: bytes) -> None:
        answer = self.answers.pop(0)
        if answer is not None:
            raise answer


def delivery_lines(metrics: DaemonMetrics) -> list[str]:
    return [
        s
        for s in samples(metrics.exposition())
        if s.startswith(("monitord_deliveries", "monitord_outbox"))
    ]


def test_outbox_metrics_come_from_the_file_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, random=lambda: 0.5)
    down = ReceiverError("503", retriable=True, status=503)
    gone = ReceiverError("400", retriable=False, status=400)
    receivers = {"am": _Receiver([None, down, None, None]), "pd": _Receiver([gone])}
    dispatcher = Dispatcher(outbox, receivers)
    metrics = DaemonMetrics(outbox=path, receivers=["am", "pd", "slack"])
    for message in ("m1", "m2", "m3"):
        outbox.enqueue(message, "am", b"{}", now=0.0)
    outbox.enqueue("m1", "pd", b"{}", now=0.0)
    dispatcher.run_due(0.0)  # am: m1 delivered, m2 retry, m3 delivered; pd: m1 failed
    expected = [
        'monitord_deliveries_total{outcome="delivered",receiver="am"} 2.0',
        'monitord_deliveries_total{outcome="failed",receiver="am"} 0.0',
        'monitord_deliveries_total{outcome="retry",receiver="am"} 1.0',
        'monitord_deliveries_total{outcome="delivered",receiver="pd"} 0.0',
        'monitord_deliveries_total{outcome="failed",receiver="pd"} 1.0',
        'monitord_deliveries_total{outcome="retry",receiver="pd"} 0.0',
        'monitord_deliveries_total{outcome="delivered",receiver="slack"} 0.0',
        'monitord_deliveries_total{outcome="failed",receiver="slack"} 0.0',
        'monitord_deliveries_total{outcome="retry",receiver="slack"} 0.0',
        'monitord_outbox_pending_messages{receiver="am"} 1.0',
        'monitord_outbox_pending_messages{receiver="pd"} 0.0',
        'monitord_outbox_pending_messages{receiver="slack"} 0.0',
    ]
    assert delivery_lines(metrics) == expected
    assert delivery_lines(metrics) == expected  # a second scrape counts nothing twice

    dispatcher.run_due(100.0)  # m2 is delivered on its second attempt
    after = DaemonMetrics(outbox=path, receivers=["am", "pd", "slack"])  # a restart
    expected[0] = 'monitord_deliveries_total{outcome="delivered",receiver="am"} 3.0'
    expected[9] = 'monitord_outbox_pending_messages{receiver="am"} 0.0'
    assert delivery_lines(metrics) == expected
    assert delivery_lines(after) == expected
    outbox.close()


def test_outbox_metrics_before_the_file_exists(tmp_path: Path) -> None:
    metrics = DaemonMetrics(outbox=tmp_path / "outbox.sqlite", receivers=["am"])
    assert delivery_lines(metrics) == [
        'monitord_deliveries_total{outcome="delivered",receiver="am"} 0.0',
        'monitord_deliveries_total{outcome="failed",receiver="am"} 0.0',
        'monitord_deliveries_total{outcome="retry",receiver="am"} 0.0',
        'monitord_outbox_pending_messages{receiver="am"} 0.0',
    ]
    assert not (tmp_path / "outbox.sqlite").exists()  # reading never creates it


def test_a_scrape_builds_its_families_outside_the_loops_lock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop waits only for a copy of the numbers: at 1,000 models x 50 features the
    families took 320 ms under the lock (1 ms to copy). What the copy shows is the state at
    the scrape, however the loop moves on while the families are built."""
    metrics = DaemonMetrics(clock=lambda: 1_700_000_000.0)
    metrics.model_events("m", "1", 10, 1_699_999_999.0)
    built_unlocked: list[bool] = []
    families = DaemonMetrics._families

    def building(self: DaemonMetrics) -> list[Metric]:
        # The loop, meanwhile: it gets the lock at once (never blocks: a held lock fails).
        unlocked = metrics._lock.acquire(blocking=False)
        built_unlocked.append(unlocked)
        if unlocked:
            metrics._lock.release()
            metrics.model_events("m", "1", 5, 1_699_999_999.5)
        return families(self)

    monkeypatch.setattr(DaemonMetrics, "_families", building)
    text = metrics.exposition().decode()
    assert built_unlocked == [True]
    assert 'monitord_model_events_total{model="m",model_version="1"} 10.0' in text
    assert 'monitord_model_events_total{model="m",model_version="1"} 15.0' in (
        metrics.exposition().decode()
    )
