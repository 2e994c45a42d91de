"""The durable SQLite files of the daemon (outbox, checkpoints, audit log): how they open
and how they write, and what a full or read-only disk looks like to their callers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from connectors.stream import ConnectorError


class StorageUnavailable(ConnectorError):  # noqa: N818  # reads as a state
    """A state file cannot be opened or written now: the disk is full, read-only or not
    permitted. Retriable: freeing space or fixing the mount makes the same write succeed."""

    retriable = True


def open_durable(path: str | Path, schema: str = "") -> sqlite3.Connection:
    """A connection whose committed writes survive a killed process and a power loss
    (WAL, ``synchronous=FULL``); transactions are explicit (`write`), never implicit.
    ``schema`` (an idempotent script) runs once it is open.

    Raises:
        StorageUnavailable: the file cannot be created or opened for writing.
    """
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.OperationalError) as exc:
        raise StorageUnavailable(f"{path}: cannot open ({_reason(exc)})") from None
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if schema:
            db.executescript(schema)
    except sqlite3.OperationalError as exc:
        db.close()
        raise StorageUnavailable(f"{path}: cannot open ({_reason(exc)})") from None
    return db


class DurableFile:
    """A durable SQLite file opened when first needed and again after it could not be: a
    daemon started on a full or read-only disk waits for it instead of exiting."""

    def __init__(self, path: Path, schema: str = "") -> None:
        self.path, self._schema = path, schema
        self._db: sqlite3.Connection | None = None

    def connection(self) -> sqlite3.Connection:
        """The open connection.

        Raises:
            StorageUnavailable: the file cannot be opened yet.
        """
        if self._db is None:
            self._db = open_durable(self.path, self._schema)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@contextmanager
def write(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, its lock taken up front; rolled back if the block raises.

    Raises:
        StorageUnavailable: the write failed for want of space or permission (SQLite's
            operational errors); nothing of the transaction is stored.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself after some errors (a full disk among them).
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        raise StorageUnavailable(f"{_file(db)}: not written ({_reason(exc)})") from None


def _file(db: sqlite3.Connection) -> str:
    try:
        return str(db.execute("PRAGMA database_list").fetchone()[2])
    except sqlite3.Error:
        return "an SQLite file"


def _reason(exc: Exception) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


__all__ = ["DurableFile", "StorageUnavailable", "open_durable", "write"]
