"""A durable outbox: alerts and triggers survive a receiver being down and the daemon restarting.

A message is stored (SQLite, WAL, `synchronous=FULL`) before any delivery attempt, once per
(message id, receiver). `Dispatcher.run_due` tries what is due; a retriable failure
schedules the next attempt after an exponential backoff with full jitter (or the receiver's
`Retry-After`), a non-retriable one ends the message as "failed" with its reason. Every
message ends "delivered" or "failed"; nothing is dropped silently.

Payloads must not hold secrets (they sit on disk): receivers get routing keys, webhook URLs
and tokens at construction. Time is always passed in as `now` (seconds since the epoch), so
tests drive the schedule with an explicit clock.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from connectors.http import Receiver, ReceiverError
from connectors.sqlite import open_durable, write
from connectors.stream import ConnectorError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
State = Literal["pending", "delivered", "failed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    message_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    payload BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL,
    last_attempt_at REAL,
    last_error TEXT,
    last_status INTEGER,
    ordering_key TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, receiver)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (receiver, ordering_key) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS attempts (
    message_id TEXT NOT NULL,
    receiver TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    at REAL NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('delivered', 'retry', 'failed')),
    error TEXT,
    status INTEGER
);
"""
_ITEM_COLUMNS = (
    "message_id, receiver, payload, state, attempts, enqueued_at, next_attempt_at, "
    "last_attempt_at, last_error, last_status"
)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One message for one receiver, as stored."""

    message_id: str
    receiver: str
    payload: bytes
    state: State
    attempts: int
    enqueued_at: float
    next_attempt_at: float
    last_attempt_at: float | None
    last_error: str | None
    last_status: int | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery attempt; `outcome` is "delivered", "retry" (scheduled again) or "failed"."""

    message_id: str
    receiver: str
    attempt: int
    at: float
    outcome: Literal["delivered", "retry", "failed"]
    error: str | None
    status: int | None


class Outbox:
    """The outbox in one SQLite file; safe to share between threads.

    Backoff after the n-th consecutive failure is uniform in
    `[0, min(max_backoff_s, base_backoff_s * 2**(n-1))]` ("full jitter"), drawn from
    `random` (inject a seeded `random.Random(seed).random` for reproducible schedules).
    A `Retry-After` from the receiver replaces it, up to `max_retry_after_s`.
    `max_attempts` (None: retry forever) turns the last retriable failure into "failed".
    """

    def __init__(
        self,
        path: str | Path,
        *,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        max_retry_after_s: float = 3600.0,
        max_attempts: int | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        if not 0 < base_backoff_s <= max_backoff_s:
            raise ValueError(
                f"need 0 < base_backoff_s <= max_backoff_s, got {base_backoff_s}, {max_backoff_s}"
            )
        if max_attempts is not None and max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1 or None, got {max_attempts}")
        self._base = base_backoff_s
        self._cap = max_backoff_s
        self._max_retry_after = max_retry_after_s
        self._max_attempts = max_attempts
        self._random = random if random is not None else _default_random()
        self._lock = threading.Lock()
        self._closed = False
        # A message acknowledged by `enqueue` survives a power loss, not just a crash.
        self._db = open_durable(path)
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self._db.close()
            raise ConnectorError(
                f"outbox {path} has schema version {version}, this build reads "
                f"{SCHEMA_VERSION}: deliver or move it with the matching monitord version"
            )
        self._db.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")

    def enqueue(
        self, message_id: str, receiver: str, payload: bytes, *, now: float, ordering_key: str = ""
    ) -> bool:
        """Store a message for `receiver`, due at once. False if it was already stored.

        Messages sharing a non-empty `ordering_key` (for one receiver) are delivered in the
        order they were enqueued: a later one waits while an earlier one is pending, so a
        "resolve" never overtakes its "trigger" however their retries are scheduled.
        """
        if not message_id or not receiver:
            raise ValueError("message_id and receiver must not be empty")
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO outbox (message_id, receiver, payload, state, "
                "enqueued_at, next_attempt_at, ordering_key) VALUES (?, ?, ?, 'pending', ?, ?, ?)",
                (message_id, receiver, bytes(payload), now, now, ordering_key),
            )
            return cursor.rowcount == 1

    def due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Pending messages whose next attempt is at or before `now`, earliest first; of
        messages sharing an ordering key, only the oldest pending one."""
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox AS o WHERE state = 'pending' "
                "AND next_attempt_at <= ? AND (ordering_key = '' OR rowid = ("
                "  SELECT min(rowid) FROM outbox AS p WHERE p.state = 'pending'"
                "  AND p.receiver = o.receiver AND p.ordering_key = o.ordering_key)) "
                "ORDER BY next_attempt_at, rowid LIMIT ?",
                (now, limit),
            ).fetchall()
        return [OutboxItem(*row) for row in rows]

    def get(self, message_id: str, receiver: str) -> OutboxItem | None:
        """The stored message, whatever its state."""
        with self._transaction() as db:
            row = db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE message_id = ? AND receiver = ?",
                (message_id, receiver),
            ).fetchone()
        return None if row is None else OutboxItem(*row)

    def delivered(self, item: OutboxItem, now: float) -> None:
        """Record that the receiver took `item`: it is done."""
        self._record(item, now, "delivered", "delivered", now, None, None)

    def failed(self, item: OutboxItem, error: ReceiverError, now: float) -> State:
        """Record a failed attempt: retry later if it can help, else end as "failed".

        Returns the new state: "pending" (scheduled again) or "failed".
        """
        attempt = item.attempts + 1
        give_up = not error.retriable or (
            self._max_attempts is not None and attempt >= self._max_attempts
        )
        if give_up:
            self._record(item, now, "failed", "failed", now, str(error), error.status)
            return "failed"
        if error.retry_after_s is not None:
            delay = min(error.retry_after_s, self._max_retry_after)
        else:
            delay = self._random() * min(self._cap, self._base * 2.0 ** (attempt - 1))
        self._record(item, now, "pending", "retry", now + delay, str(error), error.status)
        return "pending"

    def pending(self) -> int:
        """How many messages still wait for delivery (due or not)."""
        with self._transaction() as db:
            row = db.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
        return int(row[0])

    def pending_by_receiver(self) -> dict[str, int]:
        """How many messages wait for each receiver that has any."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT receiver, count(*) FROM outbox WHERE state = 'pending' GROUP BY receiver"
            ).fetchall()
        return {str(receiver): int(n) for receiver, n in rows}

    def history(self, limit: int = 100) -> list[Attempt]:
        """The latest delivery attempts, newest first."""
        with self._transaction() as db:
            rows = db.execute(
                "SELECT message_id, receiver, attempt, at, outcome, error, status "
                "FROM attempts ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [Attempt(*row) for row in rows]

    def close(self) -> None:
        """Close the file; safe to call more than once."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _record(
        self,
        item: OutboxItem,
        now: float,
        state: State,
        outcome: str,
        next_attempt_at: float,
        error: str | None,
        status: int | None,
    ) -> None:
        with self._transaction() as db:
            # Guarded by state and attempt count: an outcome reported twice, or for an item
            # another dispatcher already finished, counts once.
            cursor = db.execute(
                "UPDATE outbox SET state = ?, attempts = attempts + 1, next_attempt_at = ?, "
                "last_attempt_at = ?, last_error = ?, last_status = ? "
                "WHERE message_id = ? AND receiver = ? AND state = 'pending' AND attempts = ?",
                (
                    state,
                    next_attempt_at,
                    now,
                    error,
                    status,
                    item.message_id,
                    item.receiver,
                    item.attempts,
                ),
            )
            if cursor.rowcount == 1:
                db.execute(
                    "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        item.message_id,
                        item.receiver,
                        item.attempts + 1,
                        now,
                        outcome,
                        error,
                        status,
                    ),
                )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._closed:
                raise ConnectorError("outbox is closed")
            with write(self._db) as db:
                yield db


def _default_random() -> Callable[[], float]:
    # Jitter only spreads retries out; it needs no cryptographic randomness.
    return random.Random().random


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What one `run_due` did: counts of messages delivered, scheduled again, and given up."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0


RETRY_LOG_INTERVAL_S = 60.0
"""Failed attempts that will be retried are logged once a minute per receiver (with how many
were not); an attempt that fails for good is always logged."""


class Dispatcher:
    """Delivers due outbox messages to the receivers named in them."""

    def __init__(
        self, outbox: Outbox, receivers: Mapping[str, Receiver], *, batch_size: int = 100
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._outbox = outbox
        self._receivers = dict(receivers)
        self._batch_size = batch_size
        # Retries logged at most once per receiver per RETRY_LOG_INTERVAL_S: a receiver that
        # is down fails every message of a burst, each attempt.
        self._retry_logged_at: dict[str, float] = {}
        self._unlogged_retries: dict[str, int] = {}

    def run_due(self, now: float) -> DispatchReport:
        """Try each message due at `now` once (up to `batch_size`) and record the outcomes."""
        delivered = retrying = failed = 0
        for item in self._outbox.due(now, self._batch_size):
            error = self._attempt(item)
            if error is None:
                self._outbox.delivered(item, now)
                delivered += 1
                continue
            state = self._outbox.failed(item, error, now)
            if state == "failed":
                failed += 1
            else:
                retrying += 1
            self._log_failure(item, error, state, now)
        return DispatchReport(delivered, retrying, failed)

    def _log_failure(
        self, item: OutboxItem, error: ReceiverError, state: State, now: float
    ) -> None:
        # One line per failed attempt: the receiver, its HTTP status and the error, whose
        # quoted answer has the request's credentials blanked out (connectors.http.classify).
        status = f"HTTP {error.status}" if error.status is not None else "no answer"
        attempt = item.attempts + 1
        if state == "failed":
            log.error(
                "delivery of %s to receiver %r failed for good (attempt %d, %s): %s",
                item.message_id,
                item.receiver,
                attempt,
                status,
                error,
            )
            return
        receiver = item.receiver
        if now - self._retry_logged_at.get(receiver, -RETRY_LOG_INTERVAL_S) < RETRY_LOG_INTERVAL_S:
            self._unlogged_retries[receiver] = self._unlogged_retries.get(receiver, 0) + 1
            return
        stored = self._outbox.get(item.message_id, receiver)
        wait = max(0.0, stored.next_attempt_at - now) if stored is not None else 0.0
        unlogged = self._unlogged_retries.pop(receiver, 0)
        log.warning(
            "delivery of %s to receiver %r failed (attempt %d, %s), retrying in %.1fs: %s%s",
            item.message_id,
            receiver,
            attempt,
            status,
            wait,
            error,
            f" ({unlogged} more failed attempts to it since the last such line)"
            if unlogged
            else "",
        )
        self._retry_logged_at[receiver] = now

    def _attempt(self, item: OutboxItem) -> ReceiverError | None:
        receiver = self._receivers.get(item.receiver)
        if receiver is None:
            return ReceiverError(
                f"no receiver named {item.receiver!r} is configured; configured: "
                f"{sorted(self._receivers)}",
                retriable=False,
            )
        try:
            receiver.deliver(item.payload)
        except ReceiverError as error:
            return error
        except ConnectorError as error:
            return ReceiverError(str(error), retriable=error.retriable)
        return None


__all__ = [
    "RETRY_LOG_INTERVAL_S",
    "SCHEMA_VERSION",
    "Attempt",
    "DispatchReport",
    "Dispatcher",
    "Outbox",
    "OutboxItem",
    "State",
]
