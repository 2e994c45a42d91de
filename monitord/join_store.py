"""The join store: a partition's predictions waiting for their labels.

`JoinStore` (one per inference partition, checkpointed with it in parts:
`monitord.join_parts`) keeps the predictions that wait for a label, the labels that came
before their prediction, and the event ids already joined or given up (to tell a duplicate
or a conflicting label from an orphan), each bounded (``labels.max_pending``,
``labels.max_delay_s``, ``labels.remember_joined``); what a bound pushes out is counted.
`monitord.labels.LabelJoin` owns the stores and decides what meets what.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson

from connectors.stream import Record, TopicPartition
from monitord.arrival_order import ArrivalOrder
from monitord.join_parts import (
    FULL_AFTER,
    JOURNAL_SLACK,
    JoinJournal,
    JoinParts,
    PartChain,
    apply,
    delta,
)

COMPACT_SLACK = 1024
"""Order entries of departed ids tolerated beyond twice the live ones before compacting."""
GIVEN_UP = None
"""What `JoinStore.done` holds for a prediction evicted unlabelled (no label is null)."""


class Label(NamedTuple):
    """One label record, decoded (a named tuple: one is built per label record)."""

    event_id: str
    label: Any
    model: str | None
    time: float  # seconds: the label's own time, else its record's
    record: Record


class Joined(NamedTuple):
    """A prediction and its label (a named tuple: one is built per joined label)."""

    model: str
    version: str
    prediction: Any
    label: Any
    prediction_time: float
    label_time: float
    partition: TopicPartition  # the prediction's
    offset: int
    record: Record  # the record whose arrival made the pair (the label's, or the event's)


# A pending prediction: (model, version, prediction, event time, offset, record time in ms).
PendingPrediction = tuple[str, str, Any, float, int, int]
# A label waiting for its prediction: (label, model or "", label time, the label's record,
# its gate time in ms).
EarlyLabel = tuple[Any, str, float, Record, float]


@dataclass
class JoinStore:
    """What one inference partition's predictions wait with (module docstring).

    Dictionaries give each id's entry; deques keep arrival order, so the oldest entry is
    found in constant time (popping the front of a dict leaves holes every later pop
    scans: 14 us a pop at 200,000 entries).
    """

    partition: TopicPartition
    max_pending: int
    max_delay_s: float
    remember: int
    pending: dict[str, PendingPrediction] = field(default_factory=dict)
    early: dict[str, EarlyLabel] = field(default_factory=dict)
    # event id -> its label (`_remembered`), or GIVEN_UP
    done: dict[str, Any] = field(default_factory=dict)
    changed: bool = False  # since the last checkpoint, without an offset moving maybe
    expected_delay_s: float = math.inf  # label coverage: labelled within this is covered
    track_coverage: bool = True  # off: no verdicts (labels.min_coverage = 0)
    newest: float = -math.inf  # event time of the newest prediction added
    label_clock: float = -math.inf  # the newest label time when last stored (expiry clock)
    # An entry stamped further than this after the clock it falls due by is set aside
    # (`ArrivalOrder.due`), not left to hold back those behind it (events.max_time_ahead_s).
    max_ahead_s: float = 3600.0
    # Arrival order (time, event id); an entry whose id has left since is skipped.
    pending_order: ArrivalOrder = field(default_factory=ArrivalOrder)
    early_order: ArrivalOrder = field(default_factory=ArrivalOrder)
    done_order: deque[str] = field(default_factory=deque)
    # Pending predictions in arrival order, for coverage; those past expected_delay_s
    # unlabelled.
    due: ArrivalOrder = field(default_factory=ArrivalOrder)
    overdue: set[str] = field(default_factory=set)
    # Where each prediction's coverage verdict goes, in order: (model, version, covered).
    coverage: list[tuple[str, str, bool]] = field(default_factory=list)
    # What changed since the last stored part (None: the next part is full), and the parts
    # stored (`monitord.join_parts`).
    journal: JoinJournal | None = None
    chain: PartChain = field(default_factory=PartChain)

    def add(
        self,
        event_id: str,
        pending: PendingPrediction,
        record: Record,
        counts: Counter[tuple[str, str]],
        join_early: bool = True,
    ) -> Joined | None:
        """A prediction: joined with its early label if one waits (unless not
        ``join_early``: the label waits on, its join deferred by `LabelJoin`), else
        pending."""
        self.changed = True
        model = pending[0]
        if join_early and self.early:
            early = self.early.pop(event_id, None)
            if early is not None and early[1] in ("", model):
                label, _, label_time, _, _ = early
                self._remember(event_id, _remembered(label))
                counts[model, "joined"] += 1
                if self.track_coverage:
                    self.coverage.append((model, pending[1], True))
                return Joined(
                    model,
                    pending[1],
                    pending[2],
                    label,
                    pending[3],
                    label_time,
                    self.partition,
                    pending[4],
                    record,
                )
            if early is not None:  # the label names another model: no label of this one
                counts["", "orphan"] += 1
        if event_id in self.pending or event_id in self.done:
            counts[model, "duplicate_prediction"] += 1
            return None
        self.pending[event_id] = pending
        if self.journal is not None:
            self.journal.added.append(event_id)
        self.pending_order.append(pending[3], event_id)
        if self.track_coverage:
            self.due.append(pending[3], event_id)
        if len(self.pending_order) > 2 * len(self.pending) + COMPACT_SLACK:
            self._compact()
        self.newest = max(self.newest, pending[3])
        if len(self.pending) > self.max_pending:
            self._give_up(self.pending_order.oldest(self.pending, 3), counts)
        return None

    def add_all(
        self,
        model: str,
        version: str,
        rows: tuple[list[str], list[Any], list[float], list[int], list[int]],
        counts: Counter[tuple[str, str]],
    ) -> None:
        """Predictions of one model version, as columns ``(event ids, predictions, event
        times, offsets, record times in ms)``, as `add` would take each while no early label
        waits here (the common case, without a call per prediction)."""
        assert not self.early
        self.changed = True
        ids, predictions, times, offsets, record_ms = rows
        pending = self.pending
        if (
            len(pending) + len(ids) <= self.max_pending
            and pending.keys().isdisjoint(ids)
            and self.done.keys().isdisjoint(ids)
            and len(set(ids)) == len(ids)
        ):
            # No duplicate and no eviction: what the loop of `_add_each` does, in C.
            model_version = itertools.repeat(model), itertools.repeat(version)  # endless
            entries = zip(*model_version, predictions, times, offsets, record_ms, strict=False)
            pending.update(zip(ids, entries, strict=False))
            if self.journal is not None:
                self.journal.added.extend(ids)
            self.pending_order.extend(times, ids)
            if self.track_coverage:
                self.due.extend(times, ids)
            latest = float(np.fmax.reduce(times, initial=-math.inf))  # NaN: not a time
            self.newest = max(self.newest, latest)
        else:
            each = zip(ids, predictions, times, offsets, record_ms, strict=True)
            self._add_each(model, version, each, counts)
        if len(self.pending_order) > 2 * len(pending) + COMPACT_SLACK:
            self._compact()

    def _add_each(
        self,
        model: str,
        version: str,
        rows: Iterable[tuple[str, Any, float, int, int]],
        counts: Counter[tuple[str, str]],
    ) -> None:
        """`add_all` one prediction at a time: duplicates counted, the oldest evicted."""
        pending, done, order, limit = self.pending, self.done, self.pending_order, self.max_pending
        due = self.due if self.track_coverage else None
        newest = self.newest
        journal = self.journal
        for event_id, prediction, time, offset, record_ms in rows:
            if event_id in pending or event_id in done:
                counts[model, "duplicate_prediction"] += 1
                continue
            pending[event_id] = (model, version, prediction, time, offset, record_ms)
            if journal is not None:
                journal.added.append(event_id)
            order.append(time, event_id)
            if due is not None:
                due.append(time, event_id)
            if time > newest:  # noqa: PLR1730 (a comparison, cheaper than a call a row; NaN: no)
                newest = time
            if len(pending) > limit:
                self._give_up(order.oldest(pending, 3), counts)
        self.newest = newest

    def joined(self, event_ids: Sequence[str], labels: Sequence[Any]) -> None:
        """Labels met these pending predictions (plain labels, no coverage tracked: what
        `join` does for each, at once)."""
        pending, journal = self.pending, self.journal
        for event_id in event_ids:
            del pending[event_id]
        self.changed = True
        if journal is not None:
            journal.left.extend(event_ids)
        if self.remember > 0:
            done, done_order = self.done, self.done_order
            if done.keys().isdisjoint(event_ids):  # as always: a pending id is not done
                done_order.extend(event_ids)
            else:
                done_order.extend(e for e in event_ids if e not in done)
            done.update(zip(event_ids, labels, strict=True))
            if journal is not None:
                journal.remembered.extend(event_ids)
            while len(done_order) > self.remember:
                forgotten = done_order.popleft()
                done.pop(forgotten, None)
                if journal is not None:
                    journal.forgotten.append(forgotten)

    def _compact(self) -> None:
        """Drop the order entries of ids that left (joined), which would otherwise stay
        until their time expires: rebuilt from the dictionaries' own insertion order, the
        entries set aside kept aside."""
        pending, early = self.pending, self.early
        self.pending_order = ArrivalOrder(
            ((p[3], e) for e, p in pending.items()), self.pending_order.parked()
        )
        waiting = {e for _, e in self.due}  # not swept yet
        self.due = ArrivalOrder(
            ((p[3], e) for e, p in pending.items() if e in waiting), self.due.parked()
        )
        self.early_order = ArrivalOrder(
            ((label[2], e) for e, label in early.items()), self.early_order.parked()
        )

    def take(self, label: Label, counts: Counter[tuple[str, str]]) -> Joined | bool | None:
        """The label's prediction if it waits here (joined); False if this store knows the
        event id as done (counted); None if it knows nothing of it."""
        found = self.pending.get(label.event_id)
        if found is not None and label.model in (None, found[0]):
            if label.time - found[3] > self.max_delay_s:  # waited too long: given up
                self._give_up(label.event_id, counts)
                counts[found[0], "late"] += 1
                return False
            return self.join(label, found, counts)
        if label.event_id not in self.done:
            return None
        seen = self.done[label.event_id]
        model = ""  # a label's own model name is not counted under: it is unchecked input
        if seen is GIVEN_UP:
            counts[model, "late"] += 1
        elif seen == _remembered(label.label):
            counts[model, "duplicate"] += 1
        else:
            counts[model, "conflicting"] += 1
        return False

    def join(
        self, label: Label, found: PendingPrediction, counts: Counter[tuple[str, str]]
    ) -> Joined:
        """The label meets its pending prediction ``found``."""
        event_id = label.event_id
        del self.pending[event_id]
        self.changed = True
        if self.journal is not None:
            self.journal.left.append(event_id)
        self._remember(event_id, _remembered(label.label))
        counts[found[0], "joined"] += 1
        if not self.track_coverage:
            pass
        elif event_id in self.overdue:
            self.overdue.discard(event_id)  # its coverage verdict was given
        else:
            covered = label.time - found[3] <= self.expected_delay_s
            self.coverage.append((found[0], found[1], covered))
        return Joined(
            found[0],
            found[1],
            found[2],
            label.label,
            found[3],
            label.time,
            self.partition,
            found[4],
            label.record,
        )

    def wait(
        self, label: Label, counts: Counter[tuple[str, str]], gate_ms: float = -math.inf
    ) -> bool:
        """Keep a label (released at gate time ``gate_ms``) whose prediction has not come
        (yet), or whose join waits its turn (`LabelJoin`); False if one waits already."""
        self.changed = True
        waiting = self.early.get(label.event_id)
        if waiting is not None:  # the first stands, as once joined (`take`)
            same = _remembered(waiting[0]) == _remembered(label.label)
            counts["", "duplicate" if same else "conflicting"] += 1
            return False
        record = label.record  # its position only: the bytes are not kept
        where = Record(
            record.topic, record.partition, record.offset, None, None, record.timestamp_ms
        )
        self.early[label.event_id] = (label.label, label.model or "", label.time, where, gate_ms)
        self.early_order.append(label.time, label.event_id)
        if len(self.early_order) > 2 * len(self.early) + COMPACT_SLACK:
            self._compact()
        if len(self.early) > self.max_pending:
            del self.early[self.early_order.oldest(self.early, 2)]
            counts["", "orphan"] += 1
        return True

    def expire(self, now: float, counts: Counter[tuple[str, str]]) -> None:
        """Give up predictions and early labels older than ``max_delay_s`` at event time
        ``now`` (the newest label time seen); one stamped more than ``max_ahead_s`` after
        ``now`` does not hold back those that came after it."""
        cutoff, horizon = now - self.max_delay_s, now + self.max_ahead_s
        pending = self.pending
        for event_id in self.pending_order.due(cutoff, horizon, pending, 3):  # NaN times too
            if event_id in pending:
                self._give_up(event_id, counts)
        early = self.early
        for event_id in self.early_order.due(cutoff, horizon, early, 2):
            if early.pop(event_id, None) is not None:
                self.changed = True
                counts["", "orphan"] += 1

    def _give_up(self, event_id: str, counts: Counter[tuple[str, str]]) -> None:
        pending = self.pending.pop(event_id)
        self.changed = True
        if self.journal is not None:
            self.journal.left.append(event_id)
        counts[pending[0], "evicted"] += 1
        self._remember(event_id, GIVEN_UP)
        if not self.track_coverage:
            pass
        elif event_id in self.overdue:
            self.overdue.discard(event_id)
        else:
            self.coverage.append((pending[0], pending[1], False))

    def sweep(self, now: float) -> None:
        """Predictions still unlabelled ``expected_delay_s`` before event time ``now`` are
        not covered (each told once; they keep waiting for their label). One stamped more
        than ``max_ahead_s`` after ``now`` does not hold back those that came after it."""
        cutoff = now - self.expected_delay_s
        for event_id in self.due.due(cutoff, now + self.max_ahead_s, self.pending, 3):
            pending = self.pending.get(event_id)
            if pending is not None and event_id not in self.overdue:
                self.overdue.add(event_id)
                if self.journal is not None:
                    self.journal.swept.append(event_id)
                self.changed = True
                self.coverage.append((pending[0], pending[1], False))

    def _remember(self, event_id: str, text: Any) -> None:
        if self.remember <= 0:
            return
        if event_id not in self.done:
            self.done_order.append(event_id)
        self.done[event_id] = text
        journal = self.journal
        if journal is not None:
            journal.remembered.append(event_id)
        if len(self.done_order) > self.remember:
            forgotten = self.done_order.popleft()
            self.done.pop(forgotten, None)
            if journal is not None:
                journal.forgotten.append(forgotten)

    def snapshot(self) -> bytes:
        """The store as one JSON document, a full part (record fields of early labels
        included)."""
        # Dictionaries as JSON objects (their order is their arrival order): no list per
        # entry to build, at up to 200,000 entries each.
        return orjson.dumps(
            {
                "pending": self.pending,
                "done": self.done,
                "due": [entry for entry in self.due if entry[1] in self.pending],
                "overdue": sorted(self.overdue),
                **self._whole(),
            },
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    def parts(self) -> JoinParts:
        """The store as its checkpoint stores it: the changes since the last part stored,
        or a full part (`monitord.join_parts`)."""
        journal, chain = self.journal, self.chain
        if journal is None or chain.wants_full(len(journal), self._entries()):
            return chain.take(self.snapshot(), full=True, changes=0)
        changes = delta(self.pending, self.done, self.overdue, journal)
        blob = orjson.dumps({**changes, **self._whole()}, option=orjson.OPT_SERIALIZE_NUMPY)
        return chain.take(blob, full=False, changes=len(journal))

    def _whole(self) -> dict[str, Any]:
        """What every part holds whole: the early labels, the ids set aside, the clocks."""
        early = [
            [event_id, label, model, time, [*record[:3], record.timestamp_ms], gate]
            for event_id, (label, model, time, record, gate) in self.early.items()
        ]
        return {
            "early": early,
            "parked": self._parked(),
            "newest": self.newest if math.isfinite(self.newest) else None,
            "label_clock": self.label_clock if math.isfinite(self.label_clock) else None,
        }

    def saved(self) -> None:
        """The part last taken is stored: the changes from now on are journaled."""
        self.chain.stored()
        self.journal = JoinJournal()
        self.changed = False

    def bound_journal(self) -> None:
        """Drop a journal grown past what a full part holds (nothing stored for long:
        checkpoints off, a full disk): the next part is full."""
        journal = self.journal
        if journal is not None and len(journal) > FULL_AFTER * self._entries() + JOURNAL_SLACK:
            self.journal = None

    def _entries(self) -> int:
        """What a full part holds, in entries (the measure deltas are weighed against)."""
        return len(self.pending) + len(self.done) + len(self.early)

    def _parked(self) -> dict[str, list[str]]:
        """The ids each order has set aside (`ArrivalOrder.due`) and still holds, so that a
        restored store falls due as this one would."""
        pending, early = self.pending, self.early
        parked = {
            "pending": [e for e in self.pending_order.parked() if e in pending],
            "early": [e for e in self.early_order.parked() if e in early],
            "due": [e for e in self.due.parked() if e in pending],
        }
        return {name: sorted(ids) for name, ids in parked.items() if ids}

    def restore(self, full: bytes, deltas: Sequence[bytes] = ()) -> None:
        """Load the store from a full part (`snapshot`) and the deltas stored after it
        (`parts`)."""
        data = orjson.loads(full)
        pending = data["pending"]
        if isinstance(pending, list):  # the first format: [event id, *entry] rows
            pending = {row[0]: row[1:] for row in pending}
        done = dict(data["done"])  # an object, or [event id, label] rows at first
        overdue = set(data.get("overdue", ()))
        # Coverage order entries (time, id, the part that added them), and the part that
        # last found each id overdue or saw it leave: an entry found overdue since it came
        # has gone, and so has one whose id left since (back since: the later entry is its).
        due = [(time, event_id, 0) for time, event_id in data.get("due", ())]
        gone_at: dict[str, float] = {}
        for part, blob in enumerate(deltas, start=1):
            data = orjson.loads(blob)
            added = apply(data, pending, done, overdue)
            if self.track_coverage:
                due += [(pending[event_id][3], event_id, part) for event_id in added]
            # A part's ids left before those it added (`apply`): its own entries stay.
            gone_at.update(dict.fromkeys(data["left"], part - 0.5))
            gone_at.update(dict.fromkeys(data["overdue"], part))
        # Record times came in later: a prediction stored without one joins as untimed.
        self.pending = {
            e: (row[0], row[1], row[2], _float(row[3]), row[4], row[5] if len(row) > 5 else -1)
            for e, row in pending.items()
        }
        self.done, self.done_order, self.overdue = done, deque(done), overdue
        due = [entry for entry in due if gone_at.get(entry[1], -1) < entry[2]]
        self._restore_whole(data, [(_float(t), e) for t, e, _ in due if e in self.pending])
        self.journal = None  # a new owner writes a chain of its own, from a full part
        self.chain.forget()
        self.changed = False

    def _restore_whole(self, data: dict[str, Any], due: list[tuple[float, str]]) -> None:
        """What the last part holds whole (`_whole`), and the orders rebuilt."""
        self.early = {
            row[0]: (
                row[1],
                row[2],
                _float(row[3]),
                Record(row[4][0], row[4][1], row[4][2], None, None, row[4][3]),
                _gate(row[5] if len(row) > 5 else row[4][3]),
            )
            for row in data["early"]
        }
        parked = data.get("parked", {})
        self.pending_order = ArrivalOrder(
            ((p[3], e) for e, p in self.pending.items()), set(parked.get("pending", ()))
        )
        self.early_order = ArrivalOrder(
            ((early[2], e) for e, early in self.early.items()), set(parked.get("early", ()))
        )
        self.due = ArrivalOrder(due, set(parked.get("due", ())))
        newest = data.get("newest")
        self.newest = -math.inf if newest is None else float(newest)
        clock = data.get("label_clock")
        self.label_clock = -math.inf if clock is None else float(clock)


def _float(value: float | None) -> float:
    """A stored time: a JSON number, or null for NaN (JSON has no NaN)."""
    return math.nan if value is None else float(value)


def _gate(value: float | None) -> float:
    """A stored gate time: a JSON number, or null for none yet (-inf)."""
    return -math.inf if value is None else float(value)


def _remembered(label: Any) -> Any:
    """What a joined id remembers of its label: enough to tell the same label from another
    (the label itself, or for text over 24 characters an 8-byte hash of it)."""
    if type(label) is not str or len(label) <= 24:
        return label
    return "#" + hashlib.blake2b(label.encode(), digest_size=8).hexdigest()


__all__ = [
    "COMPACT_SLACK",
    "GIVEN_UP",
    "EarlyLabel",
    "JoinStore",
    "Joined",
    "Label",
    "PendingPrediction",
]
