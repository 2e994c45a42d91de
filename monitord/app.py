"""One monitord process's parts and their lifetime.

`App` builds the daemon (its source, sink, publishers, checkpoint store and registry:
`monitord.service`), the admin endpoint and the shutdown watchdog once, owns SIGTERM and
SIGINT, and closes everything in the order written in `App.__init__`. `monitord run`,
`monitord demo`, `monitord retrain --direct` and the tests build through it::

    with App() as app:
        app.build_daemon(config, observed=True)
        app.serve_admin()
        app.stop_on_signals(config.shutdown.grace_s)
        app.run()

A signal handler only sets `stopping` (and starts the watchdog); the loop finishes its
batch, and leaving the ``with`` closes the rest.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from types import FrameType
from typing import Any, TypeVar

from connectors.http import Receiver
from connectors.outbox import Outbox
from monitord.admin import AdminServer, Health, TokenBucket
from monitord.config import Config, ConfigError
from monitord.daemon import Daemon
from monitord.metrics import DaemonMetrics
from monitord.outputs import Publisher
from monitord.service import build_kafka_daemon, observability, trigger_publishers

log = logging.getLogger(__name__)

T = TypeVar("T")

OVERDUE_EXIT = 4
"""The exit status when a shutdown outlasts ``shutdown.grace_s``."""

Handler = Callable[[int, FrameType | None], Any] | int | None


class App:
    """The parts of one process, built once and closed in one order (see `__init__`)."""

    def __init__(self) -> None:
        self.stopping = threading.Event()  # set by a signal; the daemon's loop watches it
        self.received: list[int] = []  # the signal that stopped us (logged by the loop)
        self.daemon: Daemon | None = None
        self.admin: AdminServer | None = None
        self.health: Health | None = None
        self.metrics: DaemonMetrics | None = None
        self._watchdog: threading.Timer | None = None
        self._grace_s: float | None = None
        self._previous: dict[int, Handler] = {}
        # Closing runs these last pushed first, so this is the order, bottom to top:
        # 1. the daemon: checkpoint, leave the group, flush and close its outputs, the
        #    checkpoint store and the registry (`Daemon.close`);
        # 2. the admin endpoint, which answers /readyz and /metrics while the daemon drains;
        # 3. the watchdog: the drain finished within the grace period;
        # 4. what `enter` took (the demo's broker; `retrain --direct`'s sink and
        #    publishers), last entered first;
        # 5. the signal handlers, so a second signal during the drain is still ours.
        self._stack = ExitStack()
        self._stack.callback(self._restore_signals)
        self._parts = self._stack.enter_context(ExitStack())
        self._stack.callback(self._cancel_watchdog)
        self._stack.callback(self._close_admin)
        self._stack.callback(self._close_daemon)

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close everything built, in the written order; safe to call more than once."""
        self._stack.close()

    def enter(self, part: AbstractContextManager[T]) -> T:
        """Own ``part`` until `close` (step 4 of the order)."""
        return self._parts.enter_context(part)

    def build_daemon(
        self, config: Config, extra: Sequence[Publisher] = (), *, observed: bool = False
    ) -> Daemon:
        """The Kafka daemon of ``config`` publishing also to ``extra``; ``observed``: with
        readiness and metrics (`health`, `metrics`) for the admin endpoint."""
        if observed:
            self.health, self.metrics = observability(config)
        daemon = build_kafka_daemon(
            config, list(extra), health=self.health, metrics=self.metrics, stopping=self.stopping
        )
        self.daemon = daemon
        return daemon

    def serve_admin(self) -> AdminServer | None:
        """Start the admin endpoint of the daemon's config (None when not enabled)."""
        daemon, health, metrics = self.daemon, self.health, self.metrics
        if daemon is None or health is None or metrics is None:
            raise RuntimeError("serve_admin needs build_daemon(config, observed=True) first")
        admin = daemon.config.admin
        if not admin.enabled:
            return None
        try:
            self.admin = AdminServer(
                admin.host,
                admin.port,
                metrics,
                health,
                daemon.status,
                request_retrain=daemon.policy.request_retrain,
                retrain_clients=admin.retrain_clients,
                retrain_limit=TokenBucket(admin.retrain_per_minute, admin.retrain_burst),
            ).start()
        except OSError as exc:
            raise ConfigError(
                f"admin.port: cannot listen on {admin.host}:{admin.port} ({exc.strerror}); "
                "choose a free port or set admin.enabled = false"
            ) from None
        log.info("admin endpoint on %s", self.admin.url)
        return self.admin

    def trigger_publishers(
        self, config: Config, connectors: Mapping[str, Receiver]
    ) -> tuple[list[Publisher], Outbox | None]:
        """What a request published without a daemon goes to (`monitord.service`)."""
        return trigger_publishers(config, connectors, self._parts)

    def stop_on_signals(self, grace_s: float | None = None) -> None:
        """SIGTERM and SIGINT set `stopping`; with ``grace_s``, a watchdog then exits the
        process with `OVERDUE_EXIT` unless `close` finished by then."""
        self._grace_s = grace_s
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous.setdefault(sig, signal.signal(sig, self._on_signal))

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            return
        self.received.append(signum)
        self.stopping.set()  # the loop finishes its batch, then close() drains
        if self._grace_s is not None:
            self._watchdog = threading.Timer(self._grace_s, self._overdue)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _overdue(self) -> None:
        # Whatever was not checkpointed is processed again after a restart (same ids).
        print(
            f"monitord: error: shutdown exceeded {self._grace_s:g}s; exiting now",
            file=sys.stderr,
        )
        os._exit(OVERDUE_EXIT)

    def run(self) -> None:
        """Run the daemon's loop until a signal; say which one stopped it."""
        assert self.daemon is not None
        self.daemon.run()
        if self.received:
            log.info(
                "%s received: draining within shutdown.grace_s (%gs)",
                signal.Signals(self.received[0]).name,
                self._grace_s,
            )

    def _close_daemon(self) -> None:
        if self.daemon is not None:
            self.daemon.close()

    def _close_admin(self) -> None:
        if self.admin is not None:
            self.admin.close()

    def _cancel_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _restore_signals(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


__all__ = ["OVERDUE_EXIT", "App"]
