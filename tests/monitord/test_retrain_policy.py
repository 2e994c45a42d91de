"""The retrain policy: guards (cooldown, minimum events, daily cap), drift on the prediction,
cron schedules on a clock the test moves, manual requests, version switches, and every piece
of that state through a checkpoint.

Windows are built by hand (`window`): the real `Policy` decides over them, so each test
pins the exact windows that fire, are held back, or stay silent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record, TopicPartition
from detectors.detection import Detection
from monitord.alerts import stable_id
from monitord.audit import AuditLog, record_held
from monitord.checkpoint import Checkpoint, VersionState, decode, encode
from monitord.config import ConfigError, parse_config
from monitord.daemon import Daemon
from monitord.monitor import Evaluation, OffsetRange
from monitord.policy import Decisions, Output, Policy, PolicyState
from monitord.retrain import RetrainTrigger, Suppressed

COLUMNS = ("a", "b", "c", "@prediction")
T0 = datetime(2026, 11, 23, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC
SIZE = 100  # rows per window
WINDOW_S = 600.0  # event time per window
HOUR, DAY = 3600.0, 86400.0


def window(
    index: int,
    drifted: Sequence[str] = (),
    *,
    version: str = "1",
    columns: tuple[str, ...] = COLUMNS,
    model: str = "m",
) -> list[Evaluation]:
    """Window ``index`` of a version: rows ``index*100 .. index*100+99``, input offsets
    ``1000 + row``, event time 10 minutes per window from ``T0``; ``drifted`` columns have
    statistic 0.5 against a threshold of 0.1, the others 0.01."""
    first_row, row = index * SIZE, index * SIZE + SIZE - 1
    flags = np.array([c in drifted for c in columns])
    result = Detection(
        "ks",
        first_row,
        row,
        np.where(flags, 0.5, 0.01),
        np.full(len(columns), 0.1),
        flags,
        None,
        np.full(len(columns), SIZE),
    )
    record = Record("in", 0, 1000 + row, model.encode(), b"{}", 0)
    start = T0 + index * WINDOW_S
    offsets = (OffsetRange("in", 0, 1000 + first_row, 1000 + row),)
    return [
        Evaluation(model, version, "ref-1", columns, result, offsets, record, start, start + 599)
    ]


DRIFT = ("a", "b")  # share 0.5 of the four columns: material


class Recorder:
    """Collects suppressed decisions, as the audit log would."""

    def __init__(self) -> None:
        self.decisions: list[Suppressed] = []

    def record(self, decisions: list[Suppressed]) -> None:
        self.decisions += decisions


class RecordingPolicy:
    """The real `Policy` driven as the daemon drives it: `decide` and `due` give their
    outputs back and the requests held back to ``recorder`` (`monitord.audit.record_held`)."""

    def __init__(self, policy: Policy, recorder: Recorder | None = None) -> None:
        self.policy, self.recorder = policy, recorder
        self.retraining = policy.retraining

    def decide(self, evaluations: list[Evaluation]) -> list[Output]:
        return self._delivered(self.policy.decide(evaluations))

    def due(self, now: float) -> list[RetrainTrigger]:
        return [o for o in self._delivered(self.policy.due(now)) if isinstance(o, RetrainTrigger)]

    def request_retrain(self, model: str, version: str | None, reason: str) -> str:
        return self.policy.request_retrain(model, version, reason)

    def snapshot(self, key: tuple[str, str]) -> PolicyState | None:
        return self.policy.snapshot(key)

    def restore(self, key: tuple[str, str], snapshot: PolicyState) -> None:
        self.policy.restore(key, snapshot)

    def _delivered(self, decisions: Decisions) -> list[Output]:
        record_held(decisions.held, self.recorder)
        return decisions.outputs


def make_policy(
    recorder: Recorder | None = None,
    models: Sequence[Mapping[str, object]] = (),
    **policy: object,
) -> RecordingPolicy:
    config = parse_config({"policy": policy, "models": list(models)})
    return RecordingPolicy(Policy.from_config(config), recorder)


def run(policy: RecordingPolicy, windows: Sequence[list[Evaluation]]) -> list[RetrainTrigger]:
    return [o for w in windows for o in policy.decide(w) if isinstance(o, RetrainTrigger)]


def _stored(policy: RecordingPolicy, key: tuple[str, str]) -> dict[str, Any]:
    """A version's policy state as a checkpoint stores it."""
    snapshot = policy.snapshot(key)
    assert snapshot is not None
    return snapshot.dump()


def _reloaded(policy: RecordingPolicy, key: tuple[str, str]) -> PolicyState:
    """A version's policy state through a checkpoint's JSON, as a restart reads it."""
    return PolicyState.load(json.loads(json.dumps(_stored(policy, key))), "test")


def test_daily_cap_holds_back_requests_over_the_cap_until_the_next_utc_day() -> None:
    recorder = Recorder()
    policy = make_policy(
        recorder,
        retrain_consecutive_windows=1,
        retrain_cooldown_windows=0,
        retrain_daily_cap=2,
    )
    # Two short episodes, then one that lasts until past midnight (window 144 starts at
    # 2026-11-24T00:00Z in event time).
    windows = [window(0, DRIFT), window(1), window(2, DRIFT), window(3)]
    windows += [window(i, DRIFT) for i in range(4, 145)]

    sent = run(policy, windows)

    assert [(t.reason, t.row) for t in sent] == [("drift", 99), ("drift", 299), ("drift", 14499)]
    # The capped episode is recorded once, with the evidence of the request it would have been.
    (held,) = recorder.decisions
    assert held.guard == "daily_cap"
    assert held.detail == "2 request(s) for m on 2026-11-23 (UTC) already; the daily cap is 2"
    assert held.trigger.row == 499
    assert held.trigger.first_row == 400
    assert held.trigger.statistics == (("a", "ks", 0.5, 0.1), ("b", "ks", 0.5, 0.1))
    assert held.trigger.offsets == (OffsetRange("in", 0, 1400, 1499),)
    assert (held.trigger.start_time, held.trigger.end_time) == (T0 + 2400, T0 + 2999)
    assert held.id == stable_id(held.trigger.id, "suppressed", "daily_cap")
    # The request that finally went out belongs to the same episode.
    assert (sent[2].first_row, sent[2].windows) == (400, 141)


def test_min_events_waits_for_enough_new_events_since_the_last_request() -> None:
    recorder = Recorder()
    policy = make_policy(
        recorder,
        retrain_consecutive_windows=1,
        retrain_cooldown_windows=0,
        retrain_min_events=250,
    )
    windows = [window(0, DRIFT), window(1, DRIFT), window(2, DRIFT), window(3)]
    windows += [window(4, DRIFT), window(5, DRIFT)]

    sent = run(policy, windows)

    # Rows 0-99 are 100 events: too few. Row 299 makes 300. After that request, the next
    # episode needs 250 more: row 499 has 200, row 599 has 300.
    assert [t.row for t in sent] == [299, 599]
    assert [(d.guard, d.trigger.row, d.detail) for d in recorder.decisions] == [
        ("min_events", 99, "100 new events of m/1 since its last request; 250 needed"),
        ("min_events", 499, "200 new events of m/1 since its last request; 250 needed"),
    ]


def test_the_prediction_drifting_alone_triggers_when_configured() -> None:
    columns = ("a", "b", "c", "d", "e", "f", "g", "h", "@prediction")  # one of nine: 0.111
    prediction = [window(i, ["@prediction"], columns=columns) for i in range(2)]
    feature = [window(i, ["a"], columns=columns) for i in range(2, 4)]

    assert run(make_policy(), prediction + feature) == []

    sent = run(make_policy(retrain_on_prediction=True), prediction + feature)

    (request,) = sent
    assert (request.row, request.first_row, request.windows) == (199, 0, 2)
    assert request.drifted_features == ("@prediction",)
    assert request.feature_share == pytest.approx(1 / 9)
    assert request.detail == (
        "the prediction drifted (share 0.111, below the threshold 0.25) for 2 windows in a row"
    )


def test_cooldown_holds_back_a_new_episode_and_records_it_once() -> None:
    recorder = Recorder()
    policy = make_policy(recorder, retrain_consecutive_windows=1, retrain_cooldown_windows=3)

    sent = run(policy, [window(0, DRIFT), window(1), window(2, DRIFT), window(3, DRIFT)])

    assert [t.row for t in sent] == [99, 399]
    assert [(d.guard, d.trigger.row, d.detail) for d in recorder.decisions] == [
        ("cooldown", 299, "1 more window(s) of cooldown after the last request of m/1")
    ]
    assert sent[0].detail == (
        "share 0.5 of the monitored columns drifted (threshold 0.25) for 1 windows in a row"
    )


def test_a_new_version_closes_the_old_versions_episode_for_good() -> None:
    def scenario(with_new_version: bool) -> list[tuple[str, int]]:
        policy = make_policy(retrain_cooldown_windows=0)
        windows = [window(0, DRIFT), window(1, DRIFT), window(2, DRIFT)]
        if with_new_version:
            windows.append(window(0, version="2"))
        windows += [window(3), window(4), window(5, DRIFT), window(6, DRIFT)]
        if with_new_version:
            windows += [window(1, DRIFT, version="2"), window(2, DRIFT, version="2")]
        return [(t.version, t.row) for t in run(policy, windows)]

    # Without a new version the old one's second episode triggers again ...
    assert scenario(with_new_version=False) == [("1", 199), ("1", 699)]
    # ... with version 2 in the stream, only version 2 triggers after its first window.
    assert scenario(with_new_version=True) == [("1", 199), ("2", 299)]


def test_schedule_fires_each_slot_once_across_a_restart() -> None:
    models = [{"name": "m", "retrain_schedule": "0 3 * * *"}]
    policy = make_policy(models=models)
    assert policy.due(T0 + 1 * HOUR) == []  # anchored at 01:00: the next slot is 03:00
    run(policy, [window(0), window(1, DRIFT)])  # version 1 is known from here on

    assert policy.due(T0 + 3 * HOUR - 1) == []
    (first,) = policy.due(T0 + 3 * HOUR + 30)
    assert first.id == stable_id("m", "1", "schedule", "2026-11-23T03:00:00.000Z")
    assert (first.reason, first.model, first.version) == ("schedule", "m", "1")
    assert first.requested_at == T0 + 3 * HOUR
    assert first.detail == "cron '0 3 * * *', slot 2026-11-23T03:00:00.000Z"
    # The lineage is the latest window's: its drift evidence and data range.
    assert (first.first_row, first.row, first.windows) == (100, 199, 1)
    assert first.offsets == (OffsetRange("in", 0, 1100, 1199),)
    assert first.drifted_features == ("a", "b")
    assert policy.due(T0 + 3 * HOUR + 300) == []

    # Restart from the checkpointed state: the 03:00 slot is not fired again.
    state = _reloaded(policy, ("m", "1"))
    restarted = make_policy(models=models)
    restarted.restore(("m", "1"), state)
    assert restarted.due(T0 + 3 * HOUR + 600) == []
    (second,) = restarted.due(T0 + DAY + 3 * HOUR + 5)
    assert second.id == stable_id("m", "1", "schedule", "2026-11-24T03:00:00.000Z")
    # Down for two days: the missed slots coalesce into the latest one.
    (third,) = restarted.due(T0 + 3 * DAY + 4 * HOUR)
    assert third.detail == "cron '0 3 * * *', slot 2026-11-26T03:00:00.000Z"
    assert restarted.due(T0 + 3 * DAY + 5 * HOUR) == []

    # Checkpointed at 01:00, down until 04:00: the 03:00 slot fires once, with the same id.
    early = make_policy(models=models)
    assert early.due(T0 + 1 * HOUR) == []
    run(early, [window(0), window(1, DRIFT)])
    late = make_policy(models=models)
    late.restore(("m", "1"), _reloaded(early, ("m", "1")))
    assert late.due(T0 + 4 * HOUR) == [first]
    assert late.due(T0 + 5 * HOUR) == []


def test_a_schedule_in_a_time_zone_fires_at_its_local_time_across_a_restart() -> None:
    # Weekdays at 03:00 in Berlin (02:00 UTC in winter); T0 is Monday 2026-11-23.
    models = [
        {
            "name": "m",
            "retrain_schedule": "0 3 * * 1-5",
            "retrain_schedule_timezone": "Europe/Berlin",
        }
    ]
    policy = make_policy(models=models)
    assert policy.due(T0) == []
    run(policy, [window(0)])
    assert policy.due(T0 + 2 * HOUR - 1) == []
    (first,) = policy.due(T0 + 2 * HOUR)
    assert first.detail == "cron '0 3 * * 1-5' (Europe/Berlin), slot 2026-11-23T02:00:00.000Z"
    state = _reloaded(policy, ("m", "1"))
    stored = state.retrain.model
    assert stored is not None
    assert stored.schedule is not None
    assert stored.schedule.cron == "CRON_TZ=Europe/Berlin 0 3 * * 1-5"
    restarted = make_policy(models=models)
    restarted.restore(("m", "1"), state)
    assert restarted.due(T0 + 3 * HOUR) == []  # the slot was taken before the restart
    # Friday's slot fires, then Saturday and Sunday have none: Monday 2026-11-30 is next.
    (friday,) = restarted.due(T0 + 4 * DAY + 2 * HOUR)
    assert friday.requested_at == T0 + 4 * DAY + 2 * HOUR
    assert restarted.due(T0 + 6 * DAY + 23 * HOUR) == []
    (monday,) = restarted.due(T0 + 7 * DAY + 2 * HOUR)
    assert monday.requested_at == T0 + 7 * DAY + 2 * HOUR
    # The same expression in another zone is another schedule: the stored slots are not its.
    utc = make_policy(models=[{"name": "m", "retrain_schedule": "0 3 * * 1-5"}])
    utc.restore(("m", "1"), state)
    # Anchored afresh at 03:00 UTC, a slot itself (with Berlin's state, the next was Tuesday's).
    assert [t.requested_at for t in utc.due(T0 + 3 * HOUR)] == [T0 + 3 * HOUR]


def test_a_due_slot_waits_for_a_version_and_guards_apply() -> None:
    models = [{"name": "m", "retrain_schedule": "*/15 * * * *"}]
    recorder = Recorder()
    policy = make_policy(recorder, models=models, retrain_min_events=150)
    assert policy.due(T0) == []  # anchors at 00:00, which is a slot itself ... (no version)
    assert policy.due(T0 + 60) == []  # ... that waits for a version
    run(policy, [window(0)])  # 100 events of version 1
    assert policy.due(T0 + 120) == []  # held back: 100 < 150 events since the start
    assert [(d.guard, d.trigger.reason, d.trigger.requested_at) for d in recorder.decisions] == [
        ("min_events", "schedule", T0)
    ]
    assert policy.due(T0 + 180) == []  # the slot is taken: not recorded twice
    run(policy, [window(1)])
    (request,) = policy.due(T0 + 15 * 60)
    assert (request.requested_at, request.row) == (T0 + 15 * 60, 199)
    assert len(recorder.decisions) == 1


def test_manual_requests_queue_count_toward_the_cap_and_are_never_held_back() -> None:
    recorder = Recorder()
    policy = make_policy(
        recorder,
        [{"name": "m", "profiles": {"0": "m@0.npz"}}],  # version 0 known by its profile
        retrain_consecutive_windows=1,
        retrain_cooldown_windows=0,
        retrain_daily_cap=1,
    )
    with pytest.raises(LookupError, match=r"model 'x' is unknown to this daemon"):
        policy.retraining.request_manual("x", "new labels", T0)
    with pytest.raises(ValueError, match=r"model 'm': no version seen yet"):
        policy.retraining.request_manual("m", "new labels", T0)
    run(policy, [window(0)])
    now = T0 + 700

    manual = policy.retraining.request_manual(
        "m", "  new labels arrived  ", now, request_id="req-1"
    )
    again = policy.retraining.request_manual("m", "new labels arrived", now, request_id="req-1")

    assert manual == again
    assert manual.id == stable_id("m", "1", "manual", "req-1")
    assert (manual.reason, manual.version, manual.detail) == ("manual", "1", "new labels arrived")
    assert (manual.requested_at, manual.row, manual.offsets) == (
        now,
        99,
        (OffsetRange("in", 0, 1000, 1099),),
    )
    assert policy.due(now) == [manual]  # queued once, handed out once
    assert policy.due(now + 1) == []
    # The manual request used up the day's cap: the drift episode is held back and recorded.
    assert run(policy, [window(1, DRIFT)]) == []
    assert [d.guard for d in recorder.decisions] == ["daily_cap"]
    # Another manual request still goes out: an operator's decision is never capped.
    other = policy.retraining.request_manual("m", "rollback test", now + 5, version="0")
    assert policy.due(now + 5) == [other]
    assert other.version == "0"
    assert other.row == -1  # no window of version 0 seen: no data range
    with pytest.raises(LookupError, match=r"model 'm' has no version '9' known"):
        policy.retraining.request_manual("m", "typo", now, version="9")
    with pytest.raises(ValueError, match="reason: say why"):
        policy.retraining.request_manual("m", " ", now)


def _policy_states(policy: RecordingPolicy, keys: list[tuple[str, str]]) -> list[object]:
    return [json.loads(json.dumps(_stored(policy, key))) for key in keys]


def test_every_piece_of_retrain_state_survives_a_checkpoint() -> None:
    settings = {
        "retrain_consecutive_windows": 1,
        "retrain_cooldown_windows": 3,
        "retrain_min_events": 150,
        "retrain_daily_cap": 3,
    }
    models = [{"name": "m", "retrain_schedule": "0 * * * *", "policy": settings}]
    recorder = Recorder()
    policy = make_policy(recorder, models)
    keys = [("m", "1"), ("m", "2")]
    # Version 1: held back by min_events (row 99), sent (row 199), held back by the
    # cooldown (row 399). Version 2 appears and supersedes it; the 01:00 slot fires for
    # version 2; its next episode is held back by the cooldown (blocked).
    run(policy, [window(0, DRIFT), window(1, DRIFT), window(2), window(3, DRIFT)])
    assert policy.due(T0 + 1) == []
    run(policy, [window(0, version="2"), window(1, version="2")])
    assert [t.version for t in policy.due(T0 + HOUR + 1)] == ["2"]
    run(policy, [window(2, DRIFT, version="2")])
    assert [d.guard for d in recorder.decisions] == ["min_events", "cooldown", "cooldown"]

    blob = encode(
        Checkpoint(
            TopicPartition("in", 0),
            5000,
            [VersionState({}, {}, _stored(policy, key)) for key in keys],
        )
    )
    restored_recorder = Recorder()
    restored = make_policy(restored_recorder, models)
    for key, version in zip(keys, decode(blob, "test").versions, strict=True):
        assert version.policy is not None
        restored.restore(key, PolicyState.load(version.policy, "test"))

    states = _policy_states(policy, keys)
    assert _policy_states(restored, keys) == states
    old, new = (state["retrain"] for state in states)  # type: ignore[index]
    assert (old["superseded"], old["last_request_row"], old["in_episode"]) == (True, 199, False)
    assert (new["blocked"], new["cooldown"], new["last_request_row"]) == ("cooldown", 2, 199)
    assert new["latest"]["offsets"] == [
        {"topic": "in", "partition": 0, "first_offset": 1200, "last_offset": 1299}
    ]
    assert new["model"] == {
        "seq": new["model"]["seq"],
        "current": "2",
        "requests": {"2026-11-23": 2},
        "schedule": {"cron": "0 * * * *", "last_slot": T0 + HOUR, "next_slot": T0 + 2 * HOUR},
    }
    # Restored and uninterrupted policies decide the same from here on: the cooldown hold
    # is not recorded again, the request at row 499 goes out, the 02:00 slot is held back.
    tail = [window(i, DRIFT, version="2") for i in range(3, 6)]
    sent = run(policy, tail)
    assert run(restored, tail) == sent
    assert [t.row for t in sent] == [499]
    assert restored.due(T0 + 2 * HOUR) == policy.due(T0 + 2 * HOUR) == []
    assert restored_recorder.decisions == recorder.decisions[3:]
    assert [(d.guard, d.trigger.reason) for d in restored_recorder.decisions] == [
        ("min_events", "schedule")
    ]


def test_suppressed_decisions_are_audit_rows_recorded_once(tmp_path: Path) -> None:
    recorder = Recorder()
    policy = make_policy(recorder, retrain_min_events=1000)
    run(policy, [window(0, DRIFT), window(1, DRIFT)])
    (held,) = recorder.decisions
    audit = AuditLog(tmp_path / "audit.sqlite", clock=lambda: T0)
    try:
        audit.record([held])
        audit.record([held])  # replayed after a restart: same id
        (row,) = audit.history()
    finally:
        audit.close()
    assert (row.id, row.kind, row.status, row.model, row.version) == (
        held.id,
        "retrain",
        "suppressed",
        "m",
        "1",
    )
    assert row.summary == (
        "retrain m/1 (drift) held back by min_events: 200 new events of m/1 since its last "
        "request; 1000 needed"
    )


def test_policy_settings_per_model_and_schedules_are_validated_at_startup() -> None:
    config = parse_config(
        {
            "policy": {"retrain_daily_cap": 5},
            "models": [{"name": "m", "policy": {"retrain_on_prediction": True}}],
        }
    )
    assert config.policy_for("m").retrain_on_prediction is True
    assert config.policy_for("m").retrain_daily_cap == 5  # merged over [policy] key by key
    assert config.policy_for("other").retrain_daily_cap == 5
    bad = {
        "0 3 * *": "has 4 fields; a cron expression has 5",
        "0 3 * * 8": "day-of-week 8 is outside 0-7",
        "0 25 * * *": "is not a valid cron expression",
        "0 0 30 2 *": "never fires",
    }
    for expression, advice in bad.items():
        with pytest.raises(ConfigError) as error:
            parse_config({"models": [{"name": "m", "retrain_schedule": expression}]})
        assert "models.0.retrain_schedule" in str(error.value)
        assert advice in str(error.value)
    with pytest.raises(ConfigError) as error:
        parse_config(
            {
                "models": [
                    {
                        "name": "m",
                        "retrain_schedule": "@daily",
                        "retrain_schedule_timezone": "Europe/Berln",
                    }
                ]
            }
        )
    assert (
        "models.0.retrain_schedule_timezone: Value error, 'Europe/Berln' is not an IANA time zone"
        in str(error.value)
    )
    with pytest.raises(ConfigError, match="there is no retrain_schedule for it to apply to"):
        parse_config({"models": [{"name": "m", "retrain_schedule_timezone": "Europe/Berlin"}]})
    with pytest.raises(ConfigError, match=r"policy.retrain_daily_cap"):
        parse_config({"policy": {"retrain_daily_cap": 0}})
    with pytest.raises(ConfigError) as error:
        parse_config({"models": [{"name": "m", "policy": {"retrain_dialy_cap": 1}}]})
    assert "models.0.policy.retrain_dialy_cap: unknown key" in str(error.value)
    assert "retrain_daily_cap, retrain_feature_share" in str(error.value)
    with pytest.raises(ConfigError, match=r"admin.retrain_clients: .*'everyone' is not an IP"):
        parse_config({"admin": {"retrain_clients": ["everyone"]}})


def test_through_the_daemon_a_new_version_stops_requests_for_the_old_one() -> None:
    config = parse_config(
        {
            "detection": {"warmup_events": 1000, "window_size": 500},
            "policy": {"retrain_cooldown_windows": 0},
            # A batch is decided one model version after another: small batches keep the
            # versions' windows in stream order.
            "kafka": {"consumer": {"max_poll_records": 500}},
        }
    )
    rng = np.random.default_rng(5)

    def events(version: str, values: np.ndarray) -> list[bytes]:
        return [
            orjson.dumps({"model": "m", "model_version": version, "features": {"x": float(v)}})
            for v in values
        ]

    reference, shifted, clean, again = (rng.normal(mean, 1, 1000) for mean in (0, 2, 0, 2))
    new_version = events("2", rng.normal(0, 1, 1500))  # warm-up, then one clean window

    def requests(stream: list[bytes]) -> list[tuple[str, int]]:
        records = [Record("in", 0, i, b"m", value, 0) for i, value in enumerate(stream)]
        daemon = Daemon(config, MemorySource(records), MemorySink(), [], lambda m, v: None)
        return [(o.version, o.row) for o in daemon.drain() if isinstance(o, RetrainTrigger)]

    old = events("1", np.concatenate([reference, shifted, clean]))
    # Version 1 drifts twice; its second episode asks again ...
    assert requests(old + events("1", again)) == [("1", 999), ("1", 2999)]
    # ... unless version 2 appeared in between: its first window closes version 1's episodes.
    assert requests(old + new_version + events("1", again)) == [("1", 999)]


def performance_window(index: int, degraded: bool, *, version: str = "1") -> list[Evaluation]:
    """Performance window ``index`` of model m: a miss rate of 0.3 against a limit of 0.2
    when ``degraded``, else 0.1; rows and offsets as `window`'s."""
    first_row, row = index * SIZE, index * SIZE + SIZE - 1
    result = Detection(
        "performance",
        first_row,
        row,
        np.array([0.3 if degraded else 0.1]),
        np.array([0.2]),
        np.array([degraded]),
        None,
        np.array([SIZE]),
    )
    record = Record("in", 0, 1000 + row, b"m", b"{}", 0)
    start = T0 + index * WINDOW_S
    offsets = (OffsetRange("in", 0, 1000 + first_row, 1000 + row),)
    evidence = (("reference_miss_rate", 0.1), ("label_delay_p50_s", 30.0))
    return [
        Evaluation(
            "m",
            version,
            "ref-1",
            ("miss_rate",),
            result,
            offsets,
            record,
            start,
            start + 599,
            evidence=evidence,
        )
    ]


@pytest.mark.parametrize("asks", [True, False])
def test_degraded_performance_asks_once_per_degradation_and_its_count_survives_a_checkpoint(
    asks: bool,
) -> None:
    config = parse_config(
        {
            "policy": {"retrain_consecutive_windows": 2, "retrain_cooldown_windows": 0},
            "performance": {"retrain_on_degradation": asks},
        }
    )
    policy = RecordingPolicy(Policy.from_config(config))
    flags = [True, True, True, False, True, True]
    sent = run(policy, [performance_window(i, d) for i, d in enumerate(flags[:3])])
    stored = _reloaded(policy, ("m", "1"))
    assert (stored.degraded_windows, stored.degradation_requested) == (3, asks)

    restored = RecordingPolicy(Policy.from_config(config))
    restored.restore(("m", "1"), stored)
    tail = [performance_window(i, d) for i, d in enumerate(flags) if i >= 3]
    again = run(policy, tail)  # a new degradation after a window that was not degraded
    assert run(restored, tail) == again
    if not asks:
        assert sent == again == []
        return
    assert [t.row for t in again] == [599]
    (request,) = sent
    assert (request.reason, request.row, request.windows) == ("performance", 199, 2)
    assert request.detail == (
        "miss_rate 0.3 above 0.2 (reference 0.1) for 2 windows of labelled rows in a row; "
        "median label delay 30 s"
    )
    assert request.id == stable_id("m", "1", "performance", "ref-1", 100, 199)
