"""A batch's outputs, forwarded events and dead letters, published and flushed before the
batch counts as processed; retried with backoff while a failure is retriable."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from connectors.sqlite import StorageUnavailable
from connectors.stream import ConnectorError, DeliveryFailed, Sink
from monitord.config import Config
from monitord.dead_letter import (
    FRAMING_BYTES,
    DeadLetterLog,
    dead_letter,
    producer_request_bytes,
)
from monitord.events import BadRecord
from monitord.outputs import FLUSH_TIMEOUT_S, Publisher, log_outputs
from monitord.policy import Output
from monitord.readiness import HealthReport
from monitord.repartition import Forward
from monitord.state_dir import StateDirFaults

log = logging.getLogger(__name__)

BACKOFF_S = (0.5, 10.0)
"""First and longest wait between retries while the broker or an output is unreachable."""


def back_off(attempt: int, what: str, health: HealthReport, stopping: threading.Event) -> bool:
    """Wait before retry ``attempt`` (exponential, capped); False if stopping meanwhile."""
    first, longest = BACKOFF_S
    delay = min(longest, first * 2**attempt)
    log.warning("%s; retrying in %.1fs", what, delay)
    health.heartbeat()  # waiting on purpose is not a hung loop
    return not stopping.wait(delay)


class BatchOutput:
    """The publishers and the dead-letter sink (which also forwards repartitioned events)."""

    def __init__(
        self,
        config: Config,
        publishers: list[Publisher],
        dead_letters: Sink,
        health: HealthReport,
        state_dir: StateDirFaults,
        stopping: threading.Event,
    ) -> None:
        self.publishers = publishers
        self.dead_letters = dead_letters
        self.undelivered = False  # a batch's outputs are not flushed: no checkpoint then
        kafka = config.kafka
        self._internal = kafka.internal_topic if kafka.repartition else None
        self._topic, self._group = kafka.dead_letter_topic, kafka.group_id
        self._budget = producer_request_bytes(config.events) - FRAMING_BYTES
        self._log = DeadLetterLog(kafka.dead_letter_topic)
        self._health, self._state_dir = health, state_dir
        self.stopping = stopping  # the daemon's

    def deliver(
        self,
        outputs: list[Output],
        bad: list[BadRecord],
        forwarded: Sequence[Forward] = (),
    ) -> bool:
        """Publish and flush a batch's outputs and dead letters, retrying while a retriable
        failure lasts. Publishing again after a failure may repeat messages (same ids), never
        lose one. False when told to stop first: that batch must not be checkpointed."""
        attempt, resend = 0, True
        while True:
            try:
                self._send(outputs, bad, forwarded if resend else None)
            except ConnectorError as exc:
                if not exc.retriable:
                    raise
                # Still in flight: wait for them again. Lost: send everything again.
                resend = not (isinstance(exc, DeliveryFailed) and exc.pending)
                self.undelivered = True
                if isinstance(exc, StorageUnavailable):
                    self._state_dir.failed("recording outputs", exc)
                else:
                    self._health.set_condition("broker", False, f"outputs not delivered: {exc}")
                what = f"outputs not delivered ({exc})"
                if not back_off(attempt, what, self._health, self.stopping):
                    return False
                attempt += 1
                continue
            self.undelivered = False
            self._health.set_condition("broker", True)
            self._state_dir.works("recording outputs")
            return True

    def _send(
        self, outputs: list[Output], bad: list[BadRecord], forwarded: Sequence[Forward] | None
    ) -> None:
        """Send everything (``forwarded`` None: only wait for what is in flight), then flush."""
        if forwarded is not None:
            for item in forwarded:
                assert self._internal is not None
                self.dead_letters.send(
                    self._internal,
                    item.key,
                    item.value,
                    item.headers,
                    timestamp_ms=item.timestamp_ms,
                )
            for record in bad:
                key, value, headers = dead_letter(record, self._budget, self._group)
                self.dead_letters.send(self._topic, key, value, headers)
            for publisher in self.publishers:
                publisher.publish(outputs)
        for publisher in self.publishers:
            publisher.flush()
        self.dead_letters.flush(FLUSH_TIMEOUT_S)

    def delivered(self, outputs: list[Output], bad: list[BadRecord]) -> None:
        """Log a delivered batch's outputs and dead letters (an idle one: a burst's summary,
        if due)."""
        log_outputs(outputs)
        self._log.update(bad, time.monotonic())

    def close(self, first: bool) -> None:
        """Release the publishers and the sink; the first time, log the dead letters held."""
        for publisher in self.publishers:
            publisher.close()
        self.dead_letters.close()
        if first:
            self._log.flush(time.monotonic())


__all__ = ["BACKOFF_S", "BatchOutput", "back_off"]
