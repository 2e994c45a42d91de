"""New references calibrated in a worker process while the loop reads on: the same
thresholds and the same outputs as on the loop, held rows bounded, and a worker that dies
(or outlives its daemon) is neither a crash nor a leak."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from detectors.profile import build_profile
from monitord import calibrations as calibrations_module
from monitord import event_flow, monitor
from monitord.calibrations import LENGTH, Calibrations, receive
from monitord.config import parse_config
from monitord.daemon import Daemon
from monitord.outputs import KafkaPublisher
from monitord.row_log import Places
from monitord.suite import calibrate_suite

MODELS = 6
FEATURES = ("a", "b", "c")


def _thresholds(calibration: Any) -> dict[str, Any]:
    return {
        field.name: getattr(calibration.thresholds, field.name)
        for field in dataclasses.fields(calibration.thresholds)
    }


def _profile(seed: int) -> Any:
    rows = np.random.default_rng(seed).normal(size=(300, 3))
    return build_profile("m", "1", FEATURES, rows)


SETTINGS = parse_config({"detection": {"window_size": 100}}).detection


@pytest.fixture
def calibrations() -> Iterator[Calibrations]:
    """One worker, ended after the test."""
    made = Calibrations(1)
    yield made
    made.close()


def test_a_worker_calibrates_exactly_as_the_loop_and_shares_the_profile(
    calibrations: Calibrations,
) -> None:
    profiles = [_profile(seed) for seed in range(3)]
    pending = [calibrations.start(p, SETTINGS, inline=False) for p in profiles]
    for profile, job in zip(profiles, pending, strict=True):
        (made,) = job.result()
        expected = calibrate_suite(profile, SETTINGS)
        assert made is not None
        assert expected is not None
        got, want = _thresholds(made), _thresholds(expected)
        assert got.keys() == want.keys()
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value, err_msg=name)
        assert made.effective_tests == expected.effective_tests
        # The laws read the daemon's own profile, not the copy the worker was sent.
        assert made._laws.profile is profile


def test_waiting_for_a_job_no_worker_has_started_makes_it_on_the_loop(
    calibrations: Calibrations,
) -> None:
    profiles = [_profile(seed) for seed in range(3)]
    jobs = [calibrations.start(p, SETTINGS, inline=False) for p in profiles]
    # The worker (a second to start) has the first; the last waits its turn: made here.
    (made,) = jobs[2].result()
    assert jobs[2]._future.cancelled()
    (first,) = jobs[0].result()
    assert not jobs[0]._future.cancelled()
    for job, got in ((jobs[0], first), (jobs[2], made)):
        expected = calibrate_suite(job.profile, SETTINGS)
        assert got is not None
        assert expected is not None
        np.testing.assert_array_equal(got.thresholds.ks, expected.thresholds.ks)


def test_held_category_texts_count_at_their_size() -> None:
    texts = np.array([["x" * 250 + str(i)] for i in range(100)], dtype=object)
    places = Places([Record("in", 0, i, None, None, 0) for i in range(100)])
    held = monitor._held_bytes(np.zeros((100, 1)), texts, places, np.zeros(100))
    assert held > 100 * 250


def test_an_answer_cut_short_ends_the_stream() -> None:
    whole = LENGTH.pack(100) + b"x" * 10  # its writer exited while writing
    assert receive(io.BytesIO(whole)) is None


def test_a_dead_worker_fails_over_to_the_loop(
    calibrations: Calibrations, caplog: pytest.LogCaptureFixture
) -> None:
    profile = _profile(7)
    first = calibrations.start(profile, SETTINGS, inline=False)
    first.result()  # the worker is up
    worker = calibrations._pool[0]
    worker._process.kill()
    worker._process.wait()
    with caplog.at_level(logging.WARNING, logger="monitord.calibrations"):
        # Sent to the dead worker (or refused): made on the loop, the same thresholds.
        (made,) = calibrations.start(profile, SETTINGS, inline=False).result()
        (again,) = calibrations.start(profile, SETTINGS, inline=False).result()
    expected = calibrate_suite(profile, SETTINGS)
    assert made is not None
    assert again is not None
    assert expected is not None
    for got in (made, again):
        np.testing.assert_array_equal(got.thresholds.ks, expected.thresholds.ks)
    messages = [record.getMessage() for record in caplog.records]
    assert any("calibrat" in m and "on the loop" in m for m in messages)
    assert calibrations._pool == []  # no new worker after one died


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a worker is given a job (its future set running): waiting for that job
    then waits for the worker, rather than make it on the loop."""
    event = threading.Event()

    class Given(Future[Any]):
        def set_running_or_notify_cancel(self) -> bool:
            running = super().set_running_or_notify_cancel()
            if running:
                event.set()
            return running

    monkeypatch.setattr(calibrations_module, "Future", Given)
    return event


def test_a_hung_worker_is_killed_and_its_jobs_made_on_the_loop(
    calibrations: Calibrations,
    given: threading.Event,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(calibrations_module, "ANSWER_TIMEOUT_S", 0.5)
    profile = _profile(7)
    job = calibrations.start(profile, SETTINGS, inline=False)
    worker = calibrations._pool[0]
    os.kill(worker._process.pid, signal.SIGSTOP)  # alive, and never to answer
    assert given.wait(60)
    # Should the wait not end, the worker is killed after a minute (as a dead worker, its
    # job is made on the loop), so that the test fails rather than hang.
    watchdog = threading.Timer(60, worker._process.kill)
    watchdog.start()
    try:
        with caplog.at_level(logging.WARNING, logger="monitord.calibrations"):
            (made,) = job.result()
            (later,) = calibrations.start(profile, SETTINGS, inline=False).result()
    finally:
        watchdog.cancel()
    hung = [r for r in caplog.records if "has not answered in" in r.getMessage()]
    assert [r.levelno for r in hung] == [logging.ERROR]
    assert f"pid {worker._process.pid}" in hung[0].getMessage()
    assert worker._process.returncode == -signal.SIGKILL  # killed and reaped, not left stopped
    assert calibrations._pool == []  # later references are calibrated on the loop
    expected = calibrate_suite(profile, SETTINGS)
    assert expected is not None
    for got in (made, later):
        assert got is not None
        assert _thresholds(got).keys() == _thresholds(expected).keys()
        for name, value in _thresholds(expected).items():
            np.testing.assert_array_equal(_thresholds(got)[name], value, err_msg=name)


def test_a_worker_exits_when_its_daemon_is_killed(tmp_path: Any) -> None:
    script = textwrap.dedent(
        """
        import sys
        import numpy as np
        from detectors.profile import build_profile
        from monitord.calibrations import LENGTH, Calibrations, receive
        from monitord.config import parse_config

        settings = parse_config({"detection": {"window_size": 100}}).detection
        rows = np.random.default_rng(1).normal(size=(300, 3))
        profile = build_profile("m", "1", ("a", "b", "c"), rows)
        calibrations = Calibrations(1)
        calibrations.start(profile, settings, inline=False).result()
        print(calibrations._pool[0]._process.pid, flush=True)
        sys.stdin.read()  # until killed
        """
    )
    daemon = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert daemon.stdout is not None
        worker_pid = int(daemon.stdout.readline())
        worker = os.pidfd_open(worker_pid)
    finally:
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
    try:
        # The worker's input ends with its daemon: it exits (a pidfd is readable then).
        readable, _, _ = select.select([worker], [], [], 60)
        assert readable == [worker], f"calibration worker {worker_pid} outlived its daemon"
    finally:
        os.close(worker)


def _events(rows: int, drift_from: int) -> list[Record]:
    """``MODELS`` models round-robin, three features; models 0 and 3 shift from
    ``drift_from`` on."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=(rows, len(FEATURES)))
    records = []
    for i, row in enumerate(values):
        model = i % MODELS
        shifted = row + (2.0 if model % 3 == 0 and i >= drift_from else 0.0)
        features = dict(zip(FEATURES, shifted.tolist(), strict=True))
        event = {"model": f"m{model}", "features": features}
        records.append(Record("in", 0, i, b"", orjson.dumps(event), 0))
    return records


@pytest.fixture
def all_to_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """No time on the loop for calibrations: these models are too small to reach the
    default (a batch calibrates for 0.1 s on the loop before it hands the rest over)."""
    monkeypatch.setattr(monitor, "LOOP_CALIBRATION_S", 0.0)


def _run(
    workers: int, records: list[Record], limits: dict[str, Any] | None = None
) -> tuple[Daemon, MemorySink, list[tuple[int, int]]]:
    """A daemon over ``records`` (every model's warm-up ends in its second batch); how
    many versions were being calibrated after each step, and the bytes they held."""
    config = parse_config(
        {
            "detection": {"warmup_events": 200, "window_size": 100},
            "kafka": {"consumer": {"max_poll_records": 600}},
            "calibration": {"workers": workers},
            "limits": limits or {},
        }
    )
    sink = MemorySink()
    daemon = Daemon(
        config,
        MemorySource(records),
        sink,
        [KafkaPublisher(sink, "alerts", "retrain")],
        lambda m, v: None,
    )
    calibrating = []
    while daemon.step(0)[0]:
        calibrating.append((len(daemon.monitor.calibrating), daemon.monitor.held_bytes))
    daemon.close()  # settles what is still calibrated, delivers its outputs
    return daemon, sink, calibrating


def _alerts(sink: MemorySink) -> dict[str, list[tuple[Any, ...]]]:
    """Each model's alerts in order (models are independent: their interleaving is not)."""
    by_model: dict[str, list[tuple[Any, ...]]] = {}
    for message in sink.messages("alerts"):
        data = orjson.loads(message.value)["data"]
        key = (data["status"], data["feature"], data["detector"], data["row"], data["id"])
        by_model.setdefault(data["model"], []).append(key)
    return by_model


@pytest.mark.usefixtures("all_to_the_worker")
def test_versions_calibrated_by_a_worker_detect_as_on_the_loop() -> None:
    records = _events(MODELS * 1500, drift_from=MODELS * 700)
    _, on_loop, never = _run(0, records)
    daemon, in_worker, calibrating = _run(1, records)
    assert not any(count for count, _ in never)
    # The second batch ends every warm-up: the references go to the worker (which takes
    # longer to start than the loop to go on), whose rows the next batch holds.
    assert calibrating[1] == (MODELS, 0)
    assert calibrating[2][1] > 0
    assert daemon.monitor.calibrating == {}
    assert all(not monitor.warming_up for monitor in daemon.monitor.versions.values())
    expected = _alerts(on_loop)
    assert {"m0", "m3"} <= set(expected)  # the drifted models alert
    assert _alerts(in_worker) == expected
    assert [m.value for m in in_worker.messages("retrain")] != []
    assert sorted(m.value for m in in_worker.messages("retrain")) == sorted(
        m.value for m in on_loop.messages("retrain")
    )


@pytest.mark.usefixtures("all_to_the_worker")
def test_held_rows_past_the_cap_make_the_batch_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_flow, "MAX_HELD_BYTES", 1)
    records = _events(MODELS * 600, drift_from=MODELS * 600)
    _, _, calibrating = _run(1, records)
    assert max(count for count, _ in calibrating) == MODELS
    assert all(held == 0 for _, held in calibrating)  # each batch waited for what it held


def test_a_few_small_new_versions_a_batch_start_no_worker() -> None:
    daemon, _, calibrating = _run(1, _events(MODELS * 450, drift_from=MODELS * 450))
    assert not any(count for count, _ in calibrating)
    assert all(not version.warming_up for version in daemon.monitor.versions.values())
    assert daemon.monitor._calibrations is not None
    assert daemon.monitor._calibrations._pool == []


@pytest.mark.usefixtures("all_to_the_worker")
def test_a_checkpoint_settles_calibrations_first() -> None:
    records = _events(MODELS * 450, drift_from=MODELS * 450)
    config = parse_config(
        {
            "detection": {"warmup_events": 200, "window_size": 100},
            "kafka": {"consumer": {"max_poll_records": 600}},
        }
    )
    sink = MemorySink()
    daemon = Daemon(config, MemorySource(records), sink, [], lambda m, v: None)
    daemon.step(0)
    daemon.step(0)
    held = daemon.monitor.calibrating
    assert len(held) == MODELS
    assert daemon.monitor.held_bytes == 0
    daemon.step(0)  # rows of calibrating versions are held
    assert daemon.monitor.held_bytes > 0
    daemon.checkpoint()
    assert daemon.monitor.calibrating == {}
    assert daemon.monitor.held_bytes == 0
    for key in daemon.monitor.versions:
        daemon.monitor.snapshot(key)  # a snapshot of every version can be taken
    daemon.close()


def _model_versions() -> list[Record]:
    """Model X and version 1 of model M warm up together (M/1 is calibrated in the worker),
    then version 2 of M comes and drifts; X fills what is left."""
    rng = np.random.default_rng(9)
    events: list[tuple[str, str, np.ndarray]] = []
    for i in range(600):  # one batch: X, then M/1, end their warm-up (200) in it
        events.append(("M", "1", rng.normal(size=3)) if i % 2 else ("X", "1", rng.normal(size=3)))
    for i in range(3000):
        shift = 3.0 if i >= 1500 else 0.0
        events.append(
            ("M", "2", rng.normal(size=3) + shift) if i % 2 else ("X", "1", rng.normal(size=3))
        )
    return [
        Record(
            "in",
            0,
            i,
            b"",
            orjson.dumps(
                {
                    "model": m,
                    "model_version": v,
                    "features": dict(zip(FEATURES, x.tolist(), strict=True)),
                }
            ),
            0,
        )
        for i, (m, v, x) in enumerate(events)
    ]


@pytest.mark.usefixtures("all_to_the_worker")
def test_a_model_s_versions_detect_in_the_order_they_came() -> None:
    # The policy takes the version whose first window came last as its model's current
    # one: M/1, calibrated in the worker, must not report its first windows after M/2.
    records = _model_versions()
    loop_daemon, on_loop, _ = _run(0, records)
    worker_daemon, in_worker, calibrating = _run(1, records)
    assert calibrating[0][0] == 2  # X and M/1 went to the worker
    assert ("M", "1") in worker_daemon.monitor.versions
    currents = [
        daemon.policy.retraining._models["M"].current for daemon in (loop_daemon, worker_daemon)
    ]
    assert currents == ["2", "2"]
    assert _alerts(in_worker) == _alerts(on_loop)
    requested = [orjson.loads(m.value)["data"]["version"] for m in in_worker.messages("retrain")]
    assert requested == ["2"]
    assert requested == [
        orjson.loads(m.value)["data"]["version"] for m in on_loop.messages("retrain")
    ]


@pytest.mark.usefixtures("all_to_the_worker")
def test_workers_end_once_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibrations_module, "IDLE_S", 0.0)
    daemon, _, calibrating = _run(1, _events(MODELS * 450, drift_from=MODELS * 450))
    assert max(count for count, _ in calibrating) == MODELS  # a worker was used
    assert daemon.monitor._calibrations is not None
    assert daemon.monitor._calibrations._pool == []  # and ended once it had nothing to do


@pytest.mark.usefixtures("all_to_the_worker")
def test_a_version_being_calibrated_is_retired_as_on_the_loop() -> None:
    # M/1 is calibrated in the worker (its rows held) when M/2 comes a day of event time
    # later, one version a model: M/1 is settled, then retired for M/2, as on the loop.
    start = 1_600_000_000

    def event(i: int, model: str, version: str, at: int) -> Record:
        shift = 10.0 if (model, version) == ("M", "1") and i >= 500 else 0.0  # M/1 drifts
        values = (float(i % 7) + shift, float(i % 5), float(i % 3))
        features = dict(zip(FEATURES, values, strict=True))
        value = {"model": model, "model_version": version, "timestamp": at, "features": features}
        return Record("in", 0, i, b"", orjson.dumps(value), 0)

    records = [event(i, "XM"[i % 2], "1", start + i) for i in range(900)]
    records += [event(900 + i, "M", "2", start + 86_400 + i) for i in range(600)]
    limits = {"max_versions_per_model": 1, "retire_idle_s": 7200}
    loop_daemon, loop_sink, _ = _run(0, records, limits)
    worker_daemon, worker_sink, calibrating = _run(1, records, limits)
    assert calibrating[0][0] == 2  # X and M/1 held in the worker when M/2 comes
    versions = [sorted(d.monitor.versions) for d in (loop_daemon, worker_daemon)]
    assert versions == [[("M", "2"), ("X", "1")]] * 2
    assert worker_sink.messages("monitord.dead-letter") == []
    assert "M" in _alerts(loop_sink)  # M/1's drift, in rows held while it was calibrated
    assert _alerts(worker_sink) == _alerts(loop_sink)
