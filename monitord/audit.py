"""The audit log: every alert transition and retrain request, with its evidence.

A `Publisher` writing one row per decision to an SQLite file in ``state_dir`` (delivery
attempts and outcomes are recorded next to it, by the outbox), and a `DecisionRecorder`: a
retrain request the policy held back (cooldown, minimum events, daily cap) is a row with
status *suppressed* and the request it would have been as evidence (`record_held`, called
by whoever asked the policy).
Rows are keyed by the decision's deterministic id, so a replayed batch records nothing
twice. `monitord alerts` reads it: the label sets whose last transition is *firing*, and
recent history.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from connectors.sqlite import DurableFile, StorageUnavailable, write
from monitord.alerts import Alert
from monitord.policy import Output
from monitord.retrain import DecisionRecorder, Suppressed

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id TEXT PRIMARY KEY,
    recorded_at REAL NOT NULL,
    kind TEXT NOT NULL,            -- alert | retrain
    status TEXT NOT NULL,          -- firing | resolved | requested | suppressed
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    label_set TEXT NOT NULL,       -- JSON object; '{}' for retrain requests
    summary TEXT NOT NULL,
    evidence TEXT NOT NULL         -- the whole decision as JSON
);
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (recorded_at);
"""


@dataclass(frozen=True)
class Decision:
    """One audit row."""

    id: str
    recorded_at: float
    kind: str
    status: str
    model: str
    version: str
    labels: dict[str, str]
    summary: str


def record_held(decisions: list[Suppressed], recorder: DecisionRecorder | None) -> None:
    """Log each retrain request the policy held back and give it to ``recorder`` (the audit
    log, if any). A failure to record is logged, never raised: the row is lost, not the
    daemon (the log line above it remains)."""
    for decision in decisions:
        trigger = decision.trigger
        log.info(
            "retrain request held back by %s: %s",
            decision.guard,
            decision.detail,
            extra={
                "model": trigger.model,
                "model_version": trigger.version,
                "reason": trigger.reason,
                "guard": decision.guard,
                "decision_id": decision.id,
                "first_row": trigger.first_row,
                "row": trigger.row,
            },
        )
        if recorder is not None:
            try:
                recorder.record([decision])
            except Exception:
                log.exception("could not record suppressed decision %s", decision.id)


class AuditLog:
    """Decisions in one SQLite file; `publish` records, the queries read.

    While the file cannot be written (disk full, read-only), `publish` and `flush` raise
    `connectors.sqlite.StorageUnavailable` and the daemon retries the batch; decisions the
    policy holds back (`record`) are kept until a write succeeds, never dropped.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._file = DurableFile(path, _SCHEMA)
        self._clock = clock
        self._held: list[tuple[object, ...]] = []  # suppressed decisions not yet written
        self._closed = False
        try:
            self._file.connection()
        except StorageUnavailable as exc:
            log.error("%s; decisions are recorded once it can be written", exc)

    def publish(self, outputs: list[Output]) -> None:
        now = self._clock()
        rows = [_row(output, now) for output in outputs]
        if not rows and not self._held:  # most batches decide nothing: no empty transaction
            return
        self._write(rows)

    def record(self, decisions: list[Suppressed]) -> None:
        """Record retrain requests the policy held back (`DecisionRecorder`); while the file
        cannot be written they wait for the next `flush` (deciding must not fail)."""
        now = self._clock()
        self._held += [_suppressed_row(decision, now) for decision in decisions]
        try:
            self._write([])
        except StorageUnavailable as exc:
            log.warning("%s; %d held-back decisions wait for the next write", exc, len(self._held))

    def flush(self) -> None:
        """Write decisions `record` could not; each `publish` is committed already."""
        if self._held:
            self._write([])

    def _write(self, rows: list[tuple[object, ...]]) -> None:
        with write(self._file.connection()) as db:  # one transaction per batch
            db.executemany(
                "INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                self._held + rows,
            )
        self._held.clear()

    def active(self, models: Sequence[str] = ()) -> list[Decision]:
        """Label sets whose latest transition is *firing*, oldest first (of ``models``
        only, if any are named)."""
        where, parameters = _where(models, (), prefix="d.")
        query = f"""
            SELECT d.id, d.recorded_at, d.kind, d.status, d.model, d.version, d.label_set,
                   d.summary
            FROM decisions d
            JOIN (SELECT label_set, MAX(rowid) AS last FROM decisions
                  WHERE kind = 'alert' GROUP BY label_set) latest ON d.rowid = latest.last
            WHERE d.status = 'firing' {where} ORDER BY d.recorded_at, d.rowid
        """
        rows = self._file.connection().execute(query, parameters)
        return [_decision(row) for row in rows]

    def history(
        self, limit: int = 50, models: Sequence[str] = (), statuses: Sequence[str] = ()
    ) -> list[Decision]:
        """The latest ``limit`` decisions, newest first (of ``models`` and with one of
        ``statuses`` only, where given)."""
        where, parameters = _where(models, statuses)
        query = f"""
            SELECT id, recorded_at, kind, status, model, version, label_set, summary
            FROM decisions WHERE 1 = 1 {where} ORDER BY rowid DESC LIMIT ?
        """
        rows = self._file.connection().execute(query, (*parameters, limit))
        return [_decision(row) for row in rows]

    def evidence(
        self, limit: int = 1000, models: Sequence[str] = ()
    ) -> list[tuple[Decision, dict[str, Any]]]:
        """The latest ``limit`` decisions with their evidence (the decision as JSON), oldest
        first (of ``models`` only, if any are named)."""
        where, parameters = _where(models, ())
        query = f"""
            SELECT id, recorded_at, kind, status, model, version, label_set, summary, evidence
            FROM decisions WHERE 1 = 1 {where} ORDER BY rowid DESC LIMIT ?
        """
        rows = self._file.connection().execute(query, (*parameters, limit)).fetchall()
        return [(_decision(row[:8]), orjson.loads(row[8])) for row in reversed(rows)]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._file.close()


def _where(
    models: Sequence[str], statuses: Sequence[str], prefix: str = ""
) -> tuple[str, tuple[str, ...]]:
    """``AND`` clauses (placeholders only, never values) selecting models and statuses."""
    clauses = [
        f"AND {prefix}{column} IN ({', '.join('?' * len(values))})"
        for column, values in (("model", models), ("status", statuses))
        if values
    ]
    return " ".join(clauses), (*models, *statuses)


def _row(output: Output, now: float) -> tuple[object, ...]:
    evidence = orjson.dumps(dataclasses.asdict(output)).decode()
    if isinstance(output, Alert):
        labels = orjson.dumps(dict(output.labels), option=orjson.OPT_SORT_KEYS).decode()
        summary = dict(output.annotations).get("summary", "")
        return (
            output.id,
            now,
            "alert",
            output.status,
            output.model,
            output.version,
            labels,
            summary,
            evidence,
        )
    summary = (
        f"retrain {output.model}/{output.version} ({output.reason}): "
        f"{', '.join(output.drifted_features) if output.reason == 'drift' else output.detail}"
    )
    return (
        output.id,
        now,
        "retrain",
        "requested",
        output.model,
        output.version,
        "{}",
        summary,
        evidence,
    )


def _suppressed_row(decision: Suppressed, now: float) -> tuple[object, ...]:
    trigger = decision.trigger
    return (
        decision.id,
        now,
        "retrain",
        "suppressed",
        trigger.model,
        trigger.version,
        "{}",
        f"retrain {trigger.model}/{trigger.version} ({trigger.reason}) held back by "
        f"{decision.guard}: {decision.detail}",
        orjson.dumps(dataclasses.asdict(decision)).decode(),
    )


def _decision(row: tuple[str, float, str, str, str, str, str, str]) -> Decision:
    id_, at, kind, status, model, version, labels, summary = row
    return Decision(id_, at, kind, status, model, version, orjson.loads(labels), summary)


STATUSES = ("firing", "resolved", "requested", "suppressed")
"""The status of a decision: an alert's transition, or a retrain request's fate."""


__all__ = ["STATUSES", "AuditLog", "Decision", "record_held"]
