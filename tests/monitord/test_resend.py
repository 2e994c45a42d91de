"""Re-sends keep a firing alert alive in a real Alertmanager past its first ``endsAt``.

Alertmanager resolves an alert on its own once ``endsAt`` passes on its clock, so these
tests wait for wall time to pass: that wait is what is under test. The delivery clock is the
wall clock too (Alertmanager drops alerts dated 1970); the tests drive `flush` and
`deliver_due` themselves instead of starting the delivering thread.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.outbox import Outbox
from connectors.stream import Record
from detectors.detection import Detection
from monitord.alerts import Alert, AlertBook, Observation
from monitord.config import AlertSettings
from monitord.delivery import Delivery, build_receivers
from monitord.monitor import Evaluation, OffsetRange
from monitord.receivers.alertmanager import RESEND_HORIZON, AlertmanagerSettings
from tests.servers import Recorded, RecordingServer

MODEL = "resend-model"
INTERVAL_S = 1.0
FIRST_LIFETIME_S = RESEND_HORIZON * INTERVAL_S  # the first post's endsAt is this far ahead
MARGIN_S = 2.0  # past the first endsAt, beyond any clock rounding in Alertmanager
POLL_S = 0.2


def _evaluation(row: int) -> Evaluation:
    result = Detection(
        "ks", row - 99, row, np.zeros(1), np.ones(1), np.zeros(1, bool), None, np.full(1, 100)
    )
    return Evaluation(
        MODEL,
        "1",
        "ref",
        ("x",),
        result,
        (OffsetRange("in", 0, row - 99, row),),
        Record("in", 0, row, None, b"", 0),
        0.0,
        1.0,
    )


def _transitions() -> tuple[Alert, Alert]:
    """The firing and then the resolved transition of one feature alert."""
    book = AlertBook(AlertSettings(fire_windows=1, fire_span=1, resolve_windows=1))
    firing = book.observe(Observation("x", "ks", True, 0.9, 0.5, _evaluation(99)))
    resolved = book.observe(Observation("x", "ks", False, 0.1, 0.5, _evaluation(199)))
    assert firing is not None
    assert resolved is not None
    assert (firing.status, resolved.status) == ("firing", "resolved")
    return firing, resolved


def _delivery(tmp_path: Path, alertmanager: str) -> Delivery:
    receivers = (
        AlertmanagerSettings(
            name="am", type="alertmanager", url=alertmanager, resend_interval_s=INTERVAL_S
        ),
    )
    return Delivery(
        receivers,
        Outbox(tmp_path / "outbox.sqlite"),
        build_receivers(receivers, {}),
        clock=time.time,  # Alertmanager compares endsAt with its own (wall) clock
    )


def _ours(alertmanager: str) -> list[dict[str, Any]]:
    """Our model's alerts that Alertmanager holds as active (resolved ones are left out)."""
    with urllib.request.urlopen(alertmanager + "/api/v2/alerts", timeout=5) as answer:
        alerts: list[dict[str, Any]] = json.loads(answer.read())
    return [a for a in alerts if a["labels"].get("model") == MODEL]


def _poll_until(condition: Callable[[], bool], timeout_s: float, step: Callable[[], None]) -> bool:
    """Run ``step`` every `POLL_S` until ``condition()`` holds (True) or the timeout (False)."""
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    while time.monotonic() < deadline:
        step()
        if condition():
            return True
        pause.wait(POLL_S)
    return False


def _notified(requests: list[Recorded], status: str) -> bool:
    bodies = [request.json() for request in requests]
    return any(
        isinstance(body, dict)
        and body.get("status") == status
        and any(a["labels"].get("model") == MODEL for a in body.get("alerts", []))
        for body in bodies
    )


@pytest.mark.alertmanager
def test_resends_keep_a_firing_alert_active_past_its_first_ends_at(
    tmp_path: Path, alertmanager: str, webhook: RecordingServer
) -> None:
    firing, resolved = _transitions()
    delivery = _delivery(tmp_path, alertmanager)
    try:
        delivery.publish([firing])
        delivery.deliver_due()
        first_ends_at = time.time() + FIRST_LIFETIME_S  # at or after the posted endsAt
        [active] = _ours(alertmanager)
        assert active["status"]["state"] == "active"

        def resend() -> None:
            delivery.flush()
            delivery.deliver_due()

        past = _poll_until(
            lambda: time.time() > first_ends_at + MARGIN_S,
            FIRST_LIFETIME_S + MARGIN_S + 10.0,
            resend,
        )
        assert past, "wall time did not pass the first endsAt"
        still = _ours(alertmanager)
        assert [a["status"]["state"] for a in still] == ["active"], still
        assert webhook.wait_for(lambda requests: _notified(requests, "firing"), 30.0)
        assert not _notified(webhook.requests, "resolved")

        delivery.publish([resolved])
        delivery.deliver_due()
        assert webhook.wait_for(lambda requests: _notified(requests, "resolved"), 30.0)
        assert _ours(alertmanager) == []
    finally:
        delivery.close()


@pytest.mark.alertmanager
def test_without_resends_a_firing_alert_ends_at_its_first_ends_at(
    tmp_path: Path, alertmanager: str, webhook: RecordingServer
) -> None:
    firing, _ = _transitions()
    delivery = _delivery(tmp_path, alertmanager)
    try:
        posted = time.time()
        delivery.publish([firing])
        delivery.deliver_due()
        assert [a["status"]["state"] for a in _ours(alertmanager)] == ["active"]

        gone = _poll_until(
            lambda: not _ours(alertmanager), FIRST_LIFETIME_S + MARGIN_S + 10.0, lambda: None
        )
        assert gone, "the alert outlived its endsAt without re-sends"
        # Not before its endsAt: the rendered endsAt is at least posted + the lifetime.
        assert time.time() >= posted + FIRST_LIFETIME_S - 0.5
        assert webhook.wait_for(lambda requests: _notified(requests, "resolved"), 30.0)
    finally:
        delivery.close()
