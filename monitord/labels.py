"""Labels joined to their predictions: label records decoded, and `LabelJoin`, which owns
a consumer's join stores (`monitord.join_store`) and its label gate (`monitord.label_gate`).

A label arrives inline in its inference event (``events.label``) or later as a record of
its own on a label topic (``labels.topics``): a JSON object with the prediction's
``event_id``, the ``label`` and optionally the ``model`` and a ``timestamp``. Label topics
are keyed and partitioned like the inference topic, so partition ``p`` of each lands on the
consumer holding the other's ``p`` (Kafka's range assignment, equal partition counts).

`JoinStore` (one per inference partition, checkpointed with it in parts) keeps the predictions that
wait for a label, the labels that came before their prediction, and the event ids already
joined or given up (to tell a duplicate or a conflicting label from an orphan), each
bounded (``labels.max_pending``, ``labels.max_delay_s``, ``labels.remember_joined``); what
a bound pushes out is counted. A label whose prediction is held by another consumer (topics
not co-partitioned) waits as an early label until it is evicted: an orphan, counted.

`LabelGate` makes the join independent of how polls interleave the topics: a label record
is folded only once every partition of this consumer, inference and label, is read past the
label's record time (or read to its end), merged across label partitions by time, so its
prediction, written before it, is already in the store. A restart or a slow fetch therefore
joins the same pairs in the same order. A label whose record time is before its prediction's
record time (a producer's clock behind) may be released before or after its prediction is
read, as the batches fall: either way the pair joins at the prediction's record time in the
same gate order (`LabelJoin._turn`), the label waiting in the store meanwhile.
"""

from __future__ import annotations

import heapq
import itertools
import math
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypeGuard, cast

import numpy as np
import orjson

from connectors.stream import Polled, Record, TopicPartition, one_partition
from detectors.detection import FloatArray
from detectors.profile import CATEGORY_CHARS
from monitord.clock import now, parse_event_time
from monitord.config import EventFields, LabelSettings
from monitord.events import BadRecord, EventGroup, json_object
from monitord.join_parts import JoinParts
from monitord.join_store import (
    Joined,
    JoinStore,
    Label,
    PendingPrediction,
)
from monitord.label_gate import LabelGate, release_position

JOIN_OUTCOMES = (
    "joined",  # a label met its prediction
    "duplicate",  # the same label again for an event id joined, or waiting for its prediction
    "conflicting",  # a different label for one of those (the first stands)
    "late",  # the prediction had been evicted (age or size) before its label came
    "orphan",  # no such prediction: evicted as an early label, or never seen
    "evicted",  # a prediction given up unlabelled (age or size)
    "unjoinable",  # a prediction without an event id, with label topics configured
    "duplicate_prediction",  # an event id seen before: the first prediction stands
    "bad_label",  # an inline label that is an array or an object: no label
    "unscored",  # joined, but no class or number its version's task scores (not tested)
)
"""Outcomes counted per model; those of a label without its prediction (orphan, duplicate,
conflicting, late) under the empty model: a label's own model name is unchecked input."""

_INT_LOW, _INT_HIGH = -(2**63), 2**63 - 1
"""Integers stored as they are (JSON writers refuse wider ones): others become floats."""


def decode_labels(
    records: list[Record], fields: EventFields, max_id_chars: int
) -> tuple[list[Label], list[BadRecord]]:
    """Label records in order, and the ones that are not labels (with a reason)."""
    labels: list[Label] = []
    bad: list[BadRecord] = []
    f_id, f_label, f_model, f_time = fields.event_id, fields.label, fields.model, fields.timestamp
    limit, loads, keep = fields.max_event_bytes, orjson.loads, labels.append
    ahead = fields.max_time_ahead_s
    for record in records:
        # The hot path: one try for the well-formed case, exact type checks; a record that
        # fails is examined again by _reject_label for the precise reason.
        value = record.value
        try:
            if value is None or len(value) > limit:
                raise ValueError
            event = loads(value)
            event_id, label = event[f_id], event[f_label]
        except (TypeError, ValueError, KeyError, IndexError):
            bad.append(_reject_label(record, fields, max_id_chars))
            continue
        kind = type(event_id)
        if kind is int:
            event_id = str(event_id)
        elif kind is not str or not 0 < len(event_id) <= max_id_chars:
            bad.append(_reject_label(record, fields, max_id_chars))
            continue
        kind = type(label)
        if kind is str:
            if len(label) > CATEGORY_CHARS:
                label = label[:CATEGORY_CHARS]  # a class is its first characters
        elif kind is int and not _INT_LOW <= label <= _INT_HIGH:
            label = storable(label)
            if label is None:
                bad.append(_reject_label(record, fields, max_id_chars))
                continue
        elif kind is not float and kind is not int and kind is not bool:
            bad.append(_reject_label(record, fields, max_id_chars))
            continue
        model = event.get(f_model)
        if model is not None and not (type(model) is str and 0 < len(model) <= max_id_chars):
            model = None  # not a name a model could have: matched by the id alone
        stamp = event.get(f_time)
        if stamp is None and record.timestamp_ms > 0:
            time = record.timestamp_ms / 1000.0
        else:
            time = _label_time(stamp, record, ahead)
        keep(Label(event_id, label, model, time, record))
    return labels, bad


def storable(value: Any) -> Any:
    """``value`` as a checkpoint can store it: an integer beyond 64 bits as a float (None
    when no float holds it either); anything else as it is."""
    if type(value) is int and not _INT_LOW <= value <= _INT_HIGH:
        try:
            return float(value)
        except OverflowError:
            return None
    return value


def _reject_label(record: Record, fields: EventFields, max_id_chars: int) -> BadRecord:
    """Why ``record`` is not a label record (it failed the fast path of `decode_labels`)."""
    event = json_object(record, fields.max_event_bytes)
    if isinstance(event, BadRecord):
        return event
    if _event_id(event.get(fields.event_id), max_id_chars) is None:
        detail = (
            f"field {fields.event_id!r} missing, empty, not text or a whole number, or longer "
            f"than {max_id_chars} characters"
        )
        return BadRecord(record, "missing_event_id", detail)
    return BadRecord(
        record,
        "missing_label",
        f"field {fields.label!r} missing, null, an array, an object or a number beyond 1e308",
    )


# Of a `Record`: its offset, value and time.
_OFFSET = operator.itemgetter(2)
_VALUE, _TIMESTAMP = operator.itemgetter(4), operator.itemgetter(5)
# Of a `PendingPrediction`.
_PENDING_MODEL, _PENDING_VERSION, _PENDING_PREDICTION, _PENDING_TIME, _PENDING_OFFSET = (
    operator.itemgetter(i) for i in range(5)
)
_PENDING_RECORD_MS = operator.itemgetter(5)
_HELD_GATE, _HELD_RECORD = operator.itemgetter(0), operator.itemgetter(1)  # of a held pair
FOLD_CHUNK = 256
"""Label records folded by column at a time: an odd one sends only its chunk label by label."""


def _plain_ids(values: Sequence[object], max_chars: int) -> bool:
    """Every value an event id as it is (text of 1 to ``max_chars`` characters)."""
    return _all_text(values) and min(map(len, values)) > 0 and max(map(len, values)) <= max_chars


def _all_text(values: Sequence[object]) -> TypeGuard[Sequence[str]]:
    """Every value (of at least one) a string, as `str` itself (no subclass)."""
    return set(map(type, values)) == {str}


def _plain_labels(values: Sequence[Any]) -> bool:
    """Every value a label the join keeps and remembers as it is (a number within 64 bits,
    a boolean, or text of at most 24 characters)."""
    types = set(map(type, values))
    if not types <= {float, int, str, bool}:
        return False
    ints = [value for value in values if type(value) is int] if int in types else []
    texts = [value for value in values if type(value) is str] if str in types else []
    return (not ints or (min(ints) >= _INT_LOW and max(ints) <= _INT_HIGH)) and (
        not texts or max(map(len, texts)) <= 24
    )


def _kept(value: Any) -> Any:
    """A prediction or label as a store keeps it: class text cut to `CATEGORY_CHARS`, an
    integer beyond 64 bits as `storable` makes it, anything else as it is."""
    if type(value) is str and len(value) > CATEGORY_CHARS:
        return value[:CATEGORY_CHARS]
    return storable(value) if type(value) is int else value


def _stored_as_is(values: Sequence[Any]) -> bool:
    """Every value a prediction a store keeps as it is (no class text to cut, no integer
    beyond 64 bits)."""
    types = set(map(type, values))
    if not types <= {float, int, str, bool, type(None)}:
        return False
    if int in types:
        ints = [value for value in values if type(value) is int]
        if min(ints) < _INT_LOW or max(ints) > _INT_HIGH:
            return False
    texts = [value for value in values if type(value) is str] if str in types else []
    return not texts or max(map(len, texts)) <= CATEGORY_CHARS


def _event_id(value: object, max_chars: int) -> str | None:
    if type(value) is int:
        return str(value)
    if type(value) is str and value and len(value) <= max_chars:
        return value
    return None


def _label_time(stamp: object, record: Record, max_ahead_s: float) -> float:
    """A label's time by the events' rule: its own when it parses and lies within
    ``max_ahead_s`` of its record's time, else its record's (NaN: none known)."""
    own = math.nan if stamp is None else parse_event_time(stamp)
    record_s = record.timestamp_ms / 1000.0
    if not 0 < record_s <= now() + max_ahead_s:  # no time, or one not believed
        record_s = math.nan
    if math.isfinite(own) and not own > record_s + max_ahead_s:
        return own
    return record_s


def _waiting_predictions(
    waiting: list[JoinStore], ids: Sequence[str]
) -> tuple[list[PendingPrediction], list[JoinStore] | None] | None:
    """The prediction each id waits with and the store holding it, looked up as
    `_fold_label` does (the first of ``waiting`` that has it); the stores are None when
    every one is the first. None if an id waits in none of them."""
    looked_up = list(map(waiting[0].pending.get, ids))
    owners: list[JoinStore] | None = None
    if None in looked_up:
        owners = [waiting[0]] * len(ids)
        for i in [i for i, hit in enumerate(looked_up) if hit is None]:
            for store in waiting[1:]:
                looked_up[i] = store.pending.get(ids[i])
                if looked_up[i] is not None:
                    owners[i] = store
                    break
            else:
                return None
    # No None is left: every id was found (else the loop returned).
    return cast(list[PendingPrediction], looked_up), owners


def _runs(records: list[Record]) -> list[tuple[TopicPartition, list[Record]]]:
    """``records`` cut into runs of one partition each, in order."""
    if not records:
        return []
    if one_partition(records):  # the common case, checked in C
        return [(records[0].topic_partition, records)]
    runs: list[tuple[TopicPartition, list[Record]]] = []
    where: tuple[str, int] = ("", -1)
    for record in records:
        if (record.topic, record.partition) != where:
            where = (record.topic, record.partition)
            runs.append((record.topic_partition, []))
        runs[-1][1].append(record)
    return runs


class LabelJoin:
    """Every join store of this consumer, the label gate and the outcome counts: what the
    daemon asks to fold predictions and labels (one owner for the join's state)."""

    def __init__(self, settings: LabelSettings, fields: EventFields, max_id_chars: int) -> None:
        self.settings, self.fields, self.max_id_chars = settings, fields, max_id_chars
        self.topics = frozenset(settings.topics)
        self.stores: dict[TopicPartition, JoinStore] = {}
        self.gate = LabelGate(max_ahead_s=fields.max_time_ahead_s)
        self.counts: Counter[tuple[str, str]] = Counter()  # (model, outcome), drained by metrics
        self.newest_label_s = -math.inf
        self.newest_prediction_s = -math.inf
        self.seen_ms: dict[TopicPartition, float] = {}  # how far each partition is read (ms)
        self.coverage: list[tuple[str, str, bool]] = []  # verdicts in order, drained by the daemon
        self._restored = False  # a store was restored: early labels may meet predictions
        # Joins deferred to their turn in gate order (`_turn`): a heap of (gate time, the
        # label's topic, partition and offset, event id); both wait in their stores.
        self.deferred: list[tuple[float, str, int, int, str]] = []

    def store(self, tp: TopicPartition) -> JoinStore:
        found = self.stores.get(tp)
        if found is None:
            settings = self.settings
            found = self.stores[tp] = JoinStore(
                tp,
                settings.max_pending,
                settings.max_delay_s,
                settings.remember_joined,
                expected_delay_s=settings.expected_delay_s,
                max_ahead_s=self.fields.max_time_ahead_s,
                track_coverage=settings.min_coverage > 0,
                coverage=self.coverage,
            )
        return found

    def split(self, polled: Polled) -> tuple[Polled, Polled]:
        """``(inference records, label records)`` of a batch."""
        topics = self.topics
        if not topics:
            return polled, {}
        labels = {tp: records for tp, records in polled.items() if tp.topic in topics}
        if not labels:
            return polled, {}
        return {tp: records for tp, records in polled.items() if tp.topic not in topics}, labels

    def predictions(
        self, model: str, version: str, group: EventGroup, times: FloatArray, skip: set[int]
    ) -> list[Joined]:
        """Fold a group's monitored events (rows not in ``skip``): inline labels join at
        once; with label topics, the others wait for theirs by event id."""
        if self._all_wait(group) and self._pending(model, version, group, times, skip):
            return []
        joined: list[Joined] = []
        with_topics = bool(self.topics)
        counts = self.counts
        where: tuple[str, int] = ("", -1)
        tp, store = TopicPartition("", -1), None
        event_ids, predictions = group.event_ids, group.predictions
        time_list = times.tolist()
        early_waits = self._early  # only labels add early labels: not this loop
        for i, (record, given) in enumerate(zip(group.records, group.labels, strict=True)):
            if i in skip:
                continue
            label, prediction, time = _kept(given), _kept(predictions[i]), time_list[i]
            if (record.topic, record.partition) != where:  # a new partition: its store
                where = (record.topic, record.partition)
                tp, store = record.topic_partition, None
            if label is not None:
                if not isinstance(label, list | dict):
                    counts[model, "joined"] += 1
                    joined.append(
                        Joined(
                            model, version, prediction, label, time, time, tp, record.offset, record
                        )
                    )
                    continue
                counts[model, "bad_label"] += 1  # no label: it may still come on a label topic
            if not with_topics:
                continue
            event_id = _event_id(event_ids[i], self.max_id_chars)
            if event_id is None:
                counts[model, "unjoinable"] += 1
                continue
            if store is None:
                store = self.store(tp)
            entry = (model, version, prediction, time, record.offset, record.timestamp_ms)
            if early_waits:  # a label may have come first: hand it to this store
                early = self._early_store(event_id)
                if early is not None and early is not store:
                    moved = store.early[event_id] = early.early.pop(event_id)
                    store.early_order.append(moved[2], event_id)  # expires as it would there
                    early.changed = True
                if self._meets_later(store, event_id, entry):
                    store.add(event_id, entry, record, counts, join_early=False)
                    continue
            pair = store.add(event_id, entry, record, counts)
            if pair is not None:
                joined.append(pair)
        self._seen(group, times, time_list)
        return joined

    def _all_wait(self, group: EventGroup) -> bool:
        """Whether every event of ``group`` waits for its label from a label topic (none
        inline) while no early label waits that one of them might meet."""
        return bool(self.topics) and group.labels.count(None) == len(group) and not self._early

    def _pending(
        self, model: str, version: str, group: EventGroup, times: FloatArray, skip: set[int]
    ) -> bool:
        """`predictions` of a group without inline labels while no early label waits, in
        the common case (every event id and prediction usable as it is), checked by column
        and added to each partition's store a run at a time; False (nothing done) if not."""
        records = group.records
        if not (
            records
            and not skip
            and _plain_ids(group.event_ids, self.max_id_chars)
            and _stored_as_is(group.predictions)
        ):
            return False
        time_list = times.tolist()
        ids, predictions, offsets = group.event_ids, group.predictions, list(map(_OFFSET, records))
        record_ms = list(map(_TIMESTAMP, records))
        start = 0
        for tp, run in _runs(records):  # each partition's run to its store
            end = start + len(run)
            rows = (
                ids[start:end],
                predictions[start:end],
                time_list[start:end],
                offsets[start:end],
                record_ms[start:end],
            )
            self.store(tp).add_all(model, version, rows, self.counts)
            start = end
        self._seen(group, times, time_list)
        return True

    def _seen(self, group: EventGroup, times: FloatArray, time_list: list[float]) -> None:
        """After folding a group's predictions: how far untimed records read their
        partitions, and (with label topics) the newest prediction time."""
        self._seen_untimed(group, time_list)
        if self.topics and len(times):
            self.newest_prediction_s = max(self.newest_prediction_s, float(np.nanmax(times)))

    def _seen_untimed(self, group: EventGroup, time_list: list[float]) -> None:
        """A record without a time: its event's tells how far its partition is read, if
        believable (as a record's time, in `read`): an event stamped in the year 2100 would
        release every held label before its prediction is read."""
        latest_ms = (now() + self.fields.max_time_ahead_s) * 1000.0
        for i, record in enumerate(group.records):
            if record.timestamp_ms <= 0:
                tp, stamp = record.topic_partition, time_list[i] * 1000.0
                if latest_ms >= stamp > self.seen_ms.get(tp, -math.inf):
                    self.seen_ms[tp] = stamp

    @property
    def _early(self) -> bool:
        """Whether any label waits for its prediction."""
        return any(store.early for store in self.stores.values())

    def _early_store(self, event_id: str) -> JoinStore | None:
        for store in self.stores.values():
            if event_id in store.early:
                return store
        return None

    def read(self, polled: Polled) -> None:
        """Inference records polled (good or bad): how far each partition is read, as the
        latest believable record time (a time after the wall clock plus
        ``events.max_time_ahead_s`` is not; an untimed record counts by its event's time,
        in `predictions`)."""
        latest_ms = (now() + self.fields.max_time_ahead_s) * 1000.0
        seen = self.seen_ms
        for tp, run in polled.items():
            stamps = [r.timestamp_ms for r in run if 0 < r.timestamp_ms <= latest_ms]
            if stamps and max(stamps) > seen.get(tp, -math.inf):
                seen[tp] = max(stamps)

    def hold(self, polled: Polled) -> dict[TopicPartition, int]:
        """Hold polled label records at the gate; returns label partitions to read again
        from an offset (the full gate turned them away)."""
        again = self.gate.hold(polled)
        self.seen_ms.update(self.gate.gate_ms)  # a label partition is read to its gate time
        return again

    def fold(self, watermark_ms: float) -> tuple[list[Joined], list[BadRecord]]:
        """Fold the held labels before ``watermark_ms`` (every partition, inference and
        label, read past it), in gate order; labels that waited for predictions a restored
        partition brings back meet them first."""
        joined: list[Joined] = []
        bad: list[BadRecord] = []
        if self._restored:
            self._restored = False
            self._rematch(joined)
        released = self.gate.release_timed(watermark_ms)
        if released:
            self._fold(released, joined, bad)
        self._deferred_joins((watermark_ms,), joined)
        if released:
            self._expire()
        for store in self.stores.values():
            store.bound_journal()
        return joined, bad

    def _meets_later(self, store: JoinStore, event_id: str, prediction: PendingPrediction) -> bool:
        """Whether a prediction meets its early label in ``store`` at a later turn: its
        record came after the label's gate time. The pair then joins in gate order at the
        prediction's record time (`_defer`), as it would had the prediction been read
        before the label was released: the same place whatever the batches."""
        early = store.early.get(event_id)
        if (
            early is None
            or early[1] not in ("", prediction[0])
            or event_id in store.pending
            or event_id in store.done
        ):
            return False
        turn = self._turn(prediction, early[4])
        if turn is not None:
            self._defer(turn, early[3], event_id)
        return turn is not None

    def _turn(self, prediction: PendingPrediction, gate_ms: float) -> float | None:
        """When in gate order a label released at ``gate_ms`` joins ``prediction``: at the
        prediction's record time (believable: no later than the wall clock allows) if after
        ``gate_ms`` (the label may be released before the prediction is read, or after,
        as the batches fall); None: at once (an untimed record joins as it comes)."""
        record_ms = prediction[5]
        if not record_ms > 0:
            return None
        turn = min(float(record_ms), (now() + self.fields.max_time_ahead_s) * 1000.0)
        return turn if turn > gate_ms else None

    def _defer(self, turn_ms: float, label: Record, event_id: str) -> None:
        """The join of a waiting label (at ``label``'s position) at gate time ``turn_ms``:
        its pair is released with the records of that gate time, by position (`_fold`)."""
        heapq.heappush(
            self.deferred, (turn_ms, label.topic, label.partition, label.offset, event_id)
        )

    def _deferred_joins(self, before: tuple[Any, ...], joined: list[Joined]) -> None:
        """Join the deferred pairs whose turn (gate time, label's position) is before
        ``before``, in order: the early label with the prediction that came for it, if
        both still wait (else the label waits on as any, to be evicted)."""
        deferred = self.deferred
        while deferred and deferred[0][:4] < before:
            _, topic, partition, offset, event_id = heapq.heappop(deferred)
            store = self._early_store(event_id)
            early = None if store is None else store.early[event_id]
            if store is None or early is None or early[3][:3] != (topic, partition, offset):
                continue
            for other in (store, *self.stores.values()):
                found = other.pending.get(event_id)
                if found is not None and early[1] in ("", found[0]):
                    del store.early[event_id]
                    store.changed = True
                    label = Label(event_id, early[0], early[1] or None, early[2], early[3])
                    joined.append(other.join(label, found, self.counts))
                    break

    def oldest_ms(self) -> float | None:
        """The oldest gate time a held label record or a deferred join waits at (None:
        nothing waits)."""
        held = self.gate.oldest_ms()
        turn = self.deferred[0][0] if self.deferred else None
        if held is None or turn is None:
            return turn if held is None else held
        return min(held, turn)

    def _rematch(self, joined: list[Joined]) -> None:
        """Early labels of every store against the pending predictions of every store, in
        the order the labels came (after a restore: the two may be in different stores)."""
        stores = list(self.stores.values())
        waiting = sorted(
            (time, event_id, store)
            for store in stores
            for time, event_id in store.early_order
            if event_id in store.early
        )
        for _, event_id, store in waiting:
            early = store.early.get(event_id)
            if early is None:
                continue
            for other in stores:
                found = other.pending.get(event_id)
                if found is not None and early[1] in ("", found[0]):
                    turn = self._turn(found, early[4])
                    if turn is not None:  # a join deferred when the store was saved
                        self._defer(turn, early[3], event_id)
                        break
                    del store.early[event_id]
                    store.changed = True
                    label = Label(event_id, early[0], early[1] or None, early[2], early[3])
                    joined.append(other.join(label, found, self.counts))
                    break

    def _fold(
        self, released: list[tuple[float, Record]], joined: list[Joined], bad: list[BadRecord]
    ) -> None:
        """Fold released label records ``(gate time, record)`` in order, a chunk at a time:
        a chunk of the common case (well-formed labels naming no model and no time, whose
        predictions wait, read before the labels were released) by column (`_fold_plain`),
        any other label by label (`_fold_each`); deferred joins in their turn."""
        stores = list(self.stores.values())
        # The stores predictions wait in, in the order `_fold_label` looks (another may
        # hold early labels only, as a label partition's store does once a label came
        # before its prediction). Coverage verdicts are given label by label.
        waiting = [store for store in stores if store.pending and not store.track_coverage]
        latest_ms = (now() + self.fields.max_time_ahead_s) * 1000.0
        for first in range(0, len(released), FOLD_CHUNK):
            chunk = released[first : first + FOLD_CHUNK]
            if self.deferred:
                self._deferred_joins(release_position(chunk[0]), joined)
            plain = not (self.deferred and self.deferred[0][:4] < release_position(chunk[-1]))
            if not (plain and waiting and self._fold_plain(chunk, waiting, latest_ms, joined)):
                self._fold_each(chunk, stores, joined, bad)

    def _expire(self) -> None:
        """Give up what waited too long, by the clock the streams have got to."""
        # The clock predictions expire by: no later than both streams have got, nor than the
        # wall clock allows, so one label or record stamped far ahead cannot expire them all.
        clock = min(
            self.newest_label_s, self.newest_prediction_s, now() + self.fields.max_time_ahead_s
        )
        if math.isfinite(clock):
            for store in self.stores.values():
                store.expire(clock, self.counts)

    def _fold_plain(
        self,
        released: list[tuple[float, Record]],
        waiting: list[JoinStore],
        latest_ms: float,
        joined: list[Joined],
    ) -> bool:
        """Join a chunk of label records by column if every one is the common case (as
        `_fold_each` would, label by label); False (nothing done) if any is not."""
        records = list(map(_HELD_RECORD, released))
        plain = self._plain_chunk(records, latest_ms)
        if plain is None:
            return False
        ids, labels, stamps = plain
        waits = _waiting_predictions(waiting, ids)
        if waits is None:
            return False
        found, owners = waits
        times = np.array(stamps, dtype=np.float64) / 1000.0
        waited = times - np.fromiter(map(_PENDING_TIME, found), np.float64, len(found))
        if np.any(waited > self.settings.max_delay_s):  # given up on: counted one by one
            return False
        read_ms = np.fromiter(map(_PENDING_RECORD_MS, found), np.float64, len(found))
        gates = np.fromiter(map(_HELD_GATE, released), np.float64, len(released))
        if np.any(read_ms > gates):  # a prediction read after its label: `_turn`
            return False
        # Committed from here: each label joins its prediction, as `JoinStore.join` does.
        if owners is None:
            waiting[0].joined(ids, labels)
            partitions: Iterable[TopicPartition] = itertools.repeat(waiting[0].partition)
        else:
            for store in waiting:
                mine = [i for i, owner in enumerate(owners) if owner is store]
                if mine:
                    store.joined([ids[i] for i in mine], [labels[i] for i in mine])
            partitions = [owner.partition for owner in owners]
        counts = self.counts
        for model, n in Counter(map(_PENDING_MODEL, found)).items():
            counts[model, "joined"] += n
        self.newest_label_s = max(self.newest_label_s, float(times.max()))
        rows = zip(
            map(_PENDING_MODEL, found),
            map(_PENDING_VERSION, found),
            map(_PENDING_PREDICTION, found),
            labels,
            map(_PENDING_TIME, found),
            times.tolist(),
            partitions,
            map(_PENDING_OFFSET, found),
            records,
            strict=False,  # a repeat is endless
        )
        joined.extend(map(tuple.__new__, itertools.repeat(Joined), rows))
        return True

    def _plain_chunk(
        self, records: list[Record], latest_ms: float
    ) -> tuple[Sequence[str], list[Any], list[int]] | None:
        """``(event ids, labels, record times in ms)`` of a chunk of label records if every
        one is the common case: a JSON object naming no model and no time, with an id of
        text (a plain id once found waiting) and a plain label (`_plain_labels`), a record
        time not after ``latest_ms``,
        and no id twice (a label twice is a duplicate: counted one by one). None if not."""
        fields = self.fields
        try:
            if max(map(len, map(_VALUE, records))) > fields.max_event_bytes:
                return None
            events = list(map(orjson.loads, map(_VALUE, records)))
        except (TypeError, ValueError):  # no value, or not JSON
            return None
        if set(map(type, events)) != {dict}:
            return None
        f_id, f_label = fields.event_id, fields.label
        f_model, f_time = fields.model, fields.timestamp
        # Records of two keys, an id and a label (checked below), name no model and no time
        # (unless a field name is shared): no step per record to look for them.
        two_plain = set(map(len, events)) == {2} and {f_model, f_time}.isdisjoint((f_id, f_label))
        if not two_plain and any(f_model in event or f_time in event for event in events):
            return None
        ids = [event.get(f_id) for event in events]
        labels = [event.get(f_label) for event in events]
        stamps = list(map(_TIMESTAMP, records))
        # Ids of text only: their lengths are checked by the lookup (`_waiting_predictions`
        # finds only ids a store took, each a plain id).
        if not (
            _all_text(ids)
            and _plain_labels(labels)
            and min(stamps) > 0
            and max(stamps) <= latest_ms
            and len(set(ids)) == len(ids)
        ):
            return None
        return ids, labels, stamps

    def _fold_each(
        self,
        released: list[tuple[float, Record]],
        stores: list[JoinStore],
        joined: list[Joined],
        bad: list[BadRecord],
    ) -> None:
        """Fold label records one by one: `decode_labels`, then `_fold_label` (what
        `_fold_plain` does by column for the common case), deferred joins in their turn."""
        gate_of = {id(record): gate for gate, record in released}
        records = list(map(_HELD_RECORD, released))
        labels, refused = decode_labels(records, self.fields, self.max_id_chars)
        bad += refused
        for label in labels:
            gate = gate_of[id(label.record)]
            if self.deferred:
                self._deferred_joins((gate, *label.record[:3]), joined)
            self.newest_label_s = max(self.newest_label_s, label.time)
            self._fold_label(label, gate, stores, joined)

    def _fold_label(
        self, label: Label, gate_ms: float, stores: list[JoinStore], joined: list[Joined]
    ) -> None:
        """One decoded label (released at ``gate_ms``): joined, counted as done, or kept
        waiting for its prediction or for its turn to join it (`_turn`)."""
        counts, event_id, found = self.counts, label.event_id, None
        for store in stores:  # the common case first: its prediction waits, in time
            found = store.pending.get(event_id)
            if found is not None:
                break
        if (
            found is not None
            and (label.model is None or label.model == found[0])
            and not label.time - found[3] > self.settings.max_delay_s
        ):
            turn = self._turn(found, gate_ms)
            if turn is None:
                joined.append(store.join(label, found, counts))
            elif store.wait(label, counts, gate_ms):
                self._defer(turn, label.record, event_id)
            return
        outcome: Joined | bool | None = None
        for store in stores:
            outcome = store.take(label, counts)
            if outcome is not None:
                break
        if isinstance(outcome, Joined):
            joined.append(outcome)
        elif outcome is None:  # no prediction yet: it waits with its own partition
            self.store(label.record.topic_partition).wait(label, counts, gate_ms)
            stores[:] = list(self.stores.values())  # that store may be new

    def unstick(
        self, stuck_ms: float, open_partitions: Iterable[TopicPartition]
    ) -> tuple[list[Joined], list[BadRecord], dict[TopicPartition, int]]:
        """`LabelGate.unstick`: the records it releases folded; the label partitions it
        turned away, to read again from an offset."""
        released, again = self.gate.unstick(stuck_ms, open_partitions)
        self.seen_ms.update(self.gate.gate_ms)  # read up to the first record turned away
        joined: list[Joined] = []
        bad: list[BadRecord] = []
        if released:
            self._fold([(stuck_ms, record) for record in released], joined, bad)
            self._expire()
        return joined, bad, again

    def first_held(self, tp: TopicPartition) -> int | None:
        return self.gate.first_held(tp)

    def sweep(self, watermark_ms: float) -> list[tuple[str, str, bool]]:
        """Coverage verdicts since the last call, in order: predictions are overdue once
        the inference stream's event time is ``expected_delay_s`` past them (and every
        label older than that has been folded: no later than ``watermark_ms``)."""
        now = min(self.newest_prediction_s, watermark_ms / 1000.0)
        if self.topics and math.isfinite(now):
            for store in self.stores.values():
                store.sweep(now)
        verdicts = self.coverage[:]
        self.coverage.clear()  # the stores share this list: clear it in place
        return verdicts

    def take_counts(self) -> Counter[tuple[str, str]]:
        """The outcomes counted since the last call."""
        counts, self.counts = self.counts, Counter()
        return counts

    def changed(self) -> set[TopicPartition]:
        """Partitions whose store changed since `saved`."""
        return {tp for tp, store in self.stores.items() if store.changed}

    def snapshot(self, tp: TopicPartition) -> JoinParts | None:
        """The part of ``tp``'s store to checkpoint (`JoinStore.parts`), None if none."""
        store = self.stores.get(tp)
        if store is None:
            return None
        store.label_clock = self.newest_label_s
        return store.parts()

    def saved(self, partitions: Iterable[TopicPartition]) -> None:
        """The parts `snapshot` took of ``partitions`` are stored."""
        for tp in partitions:
            store = self.stores.get(tp)
            if store is not None:
                store.saved()

    def restore(self, tp: TopicPartition, parts: Sequence[bytes]) -> None:
        """Load ``tp``'s store from its stored parts, the full one first; ValueError if
        they are not a store's (the partition's store is left empty)."""
        store = self.store(tp)
        try:
            store.restore(parts[0], parts[1:])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            del self.stores[tp]  # half restored: the next `store` call starts it afresh
            raise ValueError(f"not a label join store ({type(exc).__name__}: {exc})") from None
        self._restored = True
        self.newest_prediction_s = max(self.newest_prediction_s, store.newest)
        self.newest_label_s = max(self.newest_label_s, store.label_clock)

    def drop(self, partitions: Iterable[TopicPartition]) -> None:
        partitions = list(partitions)
        for tp in partitions:
            self.stores.pop(tp, None)
            self.seen_ms.pop(tp, None)
        self.gate.drop(partitions)

    def pending(self) -> int:
        return sum(len(store.pending) + len(store.early) for store in self.stores.values())


__all__ = ["JOIN_OUTCOMES", "LabelJoin", "decode_labels", "storable"]
