"""Delivery to receivers: alerts and retrain requests become durable outbox messages, a
thread delivers them.

`Delivery` is a `Publisher`. For every alert transition and every receiver taking alerts
whose ``match`` accepts the alert's labels, it renders the receiver's own payload; for every
retrain request and every receiver taking triggers whose ``match`` accepts its model,
model_version and reason, the payload is the request's CloudEvent. Either is stored in the
outbox (SQLite) before anything is sent, keyed by the output's deterministic id (for a
request, its idempotency key): a replay or a restart cannot enqueue the same message twice,
and a receiver that is down loses nothing. A background thread delivers due messages with
retries and backoff, so a slow receiver never stalls the daemon loop.

A receiver that forgets alerts not re-sent (Alertmanager, see its `resend`) has its firing
alerts re-posted at its interval, and resolved ones for a while; which alerts those are is
kept across restarts. Each receiver type (`monitord.receivers`) renders its own payloads.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from connectors.http import Receiver
from connectors.outbox import Dispatcher, Outbox
from connectors.pagerduty import dedup_key
from connectors.sqlite import StorageUnavailable
from connectors.tls import TlsFileError
from monitord.alerts import Alert
from monitord.cloudevent import encode
from monitord.config import ConfigError
from monitord.monitor import OffsetRange
from monitord.policy import Output
from monitord.receivers import ReceiverSettings
from monitord.retrain import RetrainTrigger


def build_receivers(
    settings: Sequence[ReceiverSettings], environ: Mapping[str, str] | None = None
) -> dict[str, Receiver]:
    """One connector per configured receiver, secrets read from the environment; one
    `ConfigError` listing every receiver's problems."""
    environ = os.environ if environ is None else environ
    receivers: dict[str, Receiver] = {}
    problems: list[str] = []
    for i, receiver in enumerate(settings):
        unset = [
            f"receivers.{i}.{key}: the environment variable {variable} is not set "
            f"(receiver {receiver.name!r})"
            for key, variable in receiver.variables().items()
            if not environ.get(variable)
        ]
        if receiver.name in receivers:
            unset.append(f"receivers.{i}.name: {receiver.name!r} is used twice")
        problems += unset
        if unset:
            continue
        try:
            receivers[receiver.name] = receiver.connector(environ)
        except TlsFileError as exc:
            problems.append(
                f"receivers.{i}.{exc.parameter}: {exc.reason} (receiver {receiver.name!r})"
            )
        except ValueError as exc:
            problems.append(f"receivers.{i} ({receiver.name!r}): {exc}")
    if problems:
        raise ConfigError("\n".join(problems))
    return receivers


log = logging.getLogger(__name__)

MAX_STALLED_PAUSE_S = 30.0
"""Longest wait between delivery rounds while the outbox cannot be written."""

BACKLOG_LOG_FROM = 10
"""A receiver's backlog is logged when it reaches this many messages, then at each tenfold."""


class BacklogWatch:
    """Logs a receiver's outbox backlog as it grows (10, 100, 1000... messages waiting) and
    once when it has drained: a receiver that is down shows in the log within a few
    messages, without a line per message."""

    def __init__(self) -> None:
        self._reported: dict[str, int] = {}  # receiver -> the level last logged

    def update(self, pending: Mapping[str, int]) -> None:
        for receiver in sorted(pending.keys() | self._reported.keys()):
            waiting, reported = pending.get(receiver, 0), self._reported.get(receiver, 0)
            if waiting == 0:
                if reported:
                    del self._reported[receiver]
                    log.info(
                        "outbox backlog for receiver %r drained",
                        receiver,
                        extra={"receiver": receiver, "pending": 0},
                    )
                continue
            level = _level(waiting)
            if level > reported:
                self._reported[receiver] = level
                log.warning(
                    "outbox backlog for receiver %r grew to %d messages: it does not take "
                    "them as fast as they come (see the delivery errors above)",
                    receiver,
                    waiting,
                    extra={"receiver": receiver, "pending": waiting},
                )


def _level(waiting: int) -> int:
    """The largest of 10, 100, 1000... at most ``waiting`` (0 below the first)."""
    level, next_level = 0, BACKLOG_LOG_FROM
    while waiting >= next_level:
        level, next_level = next_level, next_level * 10
    return level


@dataclass
class _Active:
    alert: Alert
    started: float  # when it fired (processing time)
    last_sent: float
    resolved_at: float | None = None


def _alert_from_json(data: dict[str, Any]) -> Alert:
    fields = dict(data)
    fields["offset"] = OffsetRange(**fields["offset"])
    fields["offsets"] = tuple(OffsetRange(**o) for o in fields["offsets"])
    fields["labels"] = tuple((str(k), str(v)) for k, v in fields["labels"])
    fields["annotations"] = tuple((str(k), str(v)) for k, v in fields["annotations"])
    return Alert(**fields)


class Delivery:
    """Publisher of alert transitions and retrain requests into the outbox, with a
    delivering thread.

    Owns ``outbox``: `close` stops the thread and closes it.
    """

    def __init__(
        self,
        receivers: Sequence[ReceiverSettings],
        outbox: Outbox,
        connectors: Mapping[str, Receiver],
        clock: Callable[[], float] = time.time,
        dispatch_interval_s: float = 1.0,
        resend_state: Path | None = None,
    ) -> None:
        self._receivers = tuple(receivers)
        self._outbox, self._clock = outbox, clock
        self._dispatcher = Dispatcher(outbox, connectors)
        self._backlog = BacklogWatch()
        self._by_name = {receiver.name: receiver for receiver in receivers}
        # (receiver name, label set) -> the alert to keep Alertmanager informed of
        self._active: dict[tuple[str, tuple[tuple[str, str], ...]], _Active] = {}
        # Alertmanager forgets an alert that is not re-sent: which alerts to keep re-sending
        # must survive a restart (a deploy), or every firing alert would lapse after one.
        self._resend_state = resend_state
        self._load_active()
        self._stop = threading.Event()
        self._interval = dispatch_interval_s
        self._thread: threading.Thread | None = None

    def start(self) -> Delivery:
        """Deliver due messages in the background until `close`."""
        self._thread = threading.Thread(target=self._deliver, name="monitord-delivery", daemon=True)
        self._thread.start()
        return self

    def publish(self, outputs: list[Output]) -> None:
        now = self._clock()
        alerts = [o for o in outputs if isinstance(o, Alert)]
        self._publish_alerts(alerts, now)
        self._publish_triggers([o for o in outputs if isinstance(o, RetrainTrigger)], now)
        if alerts:
            self._save_active()

    def _publish_triggers(self, triggers: list[RetrainTrigger], now: float) -> None:
        takers = [r for r in self._receivers if "triggers" in r.events]
        for request in triggers:
            route = {
                "model": request.model,
                "model_version": request.version,
                "reason": request.reason,
            }
            cloudevent = encode(request)
            for receiver in takers:
                if _matches(receiver, route):
                    payload = receiver.render_trigger(request, cloudevent)
                    # The id is the idempotency key: one message per request and receiver.
                    self._outbox.enqueue(request.id, receiver.name, payload, now=now)

    def _publish_alerts(self, alerts: list[Alert], now: float) -> None:
        takers = [r for r in self._receivers if "alerts" in r.events]
        for alert in alerts:
            labels, cloudevent = dict(alert.labels), encode(alert)
            for receiver in takers:
                if not _matches(receiver, labels):
                    continue
                key = (receiver.name, alert.labels)
                active = self._active.get(key)
                if alert.status == "firing":
                    active = self._active[key] = _Active(alert, now, now)
                elif active is not None:
                    active.alert, active.resolved_at, active.last_sent = alert, now, now
                started = active.started if active is not None else now
                payload = receiver.render_alert(alert, cloudevent, started=started, now=now)
                self._outbox.enqueue(
                    alert.id, receiver.name, payload, now=now, ordering_key=dedup_key(labels)
                )

    def flush(self) -> None:
        """Enqueue the re-sends that are due (stored durably, like every send)."""
        now = self._clock()
        changed = False
        for key, active in list(self._active.items()):
            receiver = self._by_name[key[0]]
            resend = receiver.resend
            done = active.resolved_at is not None and (
                resend is None or now - active.resolved_at > resend.resolved_for_s
            )
            if done:
                del self._active[key]
                changed = True
                continue
            if resend is None or now - active.last_sent < resend.interval_s:
                continue
            active.last_sent = now
            changed = True
            bucket = int(now // resend.interval_s)
            payload = receiver.render_alert(
                active.alert,
                encode(active.alert),
                started=active.started,
                now=now,
                resolved_at=active.resolved_at,
            )
            self._outbox.enqueue(
                f"{active.alert.id}/resend/{bucket}",
                receiver.name,
                payload,
                now=now,
                ordering_key=dedup_key(dict(active.alert.labels)),
            )
        if changed:
            self._save_active()

    def _load_active(self) -> None:
        path = self._resend_state
        if path is None or not path.exists():
            return
        try:
            rows = orjson.loads(path.read_bytes())
            for row in rows:
                if row["receiver"] not in self._by_name:
                    continue  # a receiver removed from the config
                alert = _alert_from_json(row["alert"])
                self._active[row["receiver"], alert.labels] = _Active(
                    alert, row["started"], row["last_sent"], row["resolved_at"]
                )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("%s: cannot read the re-send state (%s); starting without it", path, exc)

    def _save_active(self) -> None:
        path = self._resend_state
        if path is None:
            return
        rows = [
            {
                "receiver": receiver,
                "alert": dataclasses.asdict(active.alert),
                "started": active.started,
                "last_sent": active.last_sent,
                "resolved_at": active.resolved_at,
            }
            for (receiver, _), active in self._active.items()
        ]
        temporary = path.with_suffix(".tmp")
        try:
            temporary.write_bytes(orjson.dumps(rows))
            os.replace(temporary, path)  # atomic: a crash leaves the old or the new state
        except OSError as exc:  # a full or read-only state_dir: the batch is retried
            raise StorageUnavailable(f"{path}: not written ({exc.strerror})") from None

    def deliver_due(self) -> None:
        """Try every due message once now (the thread's step; tests call it directly), then
        log the backlog if it grew or drained."""
        self._dispatcher.run_due(self._clock())
        self._backlog.update(self._outbox.pending_by_receiver())

    def _deliver(self) -> None:
        pause, stalled = self._interval, False
        while not self._stop.wait(pause):
            try:
                self.deliver_due()
            except StorageUnavailable as exc:
                # An outcome could not be recorded: its message stays due and is sent again
                # (same id) once the outbox can be written. Back off meanwhile, as each round
                # sends it again; the thread must not die of it.
                if not stalled:
                    log.error("%s; deliveries are retried until it can be written", exc)
                stalled, pause = True, min(MAX_STALLED_PAUSE_S, pause * 2)
                continue
            if stalled:
                log.info("the outbox can be written again; delivering")
            stalled, pause = False, self._interval

    def close(self) -> None:
        """Stop the delivering thread; pending messages stay in the outbox for next time."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self._outbox.close()


def _matches(receiver: ReceiverSettings, labels: Mapping[str, str]) -> bool:
    return all(labels.get(name) in accepted for name, accepted in receiver.match.items())


__all__ = ["BACKLOG_LOG_FROM", "MAX_STALLED_PAUSE_S", "BacklogWatch", "Delivery", "build_receivers"]
