"""What the stream may make the daemon hold: columns learned over the whole warm-up, and
caps on models, versions and columns that refuse with a reason instead of growing."""

from __future__ import annotations

import logging
import time
import tracemalloc
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from detectors.profile import build_profile
from monitord.config import Config, parse_config
from monitord.daemon import Daemon
from monitord.events import PREDICTION, decode
from monitord.metrics import DaemonMetrics
from monitord.monitor import Monitor, MonitorState, MonitorUpdate
from monitord.outputs import KafkaPublisher

T0 = 1_790_000_000


def _config(max_time_ahead_s: float = 3600.0, **limits: Any) -> Config:
    return parse_config(
        {
            "detection": {"warmup_events": 1000, "window_size": 500},
            "events": {"max_time_ahead_s": max_time_ahead_s},
            "limits": limits,
        }
    )


def _record(offset: int, event: dict[str, Any]) -> Record:
    return Record("in", 0, offset, None, orjson.dumps(event), (T0 + offset) * 1000)


def _feed(monitor: Monitor, config: Config, batches: list[list[Record]]) -> list[MonitorUpdate]:
    """Each batch decoded as the daemon does (with the columns known so far) and monitored."""
    updates = []
    for records in batches:
        for group in decode(records, config.events, monitor.columns_for).groups.values():
            updates.append(monitor.update(group))
    return updates


def test_columns_are_learned_from_the_whole_warm_up_by_majority() -> None:
    """A sparse, mistyped first event no longer decides the columns: y, absent from it, is
    monitored (and its drift seen), and z stays numeric despite its one string."""
    config = _config()
    rng = np.random.default_rng(3)
    values = rng.normal(size=(4000, 3))
    values[2000:, 1] += 3.0  # y drifts by 3 sd after the warm-up
    first = [_record(0, {"model": "m", "features": {"x": 0.1, "z": "oops"}})]
    rest = [
        _record(i, {"model": "m", "features": {"x": v[0], "y": v[1], "z": v[2]}})
        for i, v in enumerate(values.tolist(), start=1)
    ]
    monitor = Monitor(config, lambda m, v: None)
    updates = _feed(monitor, config, [first, rest[:999], rest[999:]])
    columns = monitor.versions["m", "unversioned"].columns
    assert columns is not None
    assert set(columns.numeric) == {"x", "y", "z"}
    drifted = {
        name
        for update in updates
        for evaluation in update.evaluations
        for name, flag in zip(evaluation.features, evaluation.result.drifted, strict=True)
        if flag and evaluation.regime == 0
    }
    assert "y" in drifted
    assert "x" not in drifted
    assert "z" not in drifted
    # After the warm-up the value rule holds: a string in numeric z is wrong_type.
    late = [_record(5000, {"model": "m", "features": {"x": 0.0, "y": 0.0, "z": "oops"}})]
    (update,) = _feed(monitor, config, [late])
    assert [bad.reason for bad in update.bad] == ["wrong_type"]


def test_columns_not_monitored_are_reported_once_with_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config(max_columns_per_model=5, max_name_chars=50)
    long_name = "n" * 51
    warmup = [
        _record(
            i,
            {
                "model": "m",
                "features": {
                    "a": 1.0 * i,
                    "b": "x" if i % 2 else "y",
                    PREDICTION: 3.0,  # the prediction's name: not a feature's
                    long_name: 1.0,
                    "nulls": None,
                    "c": float(i % 7),
                    "d": 2.0,  # the sixth column (the prediction first): past the cap
                },
                "prediction": 0.5,
            },
        )
        for i in range(1000)
    ]
    after = [
        _record(1000 + i, {"model": "m", "features": {"a": 1.0, "b": "x", "c": 1.0, "late": 2}})
        for i in range(10)
    ]
    monitor = Monitor(config, lambda m, v: None)
    with caplog.at_level(logging.WARNING, logger="monitord.learning"):
        _feed(monitor, config, [warmup[:10], warmup[10:], after, after])
    version = monitor.versions["m", "unversioned"]
    status = version.columns_status()
    assert version.columns is not None
    assert version.columns.numeric == ("a", "c", PREDICTION)
    assert version.columns.categorical == ("b",)
    assert (status["numeric"], status["categorical"]) == (3, 1)
    assert status["not_monitored"] == {
        PREDICTION: "reserved_name",
        long_name: "name_too_long",
        "d": "column_limit",
        "nulls": "no_values",
        "late": "not_in_reference",
    }
    # One warning per name, however many events carry it.
    warned = [r.getMessage() for r in caplog.records if "is not monitored" in r.getMessage()]
    assert len(warned) == 5


def test_a_column_without_values_in_the_warm_up_is_reported() -> None:
    config = _config()
    events = [
        _record(i, {"model": "m", "features": {"a": float(i), "empty": None}}) for i in range(1000)
    ]
    monitor = Monitor(config, lambda m, v: None)
    _feed(monitor, config, [events])
    status = monitor.versions["m", "unversioned"].columns_status()
    assert monitor.versions["m", "unversioned"].profile.numeric_names == ("a",)  # type: ignore[union-attr]
    assert status["not_monitored"] == {PREDICTION: "no_values", "empty": "no_values"}


def _daemon(config: Config, records: list[Record]) -> tuple[Daemon, MemorySink, DaemonMetrics]:
    sink, metrics = MemorySink(), DaemonMetrics()
    daemon = Daemon(
        config,
        MemorySource(records),
        sink,
        [KafkaPublisher(sink, "alerts", "retrain")],
        lambda m, v: None,
        metrics=metrics,
    )
    return daemon, sink, metrics


def test_models_past_the_cap_are_dead_lettered_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config(max_models=2)
    records = [_record(i, {"model": f"m{i % 5}", "features": {"x": float(i)}}) for i in range(500)]
    daemon, sink, metrics = _daemon(config, records)
    with caplog.at_level(logging.WARNING, logger="monitord.monitor"):
        daemon.drain()
    dead = sink.messages("monitord.dead-letter")
    assert len(dead) == 300  # models m2, m3 and m4: every one of their events
    assert {dict(m.headers)["monitord.error.reason"] for m in dead} == {b"model_limit"}
    assert daemon.stats.bad_records == {"model_limit": 300}
    assert sorted(m for m, _ in daemon.monitor.versions) == ["m0", "m1"]
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 3  # once per refused model, not per event
    exposition = metrics.exposition().decode()
    assert 'monitord_bad_records_total{reason="model_limit"} 300.0' in exposition
    assert 'model="m2"' not in exposition  # refused models make no series


def test_a_version_idle_long_enough_is_retired_for_a_new_one() -> None:
    config = _config(max_versions_per_model=2, retire_idle_s=3600, max_time_ahead_s=60)

    def events(version: str, start: int, count: int, at: int) -> list[Record]:
        return [
            Record(
                "in",
                0,
                start + i,
                None,
                orjson.dumps(
                    {
                        "model": "m",
                        "model_version": version,
                        "timestamp": at + i,
                        "features": {"x": float(i % 10)},
                    }
                ),
                0,
            )
            for i in range(count)
        ]

    records = [
        *events("1", 0, 100, T0),  # v1 goes idle at T0 + 100 s
        *events("2", 100, 100, T0 + 3000),
        *events("3", 200, 100, T0 + 3800),  # v1 idle 3,700 s: retired for v3
        *events("4", 300, 100, T0 + 3900),  # v2 idle 800 s, v3 live: v4 refused
    ]
    daemon, sink, _ = _daemon(config, records)
    daemon.drain()
    assert sorted(daemon.monitor.versions) == [("m", "2"), ("m", "3")]
    dead = sink.messages("monitord.dead-letter")
    assert len(dead) == 100
    assert {dict(m.headers)["monitord.error.reason"] for m in dead} == {b"version_limit"}
    assert set(daemon.status()["models"]["m"]) == {"2", "3"}  # type: ignore[index]


def test_a_forty_thousand_column_event_costs_little() -> None:
    """About 1 MB of names in one event once made a new model learn 40,000 columns (3 GB
    and more): now it learns at most max_columns_per_model of them."""
    config = _config()
    wide = {"model": "m", "features": {f"c{j}": 1.0 for j in range(40_000)}}
    records = [Record("in", 0, 0, None, orjson.dumps(wide), T0 * 1000)] + [
        _record(i, {"model": "m", "features": {"c0": float(i)}}) for i in range(1, 2000)
    ]
    monitor = Monitor(config, lambda m, v: None)
    tracemalloc.start()
    try:
        _feed(monitor, config, [records[:1000], records[1000:]])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    version = monitor.versions["m", "unversioned"]
    assert version.columns is not None
    assert len(version.columns.numeric) <= config.limits.max_columns_per_model
    assert version.unmonitored.count > 0
    assert peak < 200 * 2**20


@pytest.mark.parametrize("cut", [0, 1, 400, 999])
def test_a_warm_up_checkpointed_midway_learns_the_same_reference(cut: int) -> None:
    """Columns and rows learned so far survive a checkpoint: the reference is the one an
    uninterrupted warm-up builds."""
    config = _config()
    rng = np.random.default_rng(8)
    events = [
        _record(
            i,
            {
                "model": "m",
                "features": {"x": float(v), "c": "ab"[i % 2], **({"late": 1.0} if i > 500 else {})},
                "prediction": "yes" if v > 0 else "no",
            },
        )
        for i, v in enumerate(rng.normal(size=1200).tolist())
    ]
    whole = Monitor(config, lambda m, v: None)
    _feed(whole, config, [events])
    expected = whole.versions["m", "unversioned"].profile
    assert expected is not None

    before = Monitor(config, lambda m, v: None)
    _feed(before, config, [events[:cut]] if cut else [])
    after = Monitor(config, lambda m, v: None)
    if cut:
        meta, arrays, captured = before.snapshot(("m", "unversioned"))
        assert captured == []
        meta = MonitorState.load(orjson.loads(orjson.dumps(meta.dump())), "checkpoint")
        owner = events[0].topic_partition
        after.restore(owner, meta, arrays, lambda profile_id: pytest.fail("none captured"))
    _feed(after, config, [events[cut:]])
    profile = after.versions["m", "unversioned"].profile
    assert profile is not None
    assert profile.profile_id == expected.profile_id
    assert profile.numeric_names == ("x", "late")
    assert profile.categorical_names == ("c", PREDICTION)


def test_a_format_1_warm_up_capture_is_restored() -> None:
    """Checkpoints written before columns were learned over the warm-up hold fixed columns
    and rows captured for them: the warm-up goes on from there."""
    config = _config()
    rng = np.random.default_rng(9)
    values = rng.normal(size=1000).tolist()
    events = [
        _record(i, {"model": "m", "features": {"x": v, "c": "ab"[i % 2]}})
        for i, v in enumerate(values)
    ]
    whole = Monitor(config, lambda m, v: None)
    _feed(whole, config, [events])
    expected = whole.versions["m", "unversioned"].profile
    assert expected is not None
    meta = {
        "model": "m",
        "version": "unversioned",
        "warmup_rows": 400,
        "columns": [["x"], ["c"]],
        "profile_id": None,
        "profile_from_file": False,
    }
    arrays = {
        "warmup/numeric": np.array(values[:400]).reshape(400, 1),
        "warmup/categorical/text": np.array([["ab"[i % 2]] for i in range(400)]),
        "warmup/categorical/missing": np.zeros((400, 1), dtype=bool),
    }
    restored = Monitor(config, lambda m, v: None)
    restored.restore(
        events[0].topic_partition,
        MonitorState.load(meta, "format 1"),
        arrays,
        lambda profile_id: pytest.fail("none captured"),
    )
    _feed(restored, config, [events[400:]])
    profile = restored.versions["m", "unversioned"].profile
    assert profile is not None
    assert profile.profile_id == expected.profile_id


def test_a_profiles_columns_never_seen_and_names_it_lacks_are_reported() -> None:
    config = _config()
    rng = np.random.default_rng(10)
    profile = build_profile("m", "1", ["x", "y"], rng.normal(size=(1000, 2)))
    events = [
        _record(i, {"model": "m", "model_version": "1", "features": {"x": v, "extra": 1}})
        for i, v in enumerate(rng.normal(size=600).tolist())
    ]
    monitor = Monitor(config, lambda m, v: profile)
    _feed(monitor, config, [events[:300], events[300:]])
    status = monitor.versions["m", "1"].columns_status()
    assert status["never_seen"] == ["y"]
    assert status["not_monitored"] == {"extra": "not_in_reference"}


def test_model_and_version_names_past_the_cap_are_dead_lettered_unlogged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config(max_name_chars=20)
    long_model, long_version = "m" * 21, "v" * 21
    records = [
        _record(0, {"model": long_model, "features": {"x": 1.0}}),
        _record(1, {"model": "m", "model_version": long_version, "features": {"x": 1.0}}),
        _record(2, {"model": "m" * 20, "model_version": "v" * 20, "features": {"x": 1.0}}),
    ]
    daemon, sink, _ = _daemon(config, records)
    with caplog.at_level(logging.DEBUG):
        daemon.drain()
    dead = sink.messages("monitord.dead-letter")
    assert [dict(m.headers)["monitord.error.reason"] for m in dead] == [b"name_too_long"] * 2
    assert list(daemon.monitor.versions) == [("m" * 20, "v" * 20)]
    assert long_model not in caplog.text
    assert long_version not in caplog.text


def test_numbers_beyond_the_magnitude_bound_are_wrong_in_and_after_the_warm_up() -> None:
    """1.7e308 made a reference's variance infinite (and blinded ADWIN on the column);
    numbers beyond 1e150 now break the value rule, whether the version is learning or not."""
    config = _config()
    rng = np.random.default_rng(12)
    values = rng.normal(size=1200).tolist()
    huge = {10: 1.7e308, 500: -1e151, 1100: 1.7e308}
    events = [
        _record(i, {"model": "m", "features": {"x": huge.get(i, v)}, "prediction": 1e150})
        for i, v in enumerate(values)
    ]
    monitor = Monitor(config, lambda m, v: None)
    updates = _feed(monitor, config, [events[:600], events[600:]])
    bad = {b.record.offset: b.detail for u in updates for b in u.bad}
    assert set(bad) == set(huge)
    assert "'x' holds 1.7e+308" in bad[10]
    profile = monitor.versions["m", "unversioned"].profile
    assert profile is not None
    assert np.isfinite(profile.numeric_mean).all()
    assert np.isfinite(profile.numeric_std).all()


def test_a_number_first_does_not_lock_a_categorical_column() -> None:
    """A refused string still votes: one number before a categorical column's strings
    refuses at most one of them, and the warm-up ends with the column categorical."""
    config = _config()
    events = [_record(0, {"model": "m", "features": {"country": 0}})] + [
        _record(i, {"model": "m", "features": {"country": "DE" if i % 3 else "FR"}})
        for i in range(1, 2000)
    ]
    monitor = Monitor(config, lambda m, v: None)
    updates = _feed(monitor, config, [events])
    assert sum(len(u.bad) for u in updates) == 1
    version = monitor.versions["m", "unversioned"]
    assert not version.warming_up
    assert version.columns is not None
    assert version.columns.categorical == ("country",)


def test_a_future_clock_cannot_retire_live_versions() -> None:
    """Event and record times from year 9999 are clamped to the wall clock (plus what is
    believed ahead) before they count for idleness."""
    config = _config(max_versions_per_model=2, retire_idle_s=86_400, max_time_ahead_s=60)
    now_s = int(time.time())

    def event(offset: int, version: str, at: float | str, record_ms: int) -> Record:
        value = {"model": "m", "model_version": version, "timestamp": at, "features": {"x": 1}}
        return Record("in", 0, offset, None, orjson.dumps(value), record_ms)

    live = [event(i, str(1 + i % 2), now_s - 100 + i, (now_s - 100 + i) * 1000) for i in range(20)]
    attack = [
        event(20, "3", "9999-12-30T00:00:00Z", -1),  # no record time, event time in 9999
        event(21, "4", "9999-12-30T00:00:00Z", 253_402_000_000_000),  # both in year 9999
    ]
    monitor = Monitor(config, lambda m, v: None)
    updates = _feed(monitor, config, [live, attack])
    assert sorted(monitor.versions) == [("m", "1"), ("m", "2")]
    assert [b.reason for u in updates for b in u.bad] == ["version_limit", "version_limit"]


def test_admission_does_not_depend_on_where_batches_are_cut() -> None:
    config = _config(max_versions_per_model=1, retire_idle_s=3600, max_time_ahead_s=60)
    events = [
        Record(
            "in",
            0,
            i,
            None,
            orjson.dumps(
                {
                    "model": "m",
                    "model_version": "1" if i < 200 else "2",
                    "timestamp": T0 + (i if i < 200 else 199 + (i - 199) * 60),
                    "features": {"x": float(i % 17)},
                }
            ),
            0,
        )
        for i in range(1400)
    ]
    outcomes = []
    for size in (1, 7, 100, 1400):
        monitor = Monitor(config, lambda m, v: None)
        updates = _feed(monitor, config, [events[i : i + size] for i in range(0, 1400, size)])
        refused = sorted(b.record.offset for u in updates for b in u.bad)
        profile = monitor.versions["m", "2"].profile
        outcomes.append((refused, None if profile is None else profile.profile_id))
    assert outcomes[0][0] == list(range(200, 259))  # v1 idle an hour from row 259 on
    assert all(outcome == outcomes[0] for outcome in outcomes)


def test_unmonitored_names_are_logged_and_counted_once_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config()
    names = ["q" * 200, *(f"extra{j}" for j in range(150))]
    warmup = [_record(i, {"model": "m", "features": {"x": float(i)}}) for i in range(1000)]
    later = [
        _record(1000 + i, {"model": "m", "features": {"x": 1.0, **dict.fromkeys(names, 1)}})
        for i in range(50)
    ]
    monitor = Monitor(config, lambda m, v: None)
    with caplog.at_level(logging.WARNING, logger="monitord.learning"):
        _feed(monitor, config, [warmup, *[[record] for record in later]])
    unmonitored = monitor.versions["m", "unversioned"].unmonitored
    warned = [r for r in caplog.records if "is not monitored" in r.getMessage()]
    assert len(warned) == 100  # the first MAX_REPORTED names, once each
    # Once each: the 128 names a group reports (MAX_EXTRA_NAMES) and the prediction,
    # which had no value in the warm-up.
    assert unmonitored.count == 129


def test_a_warm_up_checkpoint_stores_each_distinct_text_once_and_exactly() -> None:
    """One 256-character category once made every cell of a warm-up's text array 256
    characters wide (about 1 GB at 1,000 x 1,000), and numpy's strings dropped trailing
    NULs, so a restored warm-up built another reference."""
    config = _config()
    texts = ["a", "a\x00", "\x00", "z" * 256]
    events = [
        _record(
            i,
            {
                "model": "m",
                "features": {**{f"f{j}": float(j + i) for j in range(200)}, "c": texts[i % 4]},
            },
        )
        for i in range(1000)
    ]
    whole = Monitor(config, lambda m, v: None)
    _feed(whole, config, [events])
    before = Monitor(config, lambda m, v: None)
    _feed(before, config, [events[:999]])
    state, arrays, _ = before.snapshot(("m", "unversioned"))
    assert sum(array.nbytes for array in arrays.values()) < 4 * 2**20  # ~1.6 MB of numbers
    after = Monitor(config, lambda m, v: None)
    stored = MonitorState.load(orjson.loads(orjson.dumps(state.dump())), "checkpoint")
    after.restore(events[0].topic_partition, stored, arrays, lambda p: pytest.fail("none"))
    _feed(after, config, [events[999:]])
    expected, got = (
        whole.versions["m", "unversioned"].profile,
        after.versions["m", "unversioned"].profile,
    )
    assert expected is not None
    assert got is not None
    assert got.profile_id == expected.profile_id


def test_distinct_categories_past_the_cap_count_as_unseen_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = _config(max_categories_per_column=10)
    events = [
        _record(i, {"model": "m", "features": {"x": float(i), "id": f"u{i % 50}"}})
        for i in range(1200)
    ]
    monitor = Monitor(config, lambda m, v: None)
    with caplog.at_level(logging.WARNING, logger="monitord.monitor"):
        _feed(monitor, config, [events[:600], events[600:]])
    profile = monitor.versions["m", "unversioned"].profile
    assert profile is not None
    assert len(profile.categories[0]) == 10
    warned = [r.getMessage() for r in caplog.records if "distinct categories" in r.getMessage()]
    assert len(warned) == 1
    assert "'id' has 50 distinct categories" in warned[0]
